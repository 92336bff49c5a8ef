package worker_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/testenv"
)

// TestInteractiveProblems: an interactor talking to the program through a
// real worker and broker, on every driver (gVisor, and QEMU here under
// TCG): guess the number (testdata/interactive: a C interactor, testlib's
// arguments and exits) with a correct program on three tests, a wrong
// guess, too many questions, a program that never asks, an interactor that
// hangs or fails, and a program that goes looking for its interactor.
func TestInteractiveProblems(t *testing.T) {
	testenv.EachSandbox(t, testInteractive)
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "interactive", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func testInteractive(t *testing.T, sb *testenv.Sandbox) {
	h := startWorkerOn(t, sb, "interactive", 2, 1, nil)
	interactor := map[string]any{"language": "c", "code": readTestdata(t, "interactor.c")}
	guess := readTestdata(t, "guess.c")
	three := []map[string]any{{"stdin": "1 30"}, {"stdin": "1000000000 30"}, {"stdin": "123456789 30"}}
	final := func(id string, j map[string]any) job.Status {
		t.Helper()
		j["id"] = id
		if _, ok := j["interactor"]; !ok {
			j["interactor"] = interactor
		}
		if _, ok := j["tests"]; !ok {
			j["tests"] = three[2:]
		}
		b, _ := json.Marshal(j)
		sts := h.submit(id, string(b), 5*time.Minute)
		return sts[len(sts)-1]
	}
	verdicts := func(f job.Status) string {
		var v []string
		for _, ts := range f.Tests {
			v = append(v, ts.Verdict)
		}
		return strings.Join(v, ",")
	}

	t.Run("correct on three tests", func(t *testing.T) {
		f := final("correct", map[string]any{"language": "c", "code": guess, "tests": three, "stop_on_failure": false})
		if f.Verdict != job.VerdictOK || verdicts(f) != "ok,ok,ok" || !strings.Contains(f.Tests[2].CheckerMessage, "found in") {
			t.Fatalf("%s %q: %+v", f.Verdict, f.Message, f.Tests)
		}
	})
	t.Run("a wrong guess", func(t *testing.T) {
		wrong := strings.Replace(guess, `printf("! %ld\n", lo)`, `printf("! %ld\n", lo + 1)`, 1)
		f := final("wrong", map[string]any{"language": "c", "code": wrong})
		if f.Verdict != job.VerdictWrongAnswer || !strings.Contains(f.Tests[0].CheckerMessage, "wrong guess 123456790") {
			t.Fatalf("%s %q: %+v", f.Verdict, f.Message, f.Tests)
		}
	})
	t.Run("too many questions, then a closed pipe", func(t *testing.T) {
		linear := "#include <stdio.h>\nint main(void){ char r[16]; for (long x = 1;; x++) { printf(\"? %ld\\n\", x); fflush(stdout); if (scanf(\"%15s\", r) != 1) return 0; } }"
		f := final("too-many", map[string]any{"language": "c", "code": linear})
		if f.Verdict != job.VerdictWrongAnswer || !strings.Contains(f.Tests[0].CheckerMessage, "more than 30 queries") {
			t.Fatalf("%s %q: %+v", f.Verdict, f.Message, f.Tests)
		}
	})
	t.Run("a program that never asks", func(t *testing.T) {
		f := final("silent", map[string]any{"language": "c", "code": "#include <unistd.h>\nint main(void){ sleep(60); return 0; }",
			"limits": map[string]any{"wall_ms": 2000}})
		if f.Verdict != job.VerdictTimeLimit {
			t.Fatalf("%s %q: %+v", f.Verdict, f.Message, f.Tests)
		}
	})
	t.Run("an interactor that hangs", func(t *testing.T) {
		f := final("hangs", map[string]any{"language": "c", "code": guess, "limits": map[string]any{"wall_ms": 2000},
			"interactor": map[string]any{"language": "c", "code": "#include <unistd.h>\nint main(void){ sleep(60); return 0; }"}})
		if f.Verdict != job.VerdictInternalError || !strings.Contains(f.Message, "interactor") {
			t.Fatalf("%s %q: %+v", f.Verdict, f.Message, f.Tests)
		}
	})
	t.Run("an interactor that exits 3", func(t *testing.T) {
		f := final("fails", map[string]any{"language": "c", "code": guess,
			"interactor": map[string]any{"language": "python", "code": "import sys\nopen(sys.argv[2], 'w').write('bad test data')\nsys.exit(3)"}})
		if f.Verdict != job.VerdictInternalError || !strings.Contains(f.Message, "exit 3") || f.Tests[0].CheckerMessage != "bad test data" {
			t.Fatalf("%s %q: %+v", f.Verdict, f.Message, f.Tests)
		}
	})
	t.Run("the program looks for its interactor", func(t *testing.T) {
		f := final("isolation", map[string]any{"language": "python", "code": readTestdata(t, "isolation.py")})
		// It finds the interactor's process and the paths of its files,
		// and can do nothing with either.
		if f.Verdict != job.VerdictOK || !strings.Contains(f.Tests[0].Stderr, "seen: 1 done: []") {
			t.Fatalf("%s %q: %+v", f.Verdict, f.Message, f.Tests)
		}
	})
	t.Run("a misspelt field is refused", func(t *testing.T) {
		sts := h.submit("misspelt", `{"id":"misspelt","language":"c","code":"int main(){return 0;}","tests":[{}],"interactr":{"language":"c","code":"x"}}`, time.Minute)
		f := sts[len(sts)-1]
		if f.Verdict != job.VerdictInvalidJob || !strings.Contains(f.Message, `unknown field "interactr"`) {
			t.Fatalf("%s %q", f.Verdict, f.Message)
		}
	})
}
