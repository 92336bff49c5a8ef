package judge0

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/submission"
)

func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		st   job.Status
		want int
	}{
		{job.Status{Status: job.StatusReceived}, InQueue},
		{job.Status{Status: job.StatusRunning}, Processing},
		{job.Status{Status: job.StatusDone, Verdict: job.VerdictOK}, Accepted},
		{job.Status{Status: job.StatusDone, Verdict: job.VerdictWrongAnswer}, WrongAnswer},
		{job.Status{Status: job.StatusDone, Verdict: job.VerdictTimeLimit}, TimeLimit},
		{job.Status{Status: job.StatusDone, Verdict: job.VerdictCompileError}, CompileError},
		{job.Status{Status: job.StatusDone, Verdict: job.VerdictRuntimeError, Signal: "SIGSEGV"}, SIGSEGV},
		{job.Status{Status: job.StatusDone, Verdict: job.VerdictRuntimeError, Signal: "SIGXFSZ"}, SIGXFSZ},
		{job.Status{Status: job.StatusDone, Verdict: job.VerdictRuntimeError, Signal: "SIGFPE"}, SIGFPE},
		{job.Status{Status: job.StatusDone, Verdict: job.VerdictRuntimeError, Signal: "SIGABRT"}, SIGABRT},
		{job.Status{Status: job.StatusDone, Verdict: job.VerdictRuntimeError, Signal: "SIGKILL"}, RuntimeOther},
		{job.Status{Status: job.StatusDone, Verdict: job.VerdictRuntimeError}, NZEC},
		{job.Status{Status: job.StatusDone, Verdict: job.VerdictMemoryLimit}, RuntimeOther},
		{job.Status{Status: job.StatusDone, Verdict: job.VerdictOutputLimit}, SIGXFSZ},
		{job.Status{Status: job.StatusFailed, Verdict: job.VerdictInternalError}, InternalError},
		{job.Status{Status: job.StatusFailed, Verdict: job.VerdictInvalidJob}, InternalError},
	} {
		if got := StatusOf(&tc.st); got != tc.want {
			t.Errorf("%+v: %d, want %d", tc.st, got, tc.want)
		}
	}
	if len(Statuses) != 14 || StatusByID(7).Description != "Runtime Error (SIGSEGV)" || StatusByID(99).ID != InternalError {
		t.Fatal("the statuses table")
	}
}

func TestEncode64IsRubys(t *testing.T) {
	// Ruby: Base64.encode64("a" * 50)
	got := Encode64([]byte(strings.Repeat("a", 50)))
	want := "YWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFh\nYWFhYWE=\n" // 45 bytes a line
	if got != want {
		t.Fatalf("%q\nwant %q", got, want)
	}
	if Encode64(nil) != "" {
		t.Fatal("empty")
	}
	d, err := decode64(want)
	if err != nil || string(d) != strings.Repeat("a", 50) {
		t.Fatal(err)
	}
}

func testLanguages() []Language {
	return Languages(map[string]lang.Language{"c": lang.Builtin()["c"], "python": lang.Builtin()["python"]},
		map[string]string{"c": "12.2.0", "python": "Python 3.11.2"})
}

func testCodec() *Codec { return New(testLanguages(), DefaultLimits) }

func TestLanguages(t *testing.T) {
	m := map[int]Language{}
	for _, l := range testLanguages() {
		m[l.ID] = l
	}
	if c := m[50]; c.Name != "C (GCC 12.2.0)" || c.SourceFile != "main.c" || c.CompileCmd == nil || c.Ours != "c" {
		t.Fatalf("C: %+v", c)
	}
	if p := m[71]; p.Name != "Python (3.11.2)" || p.CompileCmd != nil {
		t.Fatalf("Python: %+v", p)
	}
}

func TestValidate(t *testing.T) {
	c := testCodec()
	for _, tc := range []struct {
		body string
		b64  bool
		errs map[string]string // field: a message it must have
	}{
		{`{"source_code":"x","language_id":50}`, false, nil},
		{`{"source_code":"x","language_id":"50","cpu_time_limit":"2.5"}`, false, nil},
		{`{"language_id":50}`, false, map[string]string{"source_code": "can't be blank"}},
		{`{"source_code":"x","language_id":999}`, false, map[string]string{"language_id": "language with id 999 doesn't exist"}},
		{`{"source_code":"x"}`, false, map[string]string{"language_id": "can't be blank"}},
		{`{"source_code":"x","language_id":50,"wall_time_limit":50}`, false, map[string]string{"wall_time_limit": "must be less than or equal to 20.0"}},
		{`{"source_code":"x","language_id":50,"memory_limit":100}`, false, map[string]string{"memory_limit": "must be greater than or equal to 2048"}},
		{`{"source_code":"x","language_id":50,"number_of_runs":0}`, false, map[string]string{"number_of_runs": "must be greater than 0"}},
		{`{"source_code":"x","language_id":50,"memory_limit":999999}`, false, map[string]string{"memory_limit": "must be less than or equal to 512000"}},
		{`{"source_code":"x","language_id":71,"compiler_options":"-O2"}`, false, map[string]string{"compiler_options": "only allowed for compiled languages"}},
		{`{"source_code":"x","language_id":50,"compiler_options":"` + strings.Repeat("-O2 ", 129) + `"}`, false, map[string]string{"compiler_options": "is too long (maximum is 512 characters)"}},
		{`{"source_code":"x","language_id":50,"command_line_arguments":"` + strings.Repeat("a ", 257) + `"}`, false, map[string]string{"command_line_arguments": "is too long (maximum is 512 characters)"}},
		{`{"source_code":"x","language_id":71,"command_line_arguments":"a b","compiler_options":"  "}`, false, nil},
		{`{"source_code":"x","language_id":50,"enable_per_process_and_thread_time_limit":true}`, false, map[string]string{"enable_per_process_and_thread_time_limit": "cannot be enabled"}},
		{`{"source_code":"eA==","language_id":50}`, true, nil},
		{`{"source_code":"***","language_id":50}`, true, map[string]string{"source_code": "base64"}},
		{`{"source_code":"x","language_id":50,"cpu_time_limit":"NaN"}`, false, map[string]string{"cpu_time_limit": "is not a number"}},
		{`{"source_code":"x","language_id":50,"memory_limit":"Infinity"}`, false, map[string]string{"memory_limit": "is not a number"}},
		{`{"source_code":"x","language_id":50,"compiler_options":"-fplugin=x.so"}`, false, map[string]string{"compiler_options": "is not allowed for"}},
	} {
		r, err := Decode([]byte(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		sub, errs := c.Validate(r, tc.b64)
		if tc.errs == nil {
			if errs != nil || sub == nil {
				t.Errorf("%s: %v", tc.body, errs)
			}
			continue
		}
		for f, msg := range tc.errs {
			if !strings.Contains(strings.Join(errs[f], "|"), msg) {
				t.Errorf("%s: %v, want %s: %q", tc.body, errs, f, msg)
			}
		}
	}
	r, _ := Decode([]byte(`{"source_code":"x","language_id":50,"cpu_time_limit":2.3,"compiler_options":"-O2 -Wall","command_line_arguments":"a  b","number_of_runs":3,"expected_output":"e"}`))
	v, _ := c.Validate(r, false)
	l := v.Job.Limits
	if l.CPUMS != 2300 || l.WallMS != 10000 || l.MemoryKB != 128000 || l.Processes != 60 || l.StackKB != 64000 || l.FileSizeKB != 1024 ||
		v.Job.Runs != 3 || v.Job.Language != "c" || len(v.Job.CompileFlags) != 2 || len(v.Job.Args) != 2 || *v.Job.ExpectedOutput != "e" ||
		v.Job.Compare != job.CompareTrailingWhitespace || v.Options.LanguageID != 50 || v.Options.CPUExtraTime != 1 ||
		*v.Options.CompilerOptions != "-O2 -Wall" || *v.Options.CommandLineArguments != "a  b" {
		t.Fatalf("the job and options: %+v %+v", v.Job, v.Options)
	}
	if _, err := Decode([]byte(`{"source_code":`)); err == nil {
		t.Fatal("malformed JSON accepted")
	}
}

func TestRender(t *testing.T) {
	c := testCodec()
	created := time.Date(2026, 12, 1, 10, 0, 0, 5e6, time.UTC)
	r, _ := submission.New("t", Door, job.Job{Language: "c", Code: "x", Limits: job.Limits{CPUMS: 5000, WallMS: 10000}}, Options{LanguageID: 50, CPUExtraTime: 1}, created)
	all, err := ParseFields("*")
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Render(r, all, false)
	if err != nil || m["status_id"] != InQueue || m["time"] != nil || m["stdout"] != nil || m["exit_code"] != nil {
		t.Fatalf("in queue: %v %v", m, err)
	}
	code := 0
	r.Take(&job.Status{Status: job.StatusDone, Verdict: job.VerdictOK, Stdout: "Hello\n", ExitCode: &code, CPUUserUS: 1000, CPUSysUS: 500, MemUsage: 900}, created.Add(time.Second))
	m, err = c.Render(r, all, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 35 || m["time"] != "0.002" || m["cpu_time_limit"] != "5.0" || m["cpu_extra_time"] != "1.0" || m["created_at"] != "2026-12-01T10:00:00.005Z" ||
		m["finished_at"] != "2026-12-01T10:00:01.005Z" || m["stdout"] != "Hello\n" || m["status"] != StatusByID(Accepted) || m["memory"] != int64(900) ||
		m["language"].(map[string]any)["name"] != "C (GCC 12.2.0)" || m["exit_code"] != int64(0) || m["exit_signal"] != nil {
		b, _ := json.Marshal(m)
		t.Fatalf("%s", b)
	}
	m, _ = c.Render(r, DefaultFields, true)
	if m["stdout"] != "SGVsbG8K\n" || len(m) != len(DefaultFields) {
		t.Fatalf("base64: %v", m)
	}
	r.Status.Stdout = "\xff"
	if _, err := c.Render(r, DefaultFields, false); err != ErrNotUTF8 {
		t.Fatalf("not UTF-8: %v", err)
	}
	if _, err := ParseFields("token,nope,x"); err == nil || err.Error() != "invalid fields: [nope, x]" {
		t.Fatalf("fields: %v", err)
	}
	// A record another door made renders too: its language's id, no options.
	p, _ := submission.New("p", "piston", job.Job{Language: "python", Code: "print(1)"}, map[string]string{"language": "python"}, created)
	if m, _ := c.Render(p, []string{"language_id", "cpu_extra_time", "compiler_options"}, false); m["language_id"] != 71 || m["cpu_extra_time"] != "0.0" || m["compiler_options"] != nil {
		t.Fatalf("a piston record: %v", m)
	}
}

// TestResults: a final status as Judge0 shows it: the mean over the runs,
// stderr in stdout where the job redirected it, the signal's number.
func TestResults(t *testing.T) {
	c := testCodec()
	code := 3
	r, _ := submission.New("t", Door, job.Job{Language: "c", Code: "x", RedirectStderr: true}, Options{LanguageID: 50}, time.Now())
	r.Take(&job.Status{Status: job.StatusDone, Verdict: job.VerdictRuntimeError, ExitCode: &code, Stdout: "a", Stderr: "b",
		Runs: []job.RunStat{{CPUUserUS: 1000, MaxRSSKB: 100, WallUS: 2000}, {CPUUserUS: 3000, MaxRSSKB: 300, WallUS: 4000}}}, time.Now())
	m, _ := c.Render(r, Columns, false)
	if m["status_id"] != NZEC || m["stdout"] != "ab" || m["stderr"] != nil || m["time"] != "0.002" || m["memory"] != int64(200) ||
		m["wall_time"] != "0.003" || m["exit_code"] != int64(3) || m["exit_signal"] != nil || m["finished_at"] == nil {
		t.Fatalf("%v", m)
	}
	r, _ = submission.New("t", Door, job.Job{Language: "c", Code: "x"}, Options{LanguageID: 50}, time.Now())
	r.Take(&job.Status{Status: job.StatusFailed, Verdict: job.VerdictRuntimeError, Signal: "SIGSEGV"}, time.Now())
	if m, _ := c.Render(r, Columns, false); m["status_id"] != SIGSEGV || m["exit_signal"] != int64(11) || m["exit_code"] != int64(0) {
		t.Fatalf("%v", m)
	}
	r, _ = submission.New("t", Door, job.Job{Language: "c", Code: "x"}, Options{LanguageID: 50}, time.Now())
	r.Take(&job.Status{Status: job.StatusFailed, Verdict: job.VerdictCompileError, CompileOutput: "err", Message: "compilation failed"}, time.Now())
	if m, _ := c.Render(r, Columns, false); m["status_id"] != CompileError || m["compile_output"] != "err" || m["time"] != nil || m["exit_code"] != nil {
		t.Fatalf("%v", m)
	}
}

// TestLimitsFor: Judge0's maxima come down to the workers', defaults with
// them; units change at this edge only.
func TestLimitsFor(t *testing.T) {
	lim := LimitsFor(job.Policy{Max: job.Limits{WallMS: 8000, CPUMS: 3000, MemoryKB: 100000, StackKB: 32000, Processes: 30, FileSizeKB: 512},
		MaxRuns: 5, MaxCodeBytes: 1 << 20, CompileWall: 60000, Network: true})
	if lim.MaxWallTimeLimit != 8 || lim.WallTimeLimit != 8 || lim.MaxCPUTimeLimit != 3 || lim.CPUTimeLimit != 3 || lim.MaxMemoryLimit != 100000 ||
		lim.MemoryLimit != 100000 || lim.MaxStackLimit != 32000 || lim.MaxMaxProcesses != 30 || lim.MaxMaxFileSize != 512 || lim.MaxNumberOfRuns != 5 ||
		lim.MaxExtractSize != 4096 || lim.CompileWallMS != 60000 || !lim.AllowEnableNetwork {
		t.Fatalf("%+v", lim)
	}
	if got := LimitsFor(job.Policy{}); got.MaxWallTimeLimit != DefaultLimits.MaxWallTimeLimit || got.MemoryLimit != DefaultLimits.MemoryLimit {
		t.Fatalf("no policy: %+v", got)
	}
}
