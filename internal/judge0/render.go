package judge0

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/codebench/codebench/internal/submission"
)

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
// when b64, as a JSON object. Text that is not UTF-8 without b64 is
// ErrNotUTF8; a field that is no column is an error (ParseFields refuses
// it first).
func (c *Codec) Render(rec *submission.Record, fields []string, b64 bool) (map[string]any, error) {
	v := c.view(rec)
	v.b64 = b64
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		col, ok := columnByName[f]
		if !ok {
			return nil, fmt.Errorf("invalid fields: [%s]", f)
		}
		x, err := col.get(v)
		if err != nil {
			return nil, err
		}
		out[f] = x
	}
	return out, nil
}

// view is a record as Judge0 shows it: its options, its status id, and
// on a final status the result (nil fields where Judge0 has null).
type view struct {
	rec      *submission.Record
	opts     Options
	langName string
	source   string // the source as the client sent it
	statusID int
	b64      bool

	stdout, stderr, compileOutput, message *string
	time, wallTime                         *float64 // s
	memory, exitCode, exitSignal           *int64   // KB; code; signal number
}

// StatusID is rec's Judge0 status.
func StatusID(rec *submission.Record) int { return StatusOf(rec.Status) }

func (c *Codec) view(rec *submission.Record) *view {
	v := &view{rec: rec, opts: c.OptionsOf(rec), statusID: StatusID(rec)}
	l := c.byID[v.opts.LanguageID]
	v.langName, v.source = l.Name, rec.Job.Code
	if l.CodeBase64 {
		// The job carries an executable's bytes in base64.
		if b, err := base64.StdEncoding.DecodeString(rec.Job.Code); err == nil {
			v.source = string(b)
		}
	}
	sum, ok := submission.SummaryOf(rec)
	if !ok {
		return v
	}
	str := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	v.stdout, v.stderr, v.compileOutput, v.message = str(sum.Stdout), str(sum.Stderr), str(sum.CompileOutput), str(sum.Message)
	if v.statusID == CompileError || v.statusID == InternalError {
		return v
	}
	cpu, wall, mem, code := round3(sum.CPU), round3(sum.Wall), sum.MemoryKB, sum.ExitCode
	v.time, v.wallTime, v.memory, v.exitCode = &cpu, &wall, &mem, &code
	if n := SignalNumber(sum.Signal); n > 0 {
		sig := int64(n)
		v.exitSignal = &sig
	}
	return v
}

// column is one of v1.13.1's columns and how a record renders it.
type column struct {
	name string
	get  func(*view) (any, error)
}

// seconds is a limit in milliseconds as Judge0's decimal seconds.
func seconds(ms int64) string { return decimal(float64(ms) / 1000) }

// orEmpty is s, nil when empty.
func orEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// columns are v1.13.1's, in the schema's order; they make Columns and
// drive Render, so the two cannot differ.
var columns = []column{
	{"source_code", text(func(v *view) *string { return &v.source })},
	{"language_id", value(func(v *view) any { return v.opts.LanguageID })},
	{"stdin", text(func(v *view) *string { return orEmpty(v.rec.Job.Stdin) })},
	{"expected_output", text(func(v *view) *string { return v.rec.Job.ExpectedOutput })},
	{"stdout", text(func(v *view) *string { return v.stdout })},
	{"status_id", value(func(v *view) any { return v.statusID })},
	{"created_at", value(func(v *view) any { return Timestamp(v.rec.CreatedAt) })},
	{"finished_at", value(func(v *view) any { return timeOrNil(v.rec.FinishedAt) })},
	{"time", value(func(v *view) any { return secondsOrNil(v.time) })},
	{"memory", value(func(v *view) any { return orNil(v.memory) })},
	{"stderr", text(func(v *view) *string { return v.stderr })},
	{"token", value(func(v *view) any { return v.rec.Token })},
	{"number_of_runs", value(func(v *view) any { return int64(max(v.rec.Job.Runs, 1)) })},
	{"cpu_time_limit", value(func(v *view) any { return seconds(v.rec.Job.Limits.CPUMS) })},
	{"cpu_extra_time", value(func(v *view) any { return decimal(v.opts.CPUExtraTime) })},
	{"wall_time_limit", value(func(v *view) any { return seconds(v.rec.Job.Limits.WallMS) })},
	{"memory_limit", value(func(v *view) any { return v.rec.Job.Limits.MemoryKB })},
	{"stack_limit", value(func(v *view) any { return v.rec.Job.Limits.StackKB })},
	{"max_processes_and_or_threads", value(func(v *view) any { return v.rec.Job.Limits.Processes })},
	{"enable_per_process_and_thread_time_limit", value(func(*view) any { return false })},
	{"enable_per_process_and_thread_memory_limit", value(func(*view) any { return false })},
	{"max_file_size", value(func(v *view) any { return v.rec.Job.Limits.FileSizeKB })},
	{"compile_output", text(func(v *view) *string { return v.compileOutput })},
	{"exit_code", value(func(v *view) any { return orNil(v.exitCode) })},
	{"exit_signal", value(func(v *view) any { return orNil(v.exitSignal) })},
	{"message", text(func(v *view) *string { return v.message })},
	{"wall_time", value(func(v *view) any { return secondsOrNil(v.wallTime) })},
	{"compiler_options", value(func(v *view) any { return orNil(v.opts.CompilerOptions) })},
	{"command_line_arguments", value(func(v *view) any { return orNil(v.opts.CommandLineArguments) })},
	{"redirect_stderr_to_stdout", value(func(v *view) any { return v.rec.Job.RedirectStderr })},
	{"callback_url", value(func(v *view) any { return orNil(orEmpty(v.rec.Callback)) })},
	{"additional_files", value(func(v *view) any {
		if v.opts.AdditionalFiles == nil {
			return nil
		}
		return Encode64(v.opts.AdditionalFiles)
	})},
	{"enable_network", value(func(v *view) any { return v.rec.Job.Network })},
	{"status", value(func(v *view) any { return StatusByID(v.statusID) })},
	{"language", value(func(v *view) any { return map[string]any{"id": v.opts.LanguageID, "name": v.langName} })},
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
func value(get func(*view) any) func(*view) (any, error) {
	return func(v *view) (any, error) { return get(v), nil }
}

// text is a text column: base64 when asked, else UTF-8 or ErrNotUTF8.
func text(get func(*view) *string) func(*view) (any, error) {
	return func(v *view) (any, error) {
		s := get(v)
		if s == nil {
			return nil, nil
		}
		if v.b64 {
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
