package piston

import (
	"strings"
	"testing"

	"github.com/codebench/codebench/internal/judge0"
	"github.com/codebench/codebench/internal/lang"
)

func runtimes() []Runtime {
	langs := judge0.Languages(map[string]lang.Language{"c": lang.Builtin()["c"], "python": lang.Builtin()["python"]},
		map[string]string{"c": "12.2.0", "python": "Python 3.11.2"})
	return Runtimes(langs)
}

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
		lim := judge0.DefaultLimits
		lim.CompileWallMS = 60_000
		_, _, err := Submission([]byte(tc.body), rts, lim)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %q", tc.body, err, tc.msg)
		}
	}
	s, rt, err := Submission([]byte(`{"language":"py","version":"3.x","files":[{"name":"main.py","content":"import m"},{"name":"m.py","content":"7072696e74283129","encoding":"hex"}],
		"stdin":"in","args":["a","b c"],"run_timeout":2500,"run_cpu_time":1000,"run_memory_limit":104857600,"compile_memory_limit":-1}`), rts, judge0.DefaultLimits)
	if err != nil || rt.Language != "python" || s.LanguageID != 71 || s.SourceCode != "import m" || s.Files["m.py"] != "print(1)" ||
		*s.Stdin != "in" || len(s.Args) != 2 || s.WallTimeLimit != 2.5 || s.CPUTimeLimit != 1 || s.MemoryLimit != 102400 {
		t.Fatalf("%+v %+v %v", s, rt, err)
	}
	s, _, err = Submission([]byte(`{"language":"c","version":"*","files":[{"content":"int main(){}"}],"compile_timeout":3000,"compile_cpu_time":2000,"compile_memory_limit":268435456}`), rts, judge0.DefaultLimits)
	if err != nil || s.CompileWallMS != 3000 || s.CompileCPUMS != 2000 || s.CompileMemoryKB != 262144 {
		t.Fatalf("compile limits: %+v %v", s, err)
	}
	if j := s.Job("t", judge0.Language{Ours: "c"}); j.Limits.CompileWallMS != 3000 || j.Limits.CompileCPUMS != 2000 || j.Limits.CompileMemoryKB != 262144 {
		t.Fatalf("the job's compile limits: %+v", j.Limits)
	}
}

func TestResultOf(t *testing.T) {
	rts := runtimes()
	out, comp := "hi\n", "main.c:1: error"
	code, sig, mem, tm := int64(0), int64(11), int64(900), 0.002
	r := &judge0.Record{StatusID: judge0.Accepted, Stdout: &out, ExitCode: &code, Memory: &mem, Time: &tm}
	res := ResultOf(r, rts[0], true)
	if res.Compile == nil || *res.Compile.Code != 0 || res.Run.Stdout != "hi\n" || res.Run.Output != "hi\n" || *res.Run.Code != 0 ||
		res.Run.Status != nil || *res.Run.Memory != 900*1024 || *res.Run.CPUTime != 2 {
		t.Fatalf("accepted: %+v", res)
	}
	r = &judge0.Record{StatusID: judge0.CompileError, CompileOutput: &comp}
	res = ResultOf(r, rts[0], true)
	if *res.Compile.Code != 1 || res.Run.Stderr != comp || *res.Run.Code != 1 {
		t.Fatalf("compile error: %+v", res)
	}
	r = &judge0.Record{StatusID: judge0.SIGSEGV, ExitCode: &code, ExitSignal: &sig}
	res = ResultOf(r, rts[1], false)
	if res.Compile != nil || res.Run.Code != nil || *res.Run.Signal != "SIGSEGV" || *res.Run.Status != "SG" {
		t.Fatalf("segfault: %+v", res)
	}
	r = &judge0.Record{StatusID: judge0.TimeLimit}
	if res = ResultOf(r, rts[1], false); *res.Run.Status != "TO" || *res.Run.Signal != "SIGKILL" {
		t.Fatalf("timeout: %+v", res)
	}
}
