package job

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/codebench/codebench/internal/agentproto"
)

// Status values, as the seed defined them.
const (
	StatusReceived = "received"
	StatusRunning  = "running"
	StatusDone     = "done"
	StatusFailed   = "failed"
	// StatusOutput carries streamed output (stream: true), between running
	// and the final status.
	StatusOutput = "output"
)

// Verdicts.
const (
	VerdictOK            = "ok"
	VerdictCompileError  = "compile_error"
	VerdictRuntimeError  = "runtime_error"
	VerdictTimeLimit     = "time_limit"
	VerdictMemoryLimit   = "memory_limit"
	VerdictOutputLimit   = "output_limit"
	VerdictWrongAnswer   = "wrong_answer"
	VerdictInvalidJob    = "invalid_job"
	VerdictInternalError = "internal_error"
)

// Status is one message on job_status_<id>. The four seed fields come first,
// in the seed's order, and are always present; the rest only on final
// statuses, so received/running are byte-for-byte the seed's.
type Status struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Stderr string `json:"stderr"`
	Stdout string `json:"stdout"`

	Verdict       string   `json:"verdict,omitempty"`
	ExitCode      *int     `json:"exit_code,omitempty"`
	Signal        string   `json:"signal,omitempty"`
	CompileOutput string   `json:"compile_output,omitempty"`
	Message       string   `json:"message,omitempty"`
	Error         string   `json:"error,omitempty"`
	ExecDuration  int64    `json:"exec_duration,omitempty"` // run wall time, µs
	MemUsage      int64    `json:"mem_usage,omitempty"`     // run max RSS, KiB
	CPUUserUS     int64    `json:"cpu_user_us,omitempty"`
	CPUSysUS      int64    `json:"cpu_sys_us,omitempty"`
	CompileUS     int64    `json:"compile_us,omitempty"`
	Timings       *Timings `json:"timings,omitempty"`
	// Runs and RunsSummary are set when the job asked for several runs.
	Runs        []RunStat    `json:"runs,omitempty"`
	RunsSummary *RunsSummary `json:"runs_summary,omitempty"`
	// Tests has one entry per test run, when the job had tests.
	Tests []TestStatus `json:"tests,omitempty"`
	// Seq orders a job's output statuses.
	Seq int `json:"seq,omitempty"`
	// Trimmed is set when text was cut to make the status fit (see Fit).
	Trimmed *Trimmed `json:"trimmed,omitempty"`
	// ReplySecret is the job's (Job.ReplySecret), on every status of it.
	ReplySecret string `json:"reply_secret,omitempty"`
}

// TestStatus is one test's outcome.
type TestStatus struct {
	Verdict        string   `json:"verdict"`
	Message        string   `json:"message,omitempty"`
	ExitCode       int      `json:"exit_code"`
	Signal         string   `json:"signal,omitempty"`
	Stdout         string   `json:"stdout"`
	Stderr         string   `json:"stderr"`
	ExecDuration   int64    `json:"exec_duration"` // µs
	CPUUserUS      int64    `json:"cpu_user_us"`
	CPUSysUS       int64    `json:"cpu_sys_us"`
	MemUsage       int64    `json:"mem_usage"` // KiB
	CheckerMessage string   `json:"checker_message,omitempty"`
	Trimmed        *Trimmed `json:"trimmed,omitempty"`
}

// RunStat is one run's measurements.
type RunStat struct {
	Verdict   string `json:"verdict"`
	ExitCode  int    `json:"exit_code"`
	Signal    string `json:"signal,omitempty"`
	WallUS    int64  `json:"wall_us"`
	CPUUserUS int64  `json:"cpu_user_us"`
	CPUSysUS  int64  `json:"cpu_sys_us"`
	MaxRSSKB  int64  `json:"max_rss_kb"`
}

// RunsSummary condenses several runs.
type RunsSummary struct {
	N            int   `json:"n"`
	MinWallUS    int64 `json:"min_wall_us"`
	MedianWallUS int64 `json:"median_wall_us"`
	MinCPUUS     int64 `json:"min_cpu_us"`
	MedianCPUUS  int64 `json:"median_cpu_us"`
	MaxRSSKB     int64 `json:"max_rss_kb"`
}

// Timings are the phases of one job, in microseconds. Teardown of the VM
// happens after the final status is published, so it is in the log only.
type Timings struct {
	// QueueWaitUS: publish to delivery, when the producer stamped the job
	// (header x-codebench-published-ns, as codebench submit and bench do).
	QueueWaitUS int64 `json:"queue_wait_us,omitempty"`
	PoolWaitUS  int64 `json:"pool_wait_us"`
	PublishUS   int64 `json:"publish_us"`  // the confirmed received and running statuses
	DispatchUS  int64 `json:"dispatch_us"` // agent call minus compile and run: transfer and agent work
	CompileUS   int64 `json:"compile_us"`
	RunUS       int64 `json:"run_us"`
	AgentUS     int64 `json:"agent_us"` // the whole agent call, seen from the host
	GuestUS     int64 `json:"guest_us"` // the agent's own time for it, inside the guest
	TotalUS     int64 `json:"total_us"` // delivery to final status ready
}

// AddGuest takes the agent call's timings (execute's: dispatch, compile,
// run, the agent's own), measured in and around the sandbox, into t, the
// host's; nil adds nothing.
func (t *Timings) AddGuest(g *Timings) {
	if g == nil {
		return
	}
	t.AgentUS, t.DispatchUS, t.CompileUS, t.RunUS, t.GuestUS = g.AgentUS, g.DispatchUS, g.CompileUS, g.RunUS, g.GuestUS
}

// Marshal encodes s without HTML escaping (output is program text).
func (s *Status) Marshal() []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		panic(fmt.Sprintf("job: marshal status: %v", err)) // only strings and ints
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// Progress is a received or running status.
func Progress(id, status string) *Status { return &Status{ID: id, Status: status} }

// Output is a streamed output status.
func Output(id string, seq int, stdout, stderr string) *Status {
	return &Status{ID: id, Status: StatusOutput, Seq: seq, Stdout: stdout, Stderr: stderr}
}

// Invalid is the final status of a refused job.
func Invalid(id, reason string) *Status {
	return &Status{ID: id, Status: StatusFailed, Verdict: VerdictInvalidJob, Message: reason}
}

// Internal is the final status of a job the system failed to run.
func Internal(id, message string, err error) *Status {
	s := &Status{ID: id, Status: StatusFailed, Verdict: VerdictInternalError, Message: message}
	if err != nil {
		s.Error = err.Error()
	}
	return s
}

// FromResult derives the verdict and final status from the agent's result.
// With several runs, the first run that did not pass decides the verdict.
func FromResult(j *Job, lim agentproto.Limits, r *agentproto.RunResult) *Status {
	s := &Status{ID: j.ID, Status: StatusFailed, CompileOutput: r.CompileOutput, Stdout: r.Stdout, Stderr: r.Stderr}
	if r.Compile != nil {
		s.CompileUS = r.Compile.WallUS
	}
	if !r.Compiled {
		s.Verdict = VerdictCompileError
		switch {
		case r.Compile != nil && r.Compile.TimedOut:
			s.Message = fmt.Sprintf("compilation exceeded %d ms", lim.CompileWallMS)
		case r.Compile != nil && r.Compile.MemoryLimited:
			s.Message = "compilation ran out of memory"
		default:
			s.Message = "compilation failed"
		}
		return s
	}
	if len(j.Tests) > 0 {
		return fromTests(s, j, lim, r)
	}
	run := r.Run
	if run == nil {
		s.Verdict = VerdictInternalError
		s.Message = "agent returned no run phase"
		return s
	}
	code := run.ExitCode
	s.ExitCode = &code
	s.Signal = run.Signal
	s.ExecDuration, s.MemUsage = run.WallUS, run.MaxRSSKB
	s.CPUUserUS, s.CPUSysUS = run.CPUUserUS, run.CPUSysUS
	s.Verdict, s.Message = phaseVerdict(run, lim)
	if len(r.Runs) > 1 {
		s.Runs, s.RunsSummary = runStats(r.Runs, lim)
		for i, rs := range s.Runs {
			if s.Verdict == VerdictOK && rs.Verdict != VerdictOK {
				_, msg := phaseVerdict(&r.Runs[i], lim)
				s.Verdict, s.Message = rs.Verdict, fmt.Sprintf("run %d of %d: %s", i+1, len(s.Runs), msg)
			}
		}
	}
	if s.Verdict == VerdictOK && j.ExpectedOutput != nil && !agentproto.OutputMatches(s.Stdout, *j.ExpectedOutput, j.Compare) {
		s.Verdict = VerdictWrongAnswer
		s.Message = "output differs from expected_output"
		if j.Compare == CompareExact {
			s.Message += " (exact comparison)"
		}
	}
	if s.Verdict == VerdictOK {
		s.Status = StatusDone
	}
	return s
}

// fromTests judges a job with tests: each test by its run, then its checker
// or the comparison; the job by its first test that did not pass.
func fromTests(s *Status, j *Job, lim agentproto.Limits, r *agentproto.RunResult) *Status {
	if (j.Checker != nil || j.Interactor != nil) && !r.CheckerCompiled {
		s.Verdict = VerdictInternalError
		s.Message = "the checker did not compile"
		if j.Interactor != nil {
			s.Message = "the interactor did not compile"
		}
		s.Error = r.CheckerCompileOutput
		return s
	}
	if len(r.Tests) == 0 {
		s.Verdict = VerdictInternalError
		s.Message = "agent returned no test"
		return s
	}
	s.Verdict = VerdictOK
	code := 0
	for i, t := range r.Tests {
		ts := TestStatus{ExitCode: t.ExitCode, Signal: t.Signal, Stdout: t.Stdout, Stderr: t.Stderr,
			ExecDuration: t.WallUS, CPUUserUS: t.CPUUserUS, CPUSysUS: t.CPUSysUS, MemUsage: t.MaxRSSKB}
		ts.Verdict, ts.Message = phaseVerdict(&t.Phase, lim)
		switch {
		case j.Interactor != nil:
			ts.CheckerMessage = t.CheckerMessage
			ts.Verdict, ts.Message = interactiveVerdict(&t, ts.Verdict, ts.Message)
		case ts.Verdict != VerdictOK:
		case t.Checker != nil:
			ts.CheckerMessage = t.CheckerMessage
			switch {
			case t.Checker.ExitCode == 0 && t.Checker.Signal == "" && !t.Checker.TimedOut:
			case t.Checker.ExitCode == 1 && t.Checker.Signal == "":
				ts.Verdict, ts.Message = VerdictWrongAnswer, "the checker rejected the output"
			default:
				ts.Verdict = VerdictInternalError
				ts.Message = fmt.Sprintf("the checker failed (exit %d%s)", t.Checker.ExitCode, map[bool]string{true: ", " + t.Checker.Signal}[t.Checker.Signal != ""])
			}
		case t.Matched != nil && !*t.Matched:
			ts.Verdict, ts.Message = VerdictWrongAnswer, "output differs from expected_output"
		}
		if !t.OutputKept {
			ts.Message = strings.TrimPrefix(ts.Message+"; output not kept in full (the job's total output budget was used up; it was judged on all of it)", "; ")
		}
		s.Tests = append(s.Tests, ts)
		s.ExecDuration += t.WallUS
		s.CPUUserUS += t.CPUUserUS
		s.CPUSysUS += t.CPUSysUS
		s.MemUsage = max(s.MemUsage, t.MaxRSSKB)
		if s.Verdict == VerdictOK && ts.Verdict != VerdictOK {
			s.Verdict = ts.Verdict
			s.Message = fmt.Sprintf("test %d of %d: %s", i+1, len(j.Tests), ts.Message)
			code = t.ExitCode
		}
	}
	s.ExitCode = &code
	if s.Verdict == VerdictOK {
		s.Status = StatusDone
	}
	return s
}

// phaseVerdict classifies one run. Limits come first: a process killed for a
// limit also shows a signal, and the limit is what the user needs to know.
func phaseVerdict(run *agentproto.Phase, lim agentproto.Limits) (verdict, message string) {
	cpuMS := (run.CPUUserUS + run.CPUSysUS) / 1000
	switch {
	case run.OutputLimited:
		return VerdictOutputLimit, fmt.Sprintf("output exceeded %d bytes; the first %d are kept", lim.OutputBytes, lim.OutputBytes)
	case run.MemoryLimited:
		return VerdictMemoryLimit, fmt.Sprintf("memory limit of %d KiB exceeded", lim.MemoryKB)
	case run.Signal == "SIGXCPU" || (run.Signal == "SIGKILL" && lim.CPUMS > 0 && cpuMS >= lim.CPUMS):
		return VerdictTimeLimit, fmt.Sprintf("CPU time limit of %d ms exceeded", lim.CPUMS)
	case run.TimedOut:
		return VerdictTimeLimit, fmt.Sprintf("wall time limit of %d ms exceeded", lim.WallMS)
	case run.Signal == "SIGXFSZ":
		return VerdictRuntimeError, fmt.Sprintf("killed by SIGXFSZ: file size limit of %d KiB exceeded", lim.FileSizeKB)
	case run.Signal != "":
		return VerdictRuntimeError, "killed by " + run.Signal
	case run.ExitCode != 0:
		return VerdictRuntimeError, fmt.Sprintf("exited with status %d", run.ExitCode)
	}
	return VerdictOK, ""
}

func runStats(runs []agentproto.Phase, lim agentproto.Limits) ([]RunStat, *RunsSummary) {
	stats := make([]RunStat, len(runs))
	var walls, cpus []int64
	sum := &RunsSummary{N: len(runs)}
	for i, p := range runs {
		v, _ := phaseVerdict(&p, lim)
		stats[i] = RunStat{Verdict: v, ExitCode: p.ExitCode, Signal: p.Signal, WallUS: p.WallUS,
			CPUUserUS: p.CPUUserUS, CPUSysUS: p.CPUSysUS, MaxRSSKB: p.MaxRSSKB}
		walls = append(walls, p.WallUS)
		cpus = append(cpus, p.CPUUserUS+p.CPUSysUS)
		sum.MaxRSSKB = max(sum.MaxRSSKB, p.MaxRSSKB)
	}
	slices.Sort(walls)
	slices.Sort(cpus)
	sum.MinWallUS, sum.MedianWallUS = walls[0], median(walls)
	sum.MinCPUUS, sum.MedianCPUUS = cpus[0], median(cpus)
	return stats, sum
}

func median(sorted []int64) int64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// Final reports whether status ends a job.
func Final(status string) bool { return status == StatusDone || status == StatusFailed }

// Interactor exits, testlib's: accepted, wrong answer, presentation error,
// the judge's own failure.
const (
	interactorOK   = 0
	interactorWA   = 1
	interactorPE   = 2
	interactorFail = 3
)

// interactiveVerdict judges one test of a program and its interactor from
// the program's own verdict (phaseVerdict) and how the two ended. The
// interactor's failure (exit 3, another exit, a signal, its own limits) is
// the judge's, never the program's: internal_error. A correct interactor
// ends soon after its program does (it sees the end of its input), so one
// still running at its own limit (the program's plus a margin) hangs:
// internal_error too, even when the program's time ran out first waiting
// for its answer. Otherwise whoever ended first decides: an interactor that
// rejected while the program still ran makes it wrong_answer, whatever the
// program did next (died writing to the closed pipe, hung waiting); a
// program that failed first keeps its own verdict; a program that ended
// cleanly is judged by the interactor.
func interactiveVerdict(t *agentproto.TestResult, progVerdict, progMessage string) (string, string) {
	it, in := t.Checker, t.Interaction
	if it == nil || in == nil {
		return VerdictInternalError, "the interactor did not run"
	}
	exit := it.ExitCode
	switch {
	case it.TimedOut:
		return VerdictInternalError, "the interactor exceeded its wall time limit (the program's and a margin)"
	case it.MemoryLimited:
		return VerdictInternalError, "the interactor exceeded its memory limit"
	case it.Signal != "":
		return VerdictInternalError, "the interactor was killed by " + it.Signal
	case exit == interactorFail:
		return VerdictInternalError, "the interactor failed (exit 3: the judge's own failure)"
	case exit != interactorOK && exit != interactorWA && exit != interactorPE:
		return VerdictInternalError, fmt.Sprintf("the interactor failed (exit %d)", exit)
	}
	rejected := func() (string, string) {
		if exit == interactorPE {
			return VerdictWrongAnswer, "the interactor rejected the program's answers (presentation error)"
		}
		return VerdictWrongAnswer, "the interactor rejected the program's answers"
	}
	switch {
	case in.InteractorFirst && exit != interactorOK:
		return rejected()
	case progVerdict != VerdictOK:
		return progVerdict, progMessage
	case exit != interactorOK:
		return rejected()
	}
	return VerdictOK, ""
}
