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
// status and language), in the schema's order: the names of columns.
var Columns = columnNames()

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
// not UTF-8 without b64 is ErrNotUTF8; a field that is no column is an
// error (ParseFields refuses it first).
func Render(r *Record, fields []string, b64 bool, langName string) (map[string]any, error) {
	o := renderOpts{b64: b64, langName: langName}
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		c, ok := columnByName[f]
		if !ok {
			return nil, fmt.Errorf("invalid fields: [%s]", f)
		}
		v, err := c.get(r, o)
		if err != nil {
			return nil, err
		}
		out[f] = v
	}
	return out, nil
}

// column is one of v1.13.1's columns and how a record renders it.
type column struct {
	name string
	get  func(*Record, renderOpts) (any, error)
}

type renderOpts struct {
	b64      bool
	langName string
}

// columns are v1.13.1's, in the schema's order; they make Columns and
// drive Render, so the two cannot differ.
var columns = []column{
	{"source_code", text(func(r *Record) *string { return &r.Sub.SourceCode })},
	{"language_id", value(func(r *Record) any { return r.Sub.LanguageID })},
	{"stdin", text(func(r *Record) *string { return r.Sub.Stdin })},
	{"expected_output", text(func(r *Record) *string { return r.Sub.ExpectedOutput })},
	{"stdout", text(func(r *Record) *string { return r.Stdout })},
	{"status_id", value(func(r *Record) any { return r.StatusID })},
	{"created_at", value(func(r *Record) any { return Timestamp(r.CreatedAt) })},
	{"finished_at", value(func(r *Record) any { return timeOrNil(r.FinishedAt) })},
	{"time", value(func(r *Record) any { return secondsOrNil(r.Time) })},
	{"memory", value(func(r *Record) any { return orNil(r.Memory) })},
	{"stderr", text(func(r *Record) *string { return r.Stderr })},
	{"token", value(func(r *Record) any { return r.Token })},
	{"number_of_runs", value(func(r *Record) any { return r.Sub.NumberOfRuns })},
	{"cpu_time_limit", value(func(r *Record) any { return decimal(r.Sub.CPUTimeLimit) })},
	{"cpu_extra_time", value(func(r *Record) any { return decimal(r.Sub.CPUExtraTime) })},
	{"wall_time_limit", value(func(r *Record) any { return decimal(r.Sub.WallTimeLimit) })},
	{"memory_limit", value(func(r *Record) any { return r.Sub.MemoryLimit })},
	{"stack_limit", value(func(r *Record) any { return r.Sub.StackLimit })},
	{"max_processes_and_or_threads", value(func(r *Record) any { return r.Sub.MaxProcesses })},
	{"enable_per_process_and_thread_time_limit", value(func(r *Record) any { return r.Sub.PerProcessTime })},
	{"enable_per_process_and_thread_memory_limit", value(func(r *Record) any { return r.Sub.PerProcessMemory })},
	{"max_file_size", value(func(r *Record) any { return r.Sub.MaxFileSize })},
	{"compile_output", text(func(r *Record) *string { return r.CompileOutput })},
	{"exit_code", value(func(r *Record) any { return orNil(r.ExitCode) })},
	{"exit_signal", value(func(r *Record) any { return orNil(r.ExitSignal) })},
	{"message", text(func(r *Record) *string { return r.Message })},
	{"wall_time", value(func(r *Record) any { return secondsOrNil(r.WallTime) })},
	{"compiler_options", value(func(r *Record) any { return orNil(r.Sub.CompilerOptions) })},
	{"command_line_arguments", value(func(r *Record) any { return orNil(r.Sub.CommandLineArguments) })},
	{"redirect_stderr_to_stdout", value(func(r *Record) any { return r.Sub.RedirectStderr })},
	{"callback_url", value(func(r *Record) any { return orNil(r.Sub.CallbackURL) })},
	{"additional_files", value(func(r *Record) any {
		if r.Sub.AdditionalFiles == nil {
			return nil
		}
		return Encode64(r.Sub.AdditionalFiles)
	})},
	{"enable_network", value(func(r *Record) any { return r.Sub.EnableNetwork })},
	{"status", value(func(r *Record) any { return StatusByID(r.StatusID) })},
	{"language", func(r *Record, o renderOpts) (any, error) {
		return map[string]any{"id": r.Sub.LanguageID, "name": o.langName}, nil
	}},
}

var columnByName = func() map[string]column {
	m := make(map[string]column, len(columns))
	for _, c := range columns {
		m[c.name] = c
	}
	return m
}()

func columnNames() []string {
	names := make([]string, len(columns))
	for i, c := range columns {
		names[i] = c.name
	}
	return names
}

// value is a column rendered the same whatever base64 says.
func value(get func(*Record) any) func(*Record, renderOpts) (any, error) {
	return func(r *Record, _ renderOpts) (any, error) { return get(r), nil }
}

// text is a text column: base64 when asked, else UTF-8 or ErrNotUTF8.
func text(get func(*Record) *string) func(*Record, renderOpts) (any, error) {
	return func(r *Record, o renderOpts) (any, error) {
		s := get(r)
		if s == nil {
			return nil, nil
		}
		if o.b64 {
			return Encode64([]byte(*s)), nil
		}
		if !utf8.ValidString(*s) {
			return nil, ErrNotUTF8
		}
		return *s, nil
	}
}

// orNil is *v, or nil (JSON null) when v is nil.
func orNil[T any](v *T) any {
	if v == nil {
		return nil
	}
	return *v
}

func secondsOrNil(v *float64) any {
	if v == nil {
		return nil
	}
	return decimal(*v)
}

func timeOrNil(t *time.Time) any {
	if t == nil {
		return nil
	}
	return Timestamp(*t)
}
