package judge0

import (
	"strings"
	"time"

	"github.com/codebench/codebench/internal/job"
)

// Job is the codebench job that runs s: its language, code, input,
// options split on white space (Judge0 passes them through a shell; quotes
// are not interpreted here), runs, the expected output compared as Judge0
// compares it (each line's trailing white space and the trailing newlines
// ignored: job.CompareTrailingWhitespace), and the limits: CPU and wall
// time, memory, stack, processes and file size.
func (s *Submission) Job(id string, l Language) *job.Job {
	j := &job.Job{ID: id, Type: "code", Language: l.Ours, Code: s.SourceCode,
		Limits: job.Limits{
			CPUMS:      int64(s.CPUTimeLimit * 1000),
			WallMS:     int64(s.WallTimeLimit * 1000),
			MemoryKB:   s.MemoryLimit,
			StackKB:    s.StackLimit,
			Processes:  s.MaxProcesses,
			FileSizeKB: s.MaxFileSize,

			CompileWallMS:   s.CompileWallMS,
			CompileCPUMS:    s.CompileCPUMS,
			CompileMemoryKB: s.CompileMemoryKB,
		},
		Network:        s.EnableNetwork,
		RedirectStderr: s.RedirectStderr,
		Stream:         s.Stream,
	}
	if s.Stdin != nil {
		j.Stdin = *s.Stdin
	}
	if s.CompilerOptions != nil {
		j.CompileFlags = strings.Fields(*s.CompilerOptions)
	}
	if s.CommandLineArguments != nil {
		j.Args = strings.Fields(*s.CommandLineArguments)
	}
	if len(s.Args) > 0 {
		j.Args = s.Args
	}
	if len(s.Files) > 0 {
		j.Files = s.Files
	}
	if s.NumberOfRuns > 1 {
		j.Runs = int(s.NumberOfRuns)
	}
	if s.ExpectedOutput != nil {
		e := *s.ExpectedOutput
		j.ExpectedOutput, j.Compare = &e, job.CompareTrailingWhitespace
	}
	return j
}

// Apply writes a codebench status into r: the status id, and on a final
// one the result as Judge0 gives it: time (CPU, s) and memory (KB) the
// mean over the runs, wall time, exit code (0 when absent) and signal, the
// outputs, the message. With redirect_stderr_to_stdout the worker ran the
// program with one pipe for both (job.RedirectStderr), so stdout has
// stderr interleaved; any stderr still apart (a worker without that) is
// appended.
func (r *Record) Apply(st *job.Status, now time.Time) {
	r.StatusID = StatusOf(st)
	if !job.Final(st.Status) {
		return
	}
	t := now
	r.FinishedAt = &t
	str := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	r.Stdout, r.Stderr, r.CompileOutput = str(st.Stdout), str(st.Stderr), str(st.CompileOutput)
	if r.Sub.RedirectStderr && st.Stderr != "" {
		out := st.Stdout + st.Stderr
		r.Stdout, r.Stderr = &out, nil
	}
	msg := st.Message
	if msg == "" && st.Error != "" {
		msg = st.Error
	}
	r.Message = str(msg)
	if r.StatusID == CompileError || r.StatusID == InternalError {
		return
	}
	cpu := float64(st.CPUUserUS+st.CPUSysUS) / 1e6
	wall := float64(st.ExecDuration) / 1e6
	mem := st.MemUsage
	if len(st.Runs) > 1 {
		cpu, wall, mem = 0, 0, 0
		for _, run := range st.Runs {
			cpu += float64(run.CPUUserUS+run.CPUSysUS) / 1e6
			wall += float64(run.WallUS) / 1e6
			mem += run.MaxRSSKB
		}
		n := float64(len(st.Runs))
		cpu, wall, mem = cpu/n, wall/n, int64(float64(mem)/n)
	}
	cpu, wall = round3(cpu), round3(wall)
	r.Time, r.WallTime, r.Memory = &cpu, &wall, &mem
	code := int64(0)
	if st.ExitCode != nil {
		code = int64(*st.ExitCode)
	}
	r.ExitCode = &code
	if n := SignalNumber(st.Signal); n > 0 {
		sig := int64(n)
		r.ExitSignal = &sig
	}
}

// round3 rounds seconds to milliseconds, as isolate reports them.
func round3(s float64) float64 { return float64(int64(s*1000+0.5)) / 1000 }
