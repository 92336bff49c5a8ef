package store

import (
	"database/sql"
	"encoding/json"
	"math"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/submission"
)

// The first release (schema 1-3) stored Judge0's submission as the JSON of
// a Go struct without json tags, and its result likewise, beside Judge0's
// status id. Migration 4 reads them with the frozen copies below (they
// must never change: they are what those rows hold) and writes records.

// legacySubmission is the first release's judge0.Submission.
type legacySubmission struct {
	SourceCode                                   string
	LanguageID                                   int
	CompilerOptions, CommandLineArguments        *string
	NumberOfRuns                                 int64
	Stdin, ExpectedOutput                        *string
	CPUTimeLimit, CPUExtraTime, WallTimeLimit    float64
	MemoryLimit, StackLimit, MaxProcesses        int64
	MaxFileSize                                  int64
	RedirectStderr                               bool
	CallbackURL                                  *string
	AdditionalFiles                              []byte
	EnableNetwork                                bool
	Files                                        map[string]string
	Args                                         []string
	CompileWallMS, CompileCPUMS, CompileMemoryKB int64
	Stream                                       bool
}

// legacyResult is the first release's stored result.
type legacyResult struct {
	Stdout, Stderr, CompileOutput, Message *string
	Time, WallTime                         *float64
	Memory, ExitCode, ExitSignal           *int64
}

// legacyOptions is what the Judge0 door keeps as a record's options
// (judge0.Options, whose JSON names these are).
type legacyOptions struct {
	LanguageID           int     `json:"language_id"`
	CPUExtraTime         float64 `json:"cpu_extra_time"`
	CompilerOptions      *string `json:"compiler_options,omitempty"`
	CommandLineArguments *string `json:"command_line_arguments,omitempty"`
	AdditionalFiles      []byte  `json:"additional_files,omitempty"`
}

// legacyLanguages are the first release's Judge0 ids and the languages
// they ran.
var legacyLanguages = map[int]string{50: "c", 54: "cpp", 71: "python", 60: "go", 73: "rust", 63: "javascript", 62: "java", 46: "bash"}

// legacySignals are the x86-64 signal names by number.
var legacySignals = map[int64]string{1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
	8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM",
	16: "SIGSTKFLT", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP", 20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG",
	24: "SIGXCPU", 25: "SIGXFSZ", 26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS"}

// legacyVerdicts are the verdicts behind Judge0's final status ids (the
// first release's judge0.StatusOf, read backwards; several verdicts made
// 12, Runtime Error (Other): memory_limit stands for them, with the
// signal kept).
var legacyVerdicts = map[int]string{3: job.VerdictOK, 4: job.VerdictWrongAnswer, 5: job.VerdictTimeLimit, 6: job.VerdictCompileError,
	7: job.VerdictRuntimeError, 8: job.VerdictOutputLimit, 9: job.VerdictRuntimeError, 10: job.VerdictRuntimeError,
	11: job.VerdictRuntimeError, 12: job.VerdictMemoryLimit, 13: job.VerdictInternalError, 14: job.VerdictInternalError}

// legacyStatusSignals are the signals Judge0's ids 7, 9 and 10 name.
var legacyStatusSignals = map[int]string{7: "SIGSEGV", 9: "SIGFPE", 10: "SIGABRT"}

type legacyRow struct {
	token    string
	created  int64
	statusID int
	finished sql.NullInt64
	sub      string
	result   sql.NullString
}

// record is the row as a record: the job the first release published for
// it (judge0.Submission.Job), Judge0's options, and the status its status
// id and result say.
func (l legacyRow) record() (*submission.Record, error) {
	var s legacySubmission
	if err := json.Unmarshal([]byte(l.sub), &s); err != nil {
		return nil, err
	}
	ms := func(seconds float64) int64 { return int64(math.Round(seconds * 1000)) }
	j := job.Job{ID: l.token, Type: "code", Language: legacyLanguages[s.LanguageID], Code: s.SourceCode,
		Limits: job.Limits{CPUMS: ms(s.CPUTimeLimit), WallMS: ms(s.WallTimeLimit), MemoryKB: s.MemoryLimit, StackKB: s.StackLimit,
			Processes: s.MaxProcesses, FileSizeKB: s.MaxFileSize,
			CompileWallMS: s.CompileWallMS, CompileCPUMS: s.CompileCPUMS, CompileMemoryKB: s.CompileMemoryKB},
		Network: s.EnableNetwork, RedirectStderr: s.RedirectStderr, Stream: s.Stream, Files: s.Files}
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
	if s.NumberOfRuns > 1 {
		j.Runs = int(s.NumberOfRuns)
	}
	if s.ExpectedOutput != nil {
		e := *s.ExpectedOutput
		j.ExpectedOutput, j.Compare = &e, job.CompareTrailingWhitespace
	}
	opts, err := json.Marshal(legacyOptions{LanguageID: s.LanguageID, CPUExtraTime: s.CPUExtraTime,
		CompilerOptions: s.CompilerOptions, CommandLineArguments: s.CommandLineArguments, AdditionalFiles: s.AdditionalFiles})
	if err != nil {
		return nil, err
	}
	r := &submission.Record{Schema: submission.Schema, Token: l.token, Door: "judge0", Options: opts, Job: j,
		CreatedAt: time.UnixMilli(l.created).UTC()}
	if s.CallbackURL != nil {
		r.Callback = *s.CallbackURL
	}
	switch {
	case l.statusID == 2:
		r.Status = &job.Status{ID: l.token, Status: job.StatusRunning}
	case l.statusID >= 3 && l.finished.Valid:
		st, err := l.status()
		if err != nil {
			return nil, err
		}
		t := time.UnixMilli(l.finished.Int64).UTC()
		r.Status, r.FinishedAt = st, &t
	}
	return r, nil
}

// status is a final row's status.
func (l legacyRow) status() (*job.Status, error) {
	var res legacyResult
	if l.result.Valid {
		if err := json.Unmarshal([]byte(l.result.String), &res); err != nil {
			return nil, err
		}
	}
	str := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	st := &job.Status{ID: l.token, Status: job.StatusFailed, Verdict: legacyVerdicts[l.statusID],
		Stdout: str(res.Stdout), Stderr: str(res.Stderr), CompileOutput: str(res.CompileOutput), Message: str(res.Message)}
	if st.Verdict == "" {
		st.Verdict = job.VerdictInternalError
	}
	if st.Verdict == job.VerdictOK {
		st.Status = job.StatusDone
	}
	if res.Time != nil {
		st.CPUUserUS = int64(math.Round(*res.Time * 1e6))
	}
	if res.WallTime != nil {
		st.ExecDuration = int64(math.Round(*res.WallTime * 1e6))
	}
	if res.Memory != nil {
		st.MemUsage = *res.Memory
	}
	if res.ExitCode != nil {
		c := int(*res.ExitCode)
		st.ExitCode = &c
	}
	if res.ExitSignal != nil {
		st.Signal = legacySignals[*res.ExitSignal]
	}
	if sig, ok := legacyStatusSignals[l.statusID]; ok {
		st.Signal = sig
	}
	return st, nil
}
