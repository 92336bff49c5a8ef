package judge0

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Record is a submission as stored: what was asked, and the result so far.
type Record struct {
	Token     string
	Sub       Submission
	StatusID  int
	CreatedAt time.Time
	// The result: nil until the job ends (the text fields may stay nil).
	FinishedAt                    *time.Time
	Stdout, Stderr, CompileOutput *string
	Message                       *string
	Time, WallTime                *float64 // s
	Memory, ExitCode, ExitSignal  *int64   // KB; code; signal number
}

// Columns are v1.13.1's submissions columns, as fields=* gives them (with
// status and language), in the schema's order.
var Columns = []string{
	"source_code", "language_id", "stdin", "expected_output", "stdout", "status_id", "created_at", "finished_at",
	"time", "memory", "stderr", "token", "number_of_runs", "cpu_time_limit", "cpu_extra_time", "wall_time_limit",
	"memory_limit", "stack_limit", "max_processes_and_or_threads", "enable_per_process_and_thread_time_limit",
	"enable_per_process_and_thread_memory_limit", "max_file_size", "compile_output", "exit_code", "exit_signal",
	"message", "wall_time", "compiler_options", "command_line_arguments", "redirect_stderr_to_stdout",
	"callback_url", "additional_files", "enable_network", "status", "language",
}

// DefaultFields are what a submission shows without fields.
var DefaultFields = []string{"token", "time", "memory", "stdout", "stderr", "compile_output", "message", "status"}

// ErrNotUTF8 is Judge0's answer to output that is not UTF-8 without base64.
var ErrNotUTF8 = errors.New("some attributes for this submission cannot be converted to UTF-8, use base64_encoded=true query parameter")

// ParseFields reads the fields query parameter: "" the default ones, "*"
// every column, else a comma-separated list of columns (an unknown one is
// Judge0's 400 "invalid fields: [x, y]").
func ParseFields(q string) ([]string, error) {
	switch strings.TrimSpace(q) {
	case "":
		return DefaultFields, nil
	case "*":
		return Columns, nil
	}
	var out, bad []string
	for _, f := range strings.Split(q, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !slices.Contains(Columns, f) {
			bad = append(bad, f)
			continue
		}
		out = append(out, f)
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("invalid fields: [%s]", strings.Join(bad, ", "))
	}
	return out, nil
}

// decimal prints a time as Rails prints a decimal column: "0.002", "5.0".
func decimal(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// Timestamp is how Judge0 prints times: UTC, milliseconds, Z.
func Timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// Render is the submission with fields, its text base64 (Ruby's encode64)
// when b64, as a JSON object; langName is its language's name. Text that is
// not UTF-8 without b64 is ErrNotUTF8.
func Render(r *Record, fields []string, b64 bool, langName string) (map[string]any, error) {
	text := func(s *string, always64 bool) (any, error) {
		if s == nil {
			return nil, nil
		}
		if b64 || always64 {
			return Encode64([]byte(*s)), nil
		}
		if !utf8.ValidString(*s) {
			return nil, ErrNotUTF8
		}
		return *s, nil
	}
	num := func(v *int64) any {
		if v == nil {
			return nil
		}
		return *v
	}
	sec := func(v *float64) any {
		if v == nil {
			return nil
		}
		return decimal(*v)
	}
	src := r.Sub.SourceCode
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		var v any
		var err error
		switch f {
		case "source_code":
			v, err = text(&src, false)
		case "language_id":
			v = r.Sub.LanguageID
		case "stdin":
			v, err = text(r.Sub.Stdin, false)
		case "expected_output":
			v, err = text(r.Sub.ExpectedOutput, false)
		case "stdout":
			v, err = text(r.Stdout, false)
		case "stderr":
			v, err = text(r.Stderr, false)
		case "compile_output":
			v, err = text(r.CompileOutput, false)
		case "message":
			v, err = text(r.Message, false)
		case "status_id":
			v = r.StatusID
		case "status":
			v = StatusByID(r.StatusID)
		case "language":
			v = map[string]any{"id": r.Sub.LanguageID, "name": langName}
		case "created_at":
			v = Timestamp(r.CreatedAt)
		case "finished_at":
			if r.FinishedAt != nil {
				v = Timestamp(*r.FinishedAt)
			}
		case "time":
			v = sec(r.Time)
		case "wall_time":
			v = sec(r.WallTime)
		case "memory":
			v = num(r.Memory)
		case "exit_code":
			v = num(r.ExitCode)
		case "exit_signal":
			v = num(r.ExitSignal)
		case "token":
			v = r.Token
		case "number_of_runs":
			v = r.Sub.NumberOfRuns
		case "cpu_time_limit":
			v = decimal(r.Sub.CPUTimeLimit)
		case "cpu_extra_time":
			v = decimal(r.Sub.CPUExtraTime)
		case "wall_time_limit":
			v = decimal(r.Sub.WallTimeLimit)
		case "memory_limit":
			v = r.Sub.MemoryLimit
		case "stack_limit":
			v = r.Sub.StackLimit
		case "max_processes_and_or_threads":
			v = r.Sub.MaxProcesses
		case "enable_per_process_and_thread_time_limit":
			v = r.Sub.PerProcessTime
		case "enable_per_process_and_thread_memory_limit":
			v = r.Sub.PerProcessMemory
		case "max_file_size":
			v = r.Sub.MaxFileSize
		case "compiler_options":
			v = strOrNil(r.Sub.CompilerOptions)
		case "command_line_arguments":
			v = strOrNil(r.Sub.CommandLineArguments)
		case "redirect_stderr_to_stdout":
			v = r.Sub.RedirectStderr
		case "callback_url":
			v = strOrNil(r.Sub.CallbackURL)
		case "additional_files":
			if r.Sub.AdditionalFiles != nil {
				v = Encode64(r.Sub.AdditionalFiles)
			}
		case "enable_network":
			v = r.Sub.EnableNetwork
		}
		if err != nil {
			return nil, err
		}
		out[f] = v
	}
	return out, nil
}

func strOrNil(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}
