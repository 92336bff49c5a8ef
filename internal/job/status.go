package job

import (
	"encoding/json"
	"fmt"

	"github.com/codebench/codebench/internal/agentproto"
)

// Status values, as the seed defined them.
const (
	StatusReceived = "received"
	StatusRunning  = "running"
	StatusDone     = "done"
	StatusFailed   = "failed"
)

// Verdicts.
const (
	VerdictOK            = "ok"
	VerdictCompileError  = "compile_error"
	VerdictRuntimeError  = "runtime_error"
	VerdictTimeLimit     = "time_limit"
	VerdictMemoryLimit   = "memory_limit"
	VerdictOutputLimit   = "output_limit"
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
	GuestUS       int64    `json:"-"` // copied into Timings by the worker
	Timings       *Timings `json:"timings,omitempty"`
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

// Marshal encodes s without HTML escaping (output is program text).
func (s *Status) Marshal() []byte {
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("job: marshal status: %v", err)) // only strings and ints
	}
	return b
}

// Progress is a received or running status.
func Progress(id, status string) *Status { return &Status{ID: id, Status: status} }

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
func FromResult(id string, lim agentproto.Limits, r *agentproto.RunResult) *Status {
	s := &Status{ID: id, Status: StatusFailed, CompileOutput: r.CompileOutput, Stdout: r.Stdout, Stderr: r.Stderr, GuestUS: r.AgentUS}
	if r.Compile != nil {
		s.CompileUS = r.Compile.WallUS
	}
	if !r.Compiled {
		s.Verdict = VerdictCompileError
		if r.Compile != nil && r.Compile.TimedOut {
			s.Message = fmt.Sprintf("compilation exceeded %d ms", lim.CompileWallMS)
		} else {
			s.Message = "compilation failed"
		}
		return s
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
	cpuMS := (run.CPUUserUS + run.CPUSysUS) / 1000
	switch {
	case run.OutputLimited:
		s.Verdict = VerdictOutputLimit
		s.Message = fmt.Sprintf("output exceeded %d bytes; the first %d are kept", lim.OutputBytes, lim.OutputBytes)
	case run.Signal == "SIGXCPU" || (run.Signal == "SIGKILL" && lim.CPUMS > 0 && cpuMS >= lim.CPUMS):
		s.Verdict = VerdictTimeLimit
		s.Message = fmt.Sprintf("CPU time limit of %d ms exceeded", lim.CPUMS)
	case run.TimedOut:
		s.Verdict = VerdictTimeLimit
		s.Message = fmt.Sprintf("wall time limit of %d ms exceeded", lim.WallMS)
	case run.Signal != "":
		s.Verdict = VerdictRuntimeError
		s.Message = "killed by " + run.Signal
	case run.ExitCode != 0:
		s.Verdict = VerdictRuntimeError
		s.Message = fmt.Sprintf("exited with status %d", run.ExitCode)
	default:
		s.Verdict = VerdictOK
		s.Status = StatusDone
	}
	return s
}

// Final reports whether status ends a job.
func Final(status string) bool { return status == StatusDone || status == StatusFailed }
