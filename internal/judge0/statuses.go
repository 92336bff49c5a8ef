// Package judge0 is Judge0 CE 1.13.1's front door as a codec, as its
// clients see it: its language ids for what the image has, its 14 statuses
// and how a result maps to them, a request's fields with their defaults,
// maxima and validation errors, validated into a codebench job and the
// options the job cannot say (Codec.Validate), and a submission record
// rendered as Judge0 renders a submission (fields, base64, times:
// Codec.Render). It knows neither Piston nor the guest protocol; the HTTP
// routes that serve it are internal/api's.
package judge0

import (
	"strings"

	"github.com/codebench/codebench/internal/job"
)

// Status is one of Judge0's 14 statuses.
type Status struct {
	ID          int    `json:"id"`
	Description string `json:"description"`
}

// The statuses, by id, with Judge0's descriptions.
var Statuses = []Status{
	{1, "In Queue"}, {2, "Processing"}, {3, "Accepted"}, {4, "Wrong Answer"},
	{5, "Time Limit Exceeded"}, {6, "Compilation Error"},
	{7, "Runtime Error (SIGSEGV)"}, {8, "Runtime Error (SIGXFSZ)"}, {9, "Runtime Error (SIGFPE)"},
	{10, "Runtime Error (SIGABRT)"}, {11, "Runtime Error (NZEC)"}, {12, "Runtime Error (Other)"},
	{13, "Internal Error"}, {14, "Exec Format Error"},
}

// Status ids by name.
const (
	InQueue       = 1
	Processing    = 2
	Accepted      = 3
	WrongAnswer   = 4
	TimeLimit     = 5
	CompileError  = 6
	SIGSEGV       = 7
	SIGXFSZ       = 8
	SIGFPE        = 9
	SIGABRT       = 10
	NZEC          = 11
	RuntimeOther  = 12
	InternalError = 13
)

// StatusByID returns status id (Internal Error for an id out of range).
func StatusByID(id int) Status {
	if id < 1 || id > len(Statuses) {
		return Statuses[InternalError-1]
	}
	return Statuses[id-1]
}

// signalStatus is how Judge0 names a run killed by a signal
// (app/jobs/isolate_job.rb): 11 SIGSEGV, 25 SIGXFSZ, 8 SIGFPE, 6 SIGABRT,
// any other Runtime Error (Other).
var signalStatus = map[string]int{"SIGSEGV": SIGSEGV, "SIGXFSZ": SIGXFSZ, "SIGFPE": SIGFPE, "SIGABRT": SIGABRT}

// signalNumbers are the x86-64 numbers of the signals a status names.
var signalNumbers = map[string]int{
	"SIGHUP": 1, "SIGINT": 2, "SIGQUIT": 3, "SIGILL": 4, "SIGTRAP": 5, "SIGABRT": 6, "SIGBUS": 7, "SIGFPE": 8,
	"SIGKILL": 9, "SIGUSR1": 10, "SIGSEGV": 11, "SIGUSR2": 12, "SIGPIPE": 13, "SIGALRM": 14, "SIGTERM": 15,
	"SIGSTKFLT": 16, "SIGCHLD": 17, "SIGCONT": 18, "SIGSTOP": 19, "SIGTSTP": 20, "SIGTTIN": 21, "SIGTTOU": 22,
	"SIGURG": 23, "SIGXCPU": 24, "SIGXFSZ": 25, "SIGVTALRM": 26, "SIGPROF": 27, "SIGWINCH": 28, "SIGIO": 29,
	"SIGPWR": 30, "SIGSYS": 31,
}

// SignalNumber is the number of a signal named like "SIGSEGV" (0: none or
// unknown).
func SignalNumber(name string) int { return signalNumbers[strings.ToUpper(name)] }

// StatusOf maps a final codebench status to Judge0's, as Judge0 decides
// from isolate's result: a time limit is 5 (whether CPU or wall), a kill by
// a signal by the signal, a non-zero exit 11, the sandbox's failure 13,
// a compile error 6, a wrong answer 4, else 3. A job still in flight is 1
// (received) or 2 (running).
func StatusOf(st *job.Status) int {
	if st == nil {
		return InQueue
	}
	switch st.Status {
	case job.StatusReceived, "":
		return InQueue
	case job.StatusRunning, job.StatusOutput:
		return Processing
	}
	switch st.Verdict {
	case job.VerdictOK:
		return Accepted
	case job.VerdictWrongAnswer:
		return WrongAnswer
	case job.VerdictTimeLimit:
		return TimeLimit
	case job.VerdictCompileError:
		return CompileError
	case job.VerdictMemoryLimit:
		// isolate reports a memory kill as a signal (SIGKILL): Judge0
		// says Runtime Error (Other).
		return RuntimeOther
	case job.VerdictOutputLimit:
		// Judge0 caps output by file size: SIGXFSZ.
		return SIGXFSZ
	case job.VerdictRuntimeError:
		if st.Signal != "" {
			if id, ok := signalStatus[strings.ToUpper(st.Signal)]; ok {
				return id
			}
			return RuntimeOther
		}
		return NZEC
	}
	return InternalError
}
