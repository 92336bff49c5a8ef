package piston

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/submission"
)

func runtimes() []Runtime {
	return Runtimes(map[string]lang.Language{"c": lang.Builtin()["c"], "python": lang.Builtin()["python"]},
		map[string]string{"c": "gcc (Debian 12.2.0-14) 12.2.0", "python": "Python 3.11.2"})
}

// testBounds are the bounds of a worker with Judge0's maxima and a 60 s
// compile wall.
var testBounds = BoundsFor(job.Policy{Max: job.Limits{WallMS: 60000, CPUMS: 30000, MemoryKB: 512000}, CompileWall: 60_000})

func TestRuntimes(t *testing.T) {
	rts := runtimes()
	if len(rts) != 2 || rts[0].Language != "c" || rts[0].Version != "12.2.0" || rts[1].Language != "python" || rts[1].Version != "3.11.2" {
		t.Fatalf("%+v", rts)
	}
	for _, tc := range []struct {
		lang, version string
		ok            bool
	}{{"python", "*", true}, {"py3", "3.11.2", true}, {"python3", "3", true}, {"python", "3.11", true}, {"python", "3.1", false},
		{"python", "2", false}, {"gcc", "*", true}, {"cobol", "*", false}} {
		if _, ok := find(rts, tc.lang, tc.version); ok != tc.ok {
			t.Errorf("%s-%s: %v", tc.lang, tc.version, ok)
		}
	}
}

func TestSubmission(t *testing.T) {
	rts := runtimes()
	for _, tc := range []struct{ body, msg string }{
		{`{"version":"*","files":[]}`, "language is required as a string"},
		{`{"language":"c","files":[]}`, "version is required as a string"},
		{`{"language":"c","version":"*"}`, "files is required as an array"},
		{`{"language":"c","version":"*","files":[{"name":"a"}]}`, "files[0].content is required as a string"},
		{`{"language":"cobol","version":"*","files":[{"content":"x"}]}`, "cobol-* runtime is unknown"},
		{`{"language":"c","version":"*","files":[{"content":"eA==","encoding":"base64"}]}`, "files must include at least one utf8 encoded file"},
		{`{"language":"c","version":"*","files":[{"content":"x"}],"run_timeout":"5"}`, "If specified, run_timeout must be a number"},
		{`{"language":"c","version":"*","files":[{"content":"x"}],"run_timeout":999999}`, "run_timeout cannot exceed the configured limit of 20000"},
		{`{"language":"c","version":"*","files":[{"content":"x"}],"run_cpu_time":-5}`, "run_cpu_time must be non-negative"},
		{`{"language":"c","version":"*","files":[{"content":"x"},{"name":"../x","content":"y"}]}`, "plain file name"},
		{`{"language":"c","version":"*","files":[{"content":"x"}],"compile_timeout":60001}`, "compile_timeout cannot exceed the configured limit of 60000"},
		{`{"language":"c","version":"*","files":[{"content":"x"}],"compile_cpu_time":60001}`, "compile_cpu_time cannot exceed the configured limit of 60000"},
	} {
		_, _, err := Decode([]byte(tc.body), rts, testBounds)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %q", tc.body, err, tc.msg)
		}
	}
	j, rt, err := Decode([]byte(`{"language":"py","version":"3.x","files":[{"name":"main.py","content":"import m"},{"name":"m.py","content":"7072696e74283129","encoding":"hex"}],
		"stdin":"in","args":["a","b c"],"run_timeout":2500,"run_cpu_time":1000,"run_memory_limit":104857600,"compile_memory_limit":-1}`), rts, testBounds)
	if err != nil || rt.Language != "python" || j.Language != "python" || j.Code != "import m" || j.Files["m.py"] != "print(1)" ||
		j.Stdin != "in" || len(j.Args) != 2 || j.Limits.WallMS != 2500 || j.Limits.CPUMS != 1000 || j.Limits.MemoryKB != 102400 {
		t.Fatalf("%+v %+v %v", j, rt, err)
	}
	j, _, err = Decode([]byte(`{"language":"c","version":"*","files":[{"content":"int main(){}"}],"compile_timeout":3000,"compile_cpu_time":2000,"compile_memory_limit":268435456}`), rts, testBounds)
	if err != nil || j.Limits.CompileWallMS != 3000 || j.Limits.CompileCPUMS != 2000 || j.Limits.CompileMemoryKB != 262144 || j.Limits.WallMS != 0 {
		t.Fatalf("compile limits: %+v %v", j, err)
	}
	// files is decoded once, as an array of files.
	for _, body := range []string{`{"language":"c","version":"*","files":{"a":1}}`, `{"language":"c","version":"*","files":"x"}`, `{"language":"c","version":"*","files":[1]}`} {
		if _, _, err := Decode([]byte(body), rts, testBounds); err == nil || err.Error() != "files is required as an array" {
			t.Errorf("%s: %v", body, err)
		}
	}
}

// finished is a record of job j finished with st.
func finished(j job.Job, st job.Status) *submission.Record {
	r, _ := submission.New("t", Door, j, nil, time.Now())
	st.ID = "t"
	if st.Status == "" {
		st.Status = job.StatusFailed
	}
	r.Take(&st, time.Now())
	return r
}

func TestResultOf(t *testing.T) {
	rts := runtimes() // c (compiled), python
	zero, three := 0, 3
	res := ResultOf(finished(job.Job{Language: "c"}, job.Status{Status: job.StatusDone, Verdict: job.VerdictOK, Stdout: "hi\n", ExitCode: &zero, MemUsage: 900, CPUUserUS: 1500, ExecDuration: 2500}), rts[0])
	if res.Compile == nil || *res.Compile.Code != 0 || res.Run.Stdout != "hi\n" || res.Run.Output != "hi\n" || *res.Run.Code != 0 ||
		res.Run.Status != nil || *res.Run.Memory != 900*1024 || *res.Run.CPUTime != 2 || *res.Run.WallTime != 3 || res.Version != "12.2.0" {
		t.Fatalf("accepted: %+v", res)
	}
	res = ResultOf(finished(job.Job{Language: "c"}, job.Status{Verdict: job.VerdictCompileError, CompileOutput: "main.c:1: error"}), rts[0])
	if *res.Compile.Code != 1 || res.Compile.Stderr != "main.c:1: error" || res.Run != nil || *res.Compile.Status != "RE" {
		t.Fatalf("compile error: %+v", res)
	}
	// Piston's answer to a failed compile has no run key at all.
	if b, _ := json.Marshal(res); strings.Contains(string(b), `"run"`) {
		t.Fatalf("compile error has a run stage: %s", b)
	}
	for _, tc := range []struct {
		st             job.Status
		status, signal string // "" for null
		code           *int64
	}{
		{job.Status{Verdict: job.VerdictRuntimeError, Signal: "SIGSEGV"}, "SG", "SIGSEGV", nil},
		{job.Status{Verdict: job.VerdictRuntimeError, ExitCode: &three}, "RE", "", ptr(int64(3))},
		{job.Status{Verdict: job.VerdictTimeLimit}, "TO", "SIGKILL", nil},
		{job.Status{Verdict: job.VerdictOutputLimit, Signal: "SIGXFSZ"}, "OL", "SIGKILL", nil},
		{job.Status{Verdict: job.VerdictMemoryLimit, Signal: "SIGKILL"}, "SG", "SIGKILL", nil},
		{job.Status{Verdict: job.VerdictWrongAnswer, ExitCode: &zero}, "", "", ptr(int64(0))},
		{job.Status{Verdict: job.VerdictInternalError, Error: "sandbox failed"}, "XX", "", nil},
	} {
		res := ResultOf(finished(job.Job{Language: "python"}, tc.st), rts[1])
		if res.Compile != nil || str(res.Run.Status) != tc.status || str(res.Run.Signal) != tc.signal || (res.Run.Code == nil) != (tc.code == nil) ||
			(tc.code != nil && *res.Run.Code != *tc.code) {
			t.Errorf("%+v: %+v", tc.st, res.Run)
		}
	}
}

func str(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// TestFileRuntime: Piston's "file" runtime takes an executable in any
// encoding (no utf8 file needed); the job carries its bytes in base64.
func TestFileRuntime(t *testing.T) {
	rts := Runtimes(lang.Builtin(), map[string]string{})
	elf := "\x7fELF\x02\x01\xff"
	body := `{"language":"executable","version":"*","files":[{"content":"` + base64.StdEncoding.EncodeToString([]byte(elf)) + `","encoding":"base64"}]}`
	j, rt, err := Decode([]byte(body), rts, Bounds{})
	if err != nil || rt.Language != "file" || j.Language != "executable" || j.Code != base64.StdEncoding.EncodeToString([]byte(elf)) {
		t.Fatalf("%v %+v %+v", err, rt, j)
	}
	// Other runtimes still need a utf8 file.
	if _, _, err := Decode([]byte(`{"language":"c","version":"*","files":[{"content":"eA==","encoding":"base64"}]}`), rts, Bounds{}); err == nil {
		t.Fatal("c without a utf8 file")
	}
	for _, name := range []string{"csharp", "mono", "freepascal", "sqlite3", "r", "lisp", "kt"} {
		if _, ok := find(rts, name, "*"); !ok {
			t.Errorf("piston %q unknown", name)
		}
	}
}
