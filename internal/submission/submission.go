// Package submission is the API's one submission model: what every front
// door (Judge0, Piston, the playground) turns a request into, what the store
// keeps, and what each door renders its answers from. A record is the job
// that was published, the last status that came back, timestamps, the
// client that owns it and the door's own options; it knows no dialect.
//
// Its JSON is stored: every field has an explicit name, and Schema says
// which shape a stored record has (the store refuses a newer one).
package submission

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/codebench/codebench/internal/job"
)

// Schema is the version of Record's stored shape. Bump it, and teach the
// store to read the old one, when a field changes meaning or name.
const Schema = 1

// ErrNotFound is a token nobody has.
var ErrNotFound = errors.New("submission: no such submission")

// Record is one submission.
type Record struct {
	Schema int    `json:"schema"`
	Token  string `json:"token"`
	// Door names the front door that made it ("judge0", "piston",
	// "playground"); Options are that door's own settings, which the job
	// cannot say (Judge0's language id, its cpu_extra_time, the zip of its
	// additional_files), in the door's JSON.
	Door    string          `json:"door"`
	Options json.RawMessage `json:"options,omitempty"`
	// Job is what was published (its ID is the token).
	Job job.Job `json:"job"`
	// Owner is the client that made it (its auth token's name or its
	// address); Callback where its result is sent ("": nowhere).
	Owner     string    `json:"owner,omitempty"`
	Callback  string    `json:"callback,omitempty"`
	CreatedAt time.Time `json:"created_at"`

	// Status is the last status that came back (nil: none yet, in
	// queue); FinishedAt is set with the final one.
	Status     *job.Status `json:"status,omitempty"`
	FinishedAt *time.Time  `json:"finished_at,omitempty"`
}

// New is a record for j as published now: in queue, no status yet.
func New(token, door string, j job.Job, options any, now time.Time) (*Record, error) {
	j.ID = token
	r := &Record{Schema: Schema, Token: token, Door: door, Job: j, CreatedAt: now.UTC().Truncate(time.Millisecond)}
	if options != nil {
		b, err := json.Marshal(options)
		if err != nil {
			return nil, err
		}
		r.Options = b
	}
	return r, nil
}

// Finished says whether the final status has come.
func (r *Record) Finished() bool { return r.FinishedAt != nil }

// Take applies a status that came back at now: false when it changes
// nothing (the record is final already: a final result is never replaced;
// an output chunk, which the final status repeats).
func (r *Record) Take(st *job.Status, now time.Time) bool {
	if r.Finished() || st.Status == job.StatusOutput {
		return false
	}
	s := *st
	s.ReplySecret = "" // the job's, not the result's
	r.Status = &s
	if job.Final(st.Status) {
		t := now.UTC().Truncate(time.Millisecond)
		r.FinishedAt = &t
	}
	return true
}

// Outcome is what a record came to, as far as it went: its state
// ("queued", or the status: received, running, done, failed), and on a
// final one the verdict and the signal. The store counts records by it.
type Outcome struct {
	State, Verdict, Signal string
}

// Queued is the state of a record no status has reached.
const Queued = "queued"

// OutcomeOf is r's outcome.
func (r *Record) OutcomeOf() Outcome {
	if r.Status == nil {
		return Outcome{State: Queued}
	}
	o := Outcome{State: r.Status.Status}
	if job.Final(r.Status.Status) {
		o.Verdict, o.Signal = r.Status.Verdict, r.Status.Signal
	}
	return o
}

// Status is the outcome as a status (no output): what a door maps to its
// own status names.
func (o Outcome) Status() *job.Status {
	if o.State == Queued {
		return nil
	}
	return &job.Status{Status: o.State, Verdict: o.Verdict, Signal: o.Signal}
}

// Summary is a final result as every door reports it: the outputs (with
// the job's stderr sent to stdout, stdout holds both: a worker without
// that still sends stderr apart, and it is appended), the message (the
// status's, else its error), and the measurements: CPU time, wall time
// and memory, each the mean over the runs when there were several; the
// exit code (0 when none came) and the signal.
type Summary struct {
	Stdout, Stderr, CompileOutput, Message string
	CPU, Wall                              float64 // seconds, unrounded
	MemoryKB, ExitCode                     int64
	Signal                                 string
}

// SummaryOf is r's result; false while r is not finished.
func SummaryOf(r *Record) (Summary, bool) {
	st := r.Status
	if !r.Finished() || st == nil {
		return Summary{}, false
	}
	s := Summary{Stdout: st.Stdout, Stderr: st.Stderr, CompileOutput: st.CompileOutput, Message: st.Message, Signal: st.Signal}
	if r.Job.RedirectStderr && st.Stderr != "" {
		s.Stdout, s.Stderr = st.Stdout+st.Stderr, ""
	}
	if s.Message == "" {
		s.Message = st.Error
	}
	s.CPU = float64(st.CPUUserUS+st.CPUSysUS) / 1e6
	s.Wall = float64(st.ExecDuration) / 1e6
	s.MemoryKB = st.MemUsage
	if len(st.Runs) > 1 {
		var cpu, wall float64
		var mem int64
		for _, run := range st.Runs {
			cpu += float64(run.CPUUserUS+run.CPUSysUS) / 1e6
			wall += float64(run.WallUS) / 1e6
			mem += run.MaxRSSKB
		}
		n := float64(len(st.Runs))
		s.CPU, s.Wall, s.MemoryKB = cpu/n, wall/n, int64(float64(mem)/n)
	}
	if st.ExitCode != nil {
		s.ExitCode = int64(*st.ExitCode)
	}
	return s, true
}

// Usage is what one client (a record's Owner) has asked for: its
// submissions not finished, the sandbox time they may take at their
// limits, and the submissions it made lately.
type Usage struct {
	InFlight int
	Sandbox  time.Duration
	Recent   int
}
