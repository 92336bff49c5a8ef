package job

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/lang"
)

var testPolicy = Policy{
	MaxCodeBytes: 1000,
	Languages:    []string{"c", "cpp", "python"},
	Defaults:     Limits{WallMS: 10_000, CPUMS: 5_000, MemoryKB: 131072, Processes: 60, OutputBytes: 65536, FileSizeKB: 1024},
	Max:          Limits{WallMS: 60_000, CPUMS: 30_000, MemoryKB: 262144, Processes: 256, OutputBytes: 1 << 20, FileSizeKB: 65536},
	CompileWall:  30_000,
}

// The seed README's exact payload.
const seedJob = `{"id":"666", "type": "code", "code":"#include <stdio.h>\r\nint main() {\r\n   \/\/ printf() displays the string inside quotation\r\n   printf(\"Hello, World!\");\r\n   return 0;\r\n}"}` + "\r\n"

func TestDecode(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		wantID   string // id on the InvalidError, or of the job
		wantErr  string // substring of the reason; "" = valid
		wantLang string
	}{
		{name: "seed job", body: seedJob, wantID: "666", wantLang: "c"},
		{name: "python", body: `{"id":"a.b-c_1","language":"python","code":"print(1)"}`, wantID: "a.b-c_1", wantLang: "python"},
		// Cut short, but its id is readable: the producer hears back.
		{name: "bad json", body: `{"id":"7", "code": `, wantID: "7", wantErr: "malformed JSON"},
		{name: "bad json keeps id", body: `{"id":"7", "code": 5}`, wantID: "7", wantErr: "malformed JSON"},
		{name: "not json", body: `hello`, wantErr: "malformed JSON"},
		{name: "missing id", body: `{"code":"x"}`, wantErr: "missing id"},
		{name: "id with slash", body: `{"id":"a/b","code":"x"}`, wantErr: "id must be"},
		{name: "id dotdot", body: `{"id":"..","code":"x"}`, wantErr: "id must be"},
		{name: "id too long", body: `{"id":"` + strings.Repeat("a", 129) + `","code":"x"}`, wantErr: "id must be"},
		{name: "empty code", body: `{"id":"1","code":"  "}`, wantID: "1", wantErr: "empty code"},
		{name: "unknown language", body: `{"id":"1","language":"cobol","code":"x"}`, wantID: "1", wantErr: "unknown language \"cobol\" (available: c, cpp, python)"},
		{name: "unknown type", body: `{"id":"1","type":"shell","code":"x"}`, wantID: "1", wantErr: "unknown type"},
		{name: "code too big", body: `{"id":"1","code":"` + strings.Repeat("x", 1001) + `"}`, wantID: "1", wantErr: "over the limit of 1000"},
		{name: "bad file name", body: `{"id":"1","code":"x","files":{"../etc/passwd":"x"}}`, wantID: "1", wantErr: "invalid file name"},
		{name: "network not enabled", body: `{"id":"n1","code":"x","network":true}`, wantID: "n1", wantErr: "network access is not enabled"},
		{name: "network not asked", body: `{"id":"n2","code":"x","network":false}`, wantID: "n2", wantLang: "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := Decode([]byte(tt.body), testPolicy)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if j.ID != tt.wantID || j.Language != tt.wantLang {
					t.Fatalf("got id %q lang %q", j.ID, j.Language)
				}
				return
			}
			var inv *InvalidError
			if !errors.As(err, &inv) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want *InvalidError", err)
			}
			if !strings.Contains(inv.Reason, tt.wantErr) || inv.ID != tt.wantID {
				t.Fatalf("got id %q reason %q; want id %q reason containing %q", inv.ID, inv.Reason, tt.wantID, tt.wantErr)
			}
		})
	}
}

func TestSeedStatusBytes(t *testing.T) {
	got := string(Progress("666", StatusReceived).Marshal())
	if want := `{"id":"666","status":"received","stderr":"","stdout":""}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	code := 0
	done := &Status{ID: "666", Status: StatusDone, Stdout: "Hello, World!", Verdict: VerdictOK, ExitCode: &code}
	if got := string(done.Marshal()); !strings.HasPrefix(got, `{"id":"666","status":"done","stderr":"","stdout":"Hello, World!",`) {
		t.Fatalf("done status starts %s", got)
	}
}

func TestAgentLimitsClamp(t *testing.T) {
	got := testPolicy.AgentLimits("c", Limits{WallMS: 999_999, CPUMS: 100})
	if got.WallMS != 60_000 || got.CPUMS != 100 || got.MemoryKB != 131072 || got.CompileWallMS != 30_000 {
		t.Fatalf("clamped limits = %+v", got)
	}
	// A job's compile limits: within the worker's compile wall, and the
	// larger of its memory maximum and a compile's headroom.
	for _, c := range []struct {
		req               Limits
		wall, cpu, memory int64
	}{
		{Limits{}, 30_000, 0, 0},
		{Limits{CompileWallMS: 2_000, CompileCPUMS: 1_500, CompileMemoryKB: 65536}, 2_000, 1_500, 65536},
		{Limits{CompileWallMS: 999_999, CompileCPUMS: 999_999, CompileMemoryKB: 1 << 30}, 30_000, 30_000, agentproto.CompileMemoryKB},
	} {
		got := testPolicy.AgentLimits("c", c.req)
		if got.CompileWallMS != c.wall || got.CompileCPUMS != c.cpu || got.CompileMemoryKB != c.memory {
			t.Errorf("%+v: compile limits %d %d %d", c.req, got.CompileWallMS, got.CompileCPUMS, got.CompileMemoryKB)
		}
	}
}

// TestLanguageNeeds: a runtime's needs raise the defaults a job left
// unset, within the maxima; a limit the job set binds it.
func TestLanguageNeeds(t *testing.T) {
	p := testPolicy
	p.Table = lang.Table{"kotlin": {Name: "kotlin", Limits: &lang.Needs{MemoryKB: 200_000, CompileMemoryKB: 1 << 20}},
		"big": {Name: "big", Limits: &lang.Needs{MemoryKB: 1 << 30}}, "ruby": {Name: "ruby", Limits: &lang.Needs{MaxStackKB: 8192}}}
	for _, c := range []struct {
		language          string
		req               Limits
		memory, compileKB int64
	}{
		{"c", Limits{}, 131072, 0},
		{"kotlin", Limits{}, 200_000, 1 << 20},
		{"kotlin", Limits{MemoryKB: 65536, CompileMemoryKB: 100_000}, 65536, 100_000},
		{"big", Limits{}, 262144, 0}, // within the worker's maximum
	} {
		got := p.AgentLimits(c.language, c.req)
		if got.MemoryKB != c.memory || got.CompileMemoryKB != c.compileKB {
			t.Errorf("%s %+v: memory %d compile %d, want %d %d", c.language, c.req, got.MemoryKB, got.CompileMemoryKB, c.memory, c.compileKB)
		}
	}
	if got := p.AgentLimits("ruby", Limits{StackKB: 64000}); got.StackKB != 8192 {
		t.Errorf("ruby's stack: %d", got.StackKB)
	}
	if got := p.Clamp("kotlin", Limits{}); got.MemoryKB != 200_000 || got.CompileMemoryKB != 0 {
		t.Errorf("clamped for the store: %+v", got)
	}
	if p.MaxCompileMemoryKB("kotlin") != 1<<20 || p.MaxCompileMemoryKB("c") != agentproto.CompileMemoryKB {
		t.Error("compile memory maxima")
	}
}

func TestFromResultVerdicts(t *testing.T) {
	lim := testPolicy.AgentLimits("c", Limits{})
	tests := []struct {
		name    string
		res     agentproto.RunResult
		verdict string
		status  string
	}{
		{"ok", agentproto.RunResult{Compiled: true, Run: &agentproto.Phase{}, Stdout: "hi"}, VerdictOK, StatusDone},
		{"compile error", agentproto.RunResult{Compiled: false, Compile: &agentproto.Phase{ExitCode: 1}, CompileOutput: "error"}, VerdictCompileError, StatusFailed},
		{"exit 3", agentproto.RunResult{Compiled: true, Run: &agentproto.Phase{ExitCode: 3}}, VerdictRuntimeError, StatusFailed},
		{"segv", agentproto.RunResult{Compiled: true, Run: &agentproto.Phase{ExitCode: 139, Signal: "SIGSEGV"}}, VerdictRuntimeError, StatusFailed},
		{"wall", agentproto.RunResult{Compiled: true, Run: &agentproto.Phase{ExitCode: 137, Signal: "SIGKILL", TimedOut: true}}, VerdictTimeLimit, StatusFailed},
		{"cpu", agentproto.RunResult{Compiled: true, Run: &agentproto.Phase{ExitCode: 152, Signal: "SIGXCPU"}}, VerdictTimeLimit, StatusFailed},
		{"output", agentproto.RunResult{Compiled: true, Run: &agentproto.Phase{ExitCode: 137, Signal: "SIGKILL", OutputLimited: true}}, VerdictOutputLimit, StatusFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := FromResult(&Job{ID: "1"}, lim, &tt.res)
			if s.Verdict != tt.verdict || s.Status != tt.status {
				t.Fatalf("verdict %s status %s, want %s %s", s.Verdict, s.Status, tt.verdict, tt.status)
			}
			if s.Stdout != tt.res.Stdout || s.CompileOutput != tt.res.CompileOutput {
				t.Fatal("output not kept")
			}
		})
	}
}

func TestFromResultJudge(t *testing.T) {
	lim := testPolicy.AgentLimits("c", Limits{})
	ok := func(out string) agentproto.RunResult {
		return agentproto.RunResult{Compiled: true, Run: &agentproto.Phase{}, Stdout: out}
	}
	str := func(s string) *string { return &s }
	tests := []struct {
		name    string
		job     Job
		res     agentproto.RunResult
		verdict string
	}{
		{"memory", Job{}, agentproto.RunResult{Compiled: true, Run: &agentproto.Phase{ExitCode: 137, Signal: "SIGKILL", MemoryLimited: true}}, VerdictMemoryLimit},
		{"file size", Job{}, agentproto.RunResult{Compiled: true, Run: &agentproto.Phase{ExitCode: 153, Signal: "SIGXFSZ"}}, VerdictRuntimeError},
		{"expected matches", Job{ExpectedOutput: str("42\n")}, ok("42\n"), VerdictOK},
		{"trailing whitespace ignored", Job{ExpectedOutput: str("1 2\n3")}, ok("1 2  \n3\n\n"), VerdictOK},
		{"crlf ignored", Job{ExpectedOutput: str("a\nb\n")}, ok("a\r\nb\r\n"), VerdictOK},
		{"exact sees trailing space", Job{ExpectedOutput: str("42"), Compare: CompareExact}, ok("42\n"), VerdictWrongAnswer},
		{"wrong answer", Job{ExpectedOutput: str("42")}, ok("41"), VerdictWrongAnswer},
		{"leading whitespace matters", Job{ExpectedOutput: str("42")}, ok(" 42"), VerdictWrongAnswer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.job.ID = "1"
			s := FromResult(&tt.job, lim, &tt.res)
			if s.Verdict != tt.verdict {
				t.Fatalf("verdict %s (%s), want %s", s.Verdict, s.Message, tt.verdict)
			}
		})
	}
}

func TestFromResultRuns(t *testing.T) {
	lim := testPolicy.AgentLimits("c", Limits{})
	res := agentproto.RunResult{Compiled: true, Run: &agentproto.Phase{WallUS: 30}, Runs: []agentproto.Phase{
		{WallUS: 30, CPUUserUS: 10}, {WallUS: 10, CPUUserUS: 5}, {WallUS: 20, CPUUserUS: 7, MaxRSSKB: 9},
	}}
	s := FromResult(&Job{ID: "1", Runs: 3}, lim, &res)
	if s.Verdict != VerdictOK || len(s.Runs) != 3 || s.RunsSummary == nil {
		t.Fatalf("%+v", s)
	}
	if sum := s.RunsSummary; sum.MinWallUS != 10 || sum.MedianWallUS != 20 || sum.MinCPUUS != 5 || sum.MedianCPUUS != 7 || sum.MaxRSSKB != 9 {
		t.Fatalf("summary %+v", sum)
	}
	res.Runs[2] = agentproto.Phase{ExitCode: 139, Signal: "SIGSEGV"}
	if s := FromResult(&Job{ID: "1", Runs: 3}, lim, &res); s.Verdict != VerdictRuntimeError || !strings.Contains(s.Message, "run 3 of 3") {
		t.Fatalf("a failing later run: %s %s", s.Verdict, s.Message)
	}
}

func TestValidateJudgeFields(t *testing.T) {
	p := testPolicy
	p.MaxRuns = 20
	p.Table = lang.Builtin()
	for _, tt := range []struct {
		body, reason string
	}{
		{`{"id":"1","code":"x","runs":21}`, "at most 20"},
		{`{"id":"1","code":"x","compare":"fuzzy"}`, "compare must be"},
		{`{"id":"1","code":"x","compile_flags":["-fplugin=x.so"]}`, "not allowed"},
	} {
		_, err := Decode([]byte(tt.body), p)
		if err == nil || !strings.Contains(err.Error(), tt.reason) {
			t.Errorf("%s: err %v, want %q", tt.body, err, tt.reason)
		}
	}
	if _, err := Decode([]byte(`{"id":"1","code":"x","runs":5,"compile_flags":["-O2"],"expected_output":"a"}`), p); err != nil {
		t.Fatal(err)
	}
}

// TestDecodeBoundsHostileJobs: every size a job controls is bounded before
// it costs anything, and the reason quoting the job is bounded too.
func TestDecodeBoundsHostileJobs(t *testing.T) {
	p := testPolicy
	p.MaxCodeBytes = 1 << 20
	p.MaxJobBytes = 8 << 20
	p.Table = lang.Builtin()
	manyFiles := map[string]string{}
	for i := range 10_000 {
		manyFiles[fmt.Sprintf("f%d.h", i)] = ""
	}
	mk := func(fields map[string]any) string {
		j := map[string]any{"id": "h1", "language": "c", "code": "int main(){}"}
		for k, v := range fields {
			j[k] = v
		}
		b, _ := json.Marshal(j)
		// A producer may send U+2028 raw (Go's encoder escapes it).
		return strings.ReplaceAll(string(b), `\u2028`, "\u2028")
	}
	u2028MiB := strings.Repeat("\u2028", (1<<20)/3)
	tests := []struct {
		name, body, want string
		maxReason        int
	}{
		{"body over the limit, id salvaged", `{"id":"h1","code":"` + strings.Repeat("x", 9<<20) + `"}`, "over the limit of 8388608", 0},
		{"10,000 files", mk(map[string]any{"files": manyFiles}), "10000 files, at most 64", 0},
		{"a 2 MiB arg", mk(map[string]any{"args": []string{strings.Repeat("a", 2<<20)}}), "args total 2097152 bytes", 0},
		{"300 args", mk(map[string]any{"args": make([]string, 300)}), "300 args, at most 256", 0},
		{"the source's own name as a file", mk(map[string]any{"files": map[string]string{"main.c": "x"}}), `"main.c" is the program's own source file`, 0},
		{"expected output over the output limit", mk(map[string]any{"expected_output": strings.Repeat("x", 2<<20)}), "expected_output is 2097152 bytes", 0},
		// U+2028 is 3 bytes raw in the job but 6 in the request (JSON
		// always escapes it): 4 MiB of it fits the job and not the frame.
		{"request over the agent's frame", mk(map[string]any{"code": "x" + u2028MiB[3:], "stdin": u2028MiB, "files": map[string]string{"a.h": u2028MiB, "b.h": u2028MiB}}), "over the agent's limit", 0},
		{"800 KB language: the reason stays small", mk(map[string]any{"language": strings.Repeat("\u0080", 400_000)}), "unknown language", 2 * 1024},
		{"800 KB type", mk(map[string]any{"type": strings.Repeat("\u0080", 400_000)}), "unknown type", 2 * 1024},
		{"a huge compile flag", mk(map[string]any{"compile_flags": []string{"-D" + strings.Repeat("\u0080", 100_000)}}), "over 256 bytes", 2 * 1024},
		{"a huge number literal", `{"id":"h1","code":"x","runs":` + strings.Repeat("9", 1<<20) + `}`, "malformed JSON", 2 * 1024},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.body), p)
			var inv *InvalidError
			if !errors.As(err, &inv) || inv.ID != "h1" || !strings.Contains(inv.Reason, tt.want) {
				t.Fatalf("err = %v, want an invalid job h1 with reason containing %q", err, tt.want)
			}
			if tt.maxReason > 0 && len(inv.Reason) > tt.maxReason {
				t.Fatalf("reason is %d bytes", len(inv.Reason))
			}
			if st := Invalid(inv.ID, inv.Reason).Marshal(); len(st) > 4096 {
				t.Fatalf("the invalid_job status is %d bytes", len(st))
			}
		})
	}
}

func TestFromResultWithTests(t *testing.T) {
	yes, no := true, false
	lim := agentproto.Limits{CPUMS: 1000, WallMS: 2000, OutputBytes: 100}
	phase := func(code int) agentproto.Phase { return agentproto.Phase{ExitCode: code, WallUS: 1000, MaxRSSKB: 500} }
	j := &Job{ID: "t", Tests: make([]Test, 5)}
	r := &agentproto.RunResult{Compiled: true, Tests: []agentproto.TestResult{
		{Phase: phase(0), Stdout: "ok", Matched: &yes, OutputKept: true},
		{Phase: phase(0), Stdout: "bad", Matched: &no, OutputKept: true},
		{Phase: agentproto.Phase{ExitCode: 137, Signal: "SIGKILL", TimedOut: true}, OutputKept: true},
	}}
	st := FromResult(j, lim, r)
	if st.Status != StatusFailed || st.Verdict != VerdictWrongAnswer || st.Message != "test 2 of 5: output differs from expected_output" {
		t.Fatalf("job %s %s %q", st.Status, st.Verdict, st.Message)
	}
	want := []string{VerdictOK, VerdictWrongAnswer, VerdictTimeLimit}
	for i, ts := range st.Tests {
		if ts.Verdict != want[i] {
			t.Fatalf("test %d: %s (%s), want %s", i+1, ts.Verdict, ts.Message, want[i])
		}
	}
	if st.ExecDuration != 2000 || st.MemUsage != 500 || *st.ExitCode != 0 {
		t.Fatalf("totals: %d us, %d KiB, exit %d", st.ExecDuration, st.MemUsage, *st.ExitCode)
	}
	// A checker decides: 0 accepts, 1 rejects, anything else is its failure.
	j.Checker = &Checker{Language: "python", Code: "x"}
	r = &agentproto.RunResult{Compiled: true, CheckerCompiled: true, Tests: []agentproto.TestResult{
		{Phase: phase(0), Checker: &agentproto.Phase{ExitCode: 0}, CheckerMessage: "fine", OutputKept: true},
		{Phase: phase(0), Checker: &agentproto.Phase{ExitCode: 2}, OutputKept: true},
	}}
	st = FromResult(j, lim, r)
	if st.Tests[0].Verdict != VerdictOK || st.Tests[0].CheckerMessage != "fine" || st.Tests[1].Verdict != VerdictInternalError || st.Verdict != VerdictInternalError {
		t.Fatalf("checker verdicts: %+v", st.Tests)
	}
	r.CheckerCompiled = false
	r.CheckerCompileOutput = "syntax error"
	if st = FromResult(j, lim, r); st.Verdict != VerdictInternalError || st.Message != "the checker did not compile" || st.Error != "syntax error" {
		t.Fatalf("checker that does not compile: %+v", st)
	}
}

// TestNetworkEnabled: with networking enabled a job may ask for it, and
// the job says it did.
func TestNetworkEnabled(t *testing.T) {
	p := testPolicy
	p.Network = true
	j, err := Decode([]byte(`{"id":"n3","code":"x","network":true}`), p)
	if err != nil || !j.Network {
		t.Fatalf("networked job on a networked worker: %+v, %v", j, err)
	}
}

// TestDecodeCountsBeforeAllocating: an 8 MiB job of "tests":[{},{},...]
// and a 16 MiB body of {"id":[[],[],...]} are refused having allocated
// under 64 MiB each (they once took 819 and 632 MiB).
func TestDecodeCountsBeforeAllocating(t *testing.T) {
	p := Policy{MaxJobBytes: 16 << 20, MaxCodeBytes: 4096, MaxTests: 64, Languages: []string{"c"}}
	for _, tc := range []struct {
		name, body, reason, id string
	}{
		{"8 MiB of tests", `{"id":"many","language":"c","code":"x","tests":[` + strings.Repeat(`{},`, 8<<20/3) + `{}]}`, "JSON values", "many"},
		{"16 MiB nested id", `{"id":[` + strings.Repeat(`[],`, 16<<20/3-4) + `[]]}`, "JSON values", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := Decode(body, p)
			runtime.ReadMemStats(&after)
			var inv *InvalidError
			if !errors.As(err, &inv) || !strings.Contains(inv.Reason, tc.reason) || inv.ID != tc.id {
				t.Fatalf("%v (id %q), want invalid with id %q: %s", err, inv.ID, tc.id, tc.reason)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
				t.Fatalf("allocated %d MiB", alloc>>20)
			}
		})
	}
}

// TestJobWallBudget: a job whose limits multiply past the policy's whole-job
// cap is invalid_job; one under it carries its budget to the agent.
func TestJobWallBudget(t *testing.T) {
	p := Policy{MaxCodeBytes: 4096, Languages: []string{"c"}, MaxTests: 64, CompileWall: 60_000, MaxJobWall: 30 * 60_000,
		Defaults: Limits{WallMS: 10_000}, Max: Limits{WallMS: 60_000}}
	tests := func(n int) []Test { return make([]Test, n) }
	checker := &Checker{Language: "c", Code: "int main(){}"}
	for _, tc := range []struct {
		name    string
		j       Job
		invalid bool
		budget  int64
	}{
		{"one run", Job{ID: "a", Code: "x"}, false, 70_000},
		{"64 tests, checker, default walls", Job{ID: "b", Code: "x", Tests: tests(64), Checker: checker}, false, 2*60_000 + 128*10_000},
		{"64 tests, checker, 60 s walls", Job{ID: "c", Code: "x", Tests: tests(64), Checker: checker, Limits: Limits{WallMS: 60_000}}, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.j.Validate(p)
			var inv *InvalidError
			if tc.invalid {
				if !errors.As(err, &inv) || !strings.Contains(inv.Reason, "over the limit of 30m0s") {
					t.Fatalf("err %v, want invalid over the job's wall limit", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Request(&tc.j).Limits.JobWallMS; got != tc.budget {
				t.Fatalf("budget %d ms, want %d", got, tc.budget)
			}
		})
	}
}
