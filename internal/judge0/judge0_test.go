package judge0

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/lang"
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

func testLanguages() map[int]Language {
	m := map[int]Language{}
	ls := Languages(map[string]lang.Language{"c": lang.Builtin()["c"], "python": lang.Builtin()["python"]},
		map[string]string{"c": "12.2.0", "python": "Python 3.11.2"})
	for _, l := range ls {
		m[l.ID] = l
	}
	return m
}

func TestLanguages(t *testing.T) {
	m := testLanguages()
	if c := m[50]; c.Name != "C (GCC 12.2.0)" || c.SourceFile != "main.c" || c.CompileCmd == nil || c.Ours != "c" {
		t.Fatalf("C: %+v", c)
	}
	if p := m[71]; p.Name != "Python (3.11.2)" || p.CompileCmd != nil {
		t.Fatalf("Python: %+v", p)
	}
}

func TestValidate(t *testing.T) {
	langs := testLanguages()
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
	} {
		r, err := Decode([]byte(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		sub, errs := Validate(r, langs, DefaultLimits, tc.b64)
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
	r, _ := Decode([]byte(`{"source_code":"x","language_id":50}`))
	sub, _ := Validate(r, langs, DefaultLimits, false)
	if sub.CPUTimeLimit != 5 || sub.WallTimeLimit != 10 || sub.MemoryLimit != 128000 || sub.NumberOfRuns != 1 || sub.MaxProcesses != 60 {
		t.Fatalf("defaults: %+v", sub)
	}
	if _, err := Decode([]byte(`{"source_code":`)); err == nil {
		t.Fatal("malformed JSON accepted")
	}
}

func TestRender(t *testing.T) {
	tm := 0.0015
	mem, code := int64(900), int64(0)
	out := "Hello\n"
	created := time.Date(2026, 12, 1, 10, 0, 0, 5e6, time.UTC)
	r := &Record{Token: "t", StatusID: Accepted, CreatedAt: created, Stdout: &out, Time: &tm, Memory: &mem, ExitCode: &code,
		Sub: Submission{SourceCode: "x", LanguageID: 50, CPUTimeLimit: 5, WallTimeLimit: 10}}
	all, err := ParseFields("*")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Render(r, all, false, "C (GCC 12.2.0)")
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 35 || m["time"] != "0.0015" || m["cpu_time_limit"] != "5.0" || m["created_at"] != "2026-12-01T10:00:00.005Z" ||
		m["finished_at"] != nil || m["stdout"] != "Hello\n" || m["status"] != StatusByID(Accepted) {
		b, _ := json.Marshal(m)
		t.Fatalf("%s", b)
	}
	m, _ = Render(r, DefaultFields, true, "")
	if m["stdout"] != "SGVsbG8K\n" || len(m) != len(DefaultFields) {
		t.Fatalf("base64: %v", m)
	}
	bad := "\xff"
	r.Stdout = &bad
	if _, err := Render(r, DefaultFields, false, ""); err != ErrNotUTF8 {
		t.Fatalf("not UTF-8: %v", err)
	}
	if _, err := ParseFields("token,nope,x"); err == nil || err.Error() != "invalid fields: [nope, x]" {
		t.Fatalf("fields: %v", err)
	}
}

func TestApply(t *testing.T) {
	code := 3
	r := &Record{Sub: Submission{RedirectStderr: true}}
	r.Apply(&job.Status{Status: job.StatusDone, Verdict: job.VerdictRuntimeError, ExitCode: &code, Stdout: "a", Stderr: "b",
		Runs: []job.RunStat{{CPUUserUS: 1000, MaxRSSKB: 100, WallUS: 2000}, {CPUUserUS: 3000, MaxRSSKB: 300, WallUS: 4000}}}, time.Now())
	if r.StatusID != NZEC || *r.Stdout != "ab" || r.Stderr != nil || *r.Time != 0.002 || *r.Memory != 200 || *r.WallTime != 0.003 ||
		*r.ExitCode != 3 || r.ExitSignal != nil || r.FinishedAt == nil {
		t.Fatalf("%+v", r)
	}
	r = &Record{}
	r.Apply(&job.Status{Status: job.StatusDone, Verdict: job.VerdictRuntimeError, Signal: "SIGSEGV"}, time.Now())
	if r.StatusID != SIGSEGV || *r.ExitSignal != 11 || *r.ExitCode != 0 {
		t.Fatalf("%+v", r)
	}
}
