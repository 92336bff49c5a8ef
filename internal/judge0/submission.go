package judge0

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/codebench/codebench/internal/job"
)

// Limits are Judge0's defaults and maxima (judge0.conf of v1.13.1), which
// GET /config_info reports and a submission is validated against.
type Limits struct {
	CPUTimeLimit, MaxCPUTimeLimit   float64 // s
	CPUExtraTime, MaxCPUExtraTime   float64 // s
	WallTimeLimit, MaxWallTimeLimit float64 // s
	MemoryLimit, MaxMemoryLimit     int64   // KB
	StackLimit, MaxStackLimit       int64   // KB
	MaxProcesses, MaxMaxProcesses   int64
	MaxFileSize, MaxMaxFileSize     int64 // KB
	NumberOfRuns, MaxNumberOfRuns   int64
	MaxExtractSize                  int64 // KB, additional_files unpacked
	// CompileWallMS is the workers' compile wall: Piston's compile_timeout
	// and compile_cpu_time may not exceed it (0: not checked here).
	CompileWallMS                       int64
	EnableCompilerOptions, EnableArgs   bool
	EnableCallbacks, EnableAddFiles     bool
	AllowEnableNetwork, RedirectDefault bool
}

// DefaultLimits are v1.13.1's.
var DefaultLimits = Limits{
	CPUTimeLimit: 5, MaxCPUTimeLimit: 15, CPUExtraTime: 1, MaxCPUExtraTime: 5,
	WallTimeLimit: 10, MaxWallTimeLimit: 20, MemoryLimit: 128000, MaxMemoryLimit: 512000,
	StackLimit: 64000, MaxStackLimit: 128000, MaxProcesses: 60, MaxMaxProcesses: 120,
	MaxFileSize: 1024, MaxMaxFileSize: 4096, NumberOfRuns: 1, MaxNumberOfRuns: 20, MaxExtractSize: 10240,
	EnableCompilerOptions: true, EnableArgs: true, EnableCallbacks: true, EnableAddFiles: true,
}

// MaxOptionLength is the longest compiler_options or command_line_arguments.
const MaxOptionLength = 512

// Request is a submission as a client sends it: the fields Judge0 permits
// (others are dropped). A number may come as a JSON number or a string, as
// Rails accepts both; absent or null is nil.
type Request struct {
	SourceCode           *string  `json:"source_code"`
	LanguageID           *Number  `json:"language_id"`
	CompilerOptions      *string  `json:"compiler_options"`
	CommandLineArguments *string  `json:"command_line_arguments"`
	NumberOfRuns         *Number  `json:"number_of_runs"`
	Stdin                *string  `json:"stdin"`
	ExpectedOutput       *string  `json:"expected_output"`
	CPUTimeLimit         *Number  `json:"cpu_time_limit"`
	CPUExtraTime         *Number  `json:"cpu_extra_time"`
	WallTimeLimit        *Number  `json:"wall_time_limit"`
	MemoryLimit          *Number  `json:"memory_limit"`
	StackLimit           *Number  `json:"stack_limit"`
	MaxProcesses         *Number  `json:"max_processes_and_or_threads"`
	PerProcessTime       *Boolean `json:"enable_per_process_and_thread_time_limit"`
	PerProcessMemory     *Boolean `json:"enable_per_process_and_thread_memory_limit"`
	MaxFileSize          *Number  `json:"max_file_size"`
	RedirectStderr       *Boolean `json:"redirect_stderr_to_stdout"`
	CallbackURL          *string  `json:"callback_url"`
	AdditionalFiles      *string  `json:"additional_files"`
	EnableNetwork        *Boolean `json:"enable_network"`
}

// Number is a JSON number or a string holding one ("" is absent).
type Number struct {
	V     float64
	Valid bool   // false: not a number (Text is what came)
	Text  string // as sent
}

// UnmarshalJSON implements json.Unmarshaler.
func (n *Number) UnmarshalJSON(b []byte) error {
	s := string(bytes.TrimSpace(b))
	if unq, err := strconv.Unquote(s); err == nil {
		s = strings.TrimSpace(unq)
	}
	n.Text = s
	v, err := strconv.ParseFloat(s, 64)
	n.V, n.Valid = v, err == nil
	return nil
}

// Boolean is a JSON boolean, or what Rails casts to one ("true", "1", 1...).
type Boolean struct{ V bool }

// UnmarshalJSON implements json.Unmarshaler.
func (v *Boolean) UnmarshalJSON(b []byte) error {
	s := strings.ToLower(strings.Trim(string(bytes.TrimSpace(b)), `"`))
	switch s {
	case "true", "1", "t", "on", "yes", "y":
		v.V = true
	case "false", "0", "f", "off", "no", "n", "", "null":
		v.V = false
	default:
		return fmt.Errorf("not a boolean: %q", s)
	}
	return nil
}

// Errors are validation errors by field, as Judge0 answers them (422).
type Errors map[string][]string

func (e Errors) add(field, msg string) { e[field] = append(e[field], msg) }

// Options are what a Judge0 submission says that its job cannot: kept with
// the record (submission.Record.Options) so that it renders as it came.
type Options struct {
	LanguageID           int     `json:"language_id"`
	CPUExtraTime         float64 `json:"cpu_extra_time"`
	CompilerOptions      *string `json:"compiler_options,omitempty"`
	CommandLineArguments *string `json:"command_line_arguments,omitempty"`
	AdditionalFiles      []byte  `json:"additional_files,omitempty"` // the zip, decoded
}

// Valid is a validated submission: the job that runs it (Judge0's
// defaults filled in, limits in the job's units), its options, and where
// its result is sent ("": nowhere).
type Valid struct {
	Job      job.Job
	Options  Options
	Callback string
}

// decode64 decodes Ruby's Base64.decode64 input: standard alphabet, line
// breaks and missing padding tolerated.
func decode64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, s)
	return base64.StdEncoding.WithPadding(base64.NoPadding).DecodeString(strings.TrimRight(s, "="))
}

// Encode64 is Ruby's Base64.encode64: a newline after every 60 characters
// and one at the end; "" stays "".
func Encode64(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	enc := base64.StdEncoding.EncodeToString(b)
	var sb strings.Builder
	for len(enc) > 60 {
		sb.WriteString(enc[:60])
		sb.WriteByte('\n')
		enc = enc[60:]
	}
	sb.WriteString(enc)
	sb.WriteByte('\n')
	return sb.String()
}

// Validate checks r as Judge0's model does and fills in the defaults; b64
// says the text fields are base64. The job it makes carries no id yet.
func (c *Codec) Validate(r *Request, b64 bool) (*Valid, Errors) {
	langs, lim := c.byID, c.limits
	errs := Errors{}
	s := &fields{}
	text := func(field string, v *string) *string {
		if v == nil {
			return nil
		}
		if !b64 {
			return v
		}
		d, err := decode64(*v)
		if err != nil {
			errs.add(field, "is not valid base64")
			return nil
		}
		str := string(d)
		return &str
	}
	var lang *Language
	switch {
	case r.LanguageID == nil || r.LanguageID.Text == "":
		errs.add("language_id", "can't be blank")
	default:
		id := int(r.LanguageID.V)
		l, ok := langs[id]
		if !r.LanguageID.Valid || !ok || float64(id) != r.LanguageID.V {
			errs.add("language_id", fmt.Sprintf("language with id %s doesn't exist", r.LanguageID.Text))
		} else {
			s.LanguageID, lang = id, &l
		}
	}
	// A multi-file program's files are the program (Judge0's is_project).
	if src := text("source_code", r.SourceCode); src == nil || *src == "" {
		if _, bad := errs["source_code"]; !bad && (lang == nil || !lang.CodeOptional) {
			errs.add("source_code", "can't be blank")
		}
	} else {
		s.SourceCode = *src
	}
	s.Stdin, s.ExpectedOutput = text("stdin", r.Stdin), text("expected_output", r.ExpectedOutput)

	// Rails prints the bounds as the model has them: the lower ones are
	// integer literals, the time maxima floats (20.0), the others integers.
	num := func(field string, n *Number, def, lo, hi float64, loInclusive bool) float64 {
		return numeric(errs, field, n, def, lo, hi, loInclusive, true)
	}
	integer := func(field string, n *Number, def, lo, hi int64, loInclusive bool) int64 {
		return int64(numeric(errs, field, n, float64(def), float64(lo), float64(hi), loInclusive, false))
	}
	s.NumberOfRuns = integer("number_of_runs", r.NumberOfRuns, lim.NumberOfRuns, 0, lim.MaxNumberOfRuns, false)
	cpuDefault := lim.CPUTimeLimit
	if lang != nil && float64(lang.CPUMS)/1000 > cpuDefault {
		cpuDefault = min(float64(lang.CPUMS)/1000, lim.MaxCPUTimeLimit)
	}
	s.CPUTimeLimit = num("cpu_time_limit", r.CPUTimeLimit, cpuDefault, 0, lim.MaxCPUTimeLimit, true)
	s.CPUExtraTime = num("cpu_extra_time", r.CPUExtraTime, lim.CPUExtraTime, 0, lim.MaxCPUExtraTime, true)
	s.WallTimeLimit = num("wall_time_limit", r.WallTimeLimit, lim.WallTimeLimit, 1, lim.MaxWallTimeLimit, true)
	memDefault := lim.MemoryLimit
	if lang != nil && lang.MemoryKB > memDefault {
		memDefault = min(lang.MemoryKB, lim.MaxMemoryLimit)
	}
	s.MemoryLimit = integer("memory_limit", r.MemoryLimit, memDefault, 2048, lim.MaxMemoryLimit, true)
	s.StackLimit = integer("stack_limit", r.StackLimit, lim.StackLimit, 0, lim.MaxStackLimit, true)
	s.MaxProcesses = integer("max_processes_and_or_threads", r.MaxProcesses, lim.MaxProcesses, 0, lim.MaxMaxProcesses, false)
	// A runtime that needs a larger file (the BEAM's JIT) gets it by
	// default, past Judge0's own maximum for what a client may ask: the
	// workers' maximum still bounds it.
	fileDefault := lim.MaxFileSize
	if lang != nil && lang.FileSizeKB > fileDefault {
		fileDefault = lang.FileSizeKB
	}
	s.MaxFileSize = integer("max_file_size", r.MaxFileSize, fileDefault, 0, lim.MaxMaxFileSize, true)
	if r.PerProcessTime != nil && r.PerProcessTime.V {
		errs.add("enable_per_process_and_thread_time_limit", "this option cannot be enabled")
	}
	if r.PerProcessMemory != nil && r.PerProcessMemory.V {
		errs.add("enable_per_process_and_thread_memory_limit", "this option cannot be enabled")
	}
	s.RedirectStderr = lim.RedirectDefault
	if r.RedirectStderr != nil {
		s.RedirectStderr = r.RedirectStderr.V
	}
	// option is compiler_options or command_line_arguments: at most
	// MaxOptionLength, and only where allowed (notAllowed: why not).
	option := func(field string, v *string, notAllowed string) *string {
		if v == nil || strings.TrimSpace(*v) == "" {
			return nil
		}
		switch {
		case len(*v) > MaxOptionLength:
			errs.add(field, fmt.Sprintf("is too long (maximum is %d characters)", MaxOptionLength))
		case notAllowed != "":
			errs.add(field, notAllowed)
		default:
			o := *v
			return &o
		}
		return nil
	}
	compileWhyNot := ""
	switch {
	case !lim.EnableCompilerOptions:
		compileWhyNot = "setting compiler options is not allowed"
	case lang != nil && lang.CompileCmd == nil:
		compileWhyNot = "setting compiler options is only allowed for compiled languages"
	}
	s.CompilerOptions = option("compiler_options", r.CompilerOptions, compileWhyNot)
	argsWhyNot := ""
	if !lim.EnableArgs {
		argsWhyNot = "setting command line arguments is not allowed"
	}
	s.CommandLineArguments = option("command_line_arguments", r.CommandLineArguments, argsWhyNot)
	if r.CallbackURL != nil && strings.TrimSpace(*r.CallbackURL) != "" {
		if !lim.EnableCallbacks {
			errs.add("callback_url", "setting callback is not allowed")
		} else {
			u := *r.CallbackURL
			s.CallbackURL = &u
		}
	}
	if r.AdditionalFiles != nil && strings.TrimSpace(*r.AdditionalFiles) != "" {
		if !lim.EnableAddFiles {
			errs.add("additional_files", "setting additional files is not allowed")
		} else if z, err := decode64(*r.AdditionalFiles); err != nil {
			errs.add("additional_files", "is not valid base64")
		} else {
			source := ""
			if lang != nil {
				source = lang.SourceFile
			}
			files, err := Unzip(z, lim.MaxExtractSize*1024, source)
			if err != nil {
				errs.add("additional_files", strings.TrimPrefix(err.Error(), errExtract.Error()+": "))
			} else {
				s.AdditionalFiles, s.Files = z, files
			}
		}
	}
	if r.EnableNetwork != nil && r.EnableNetwork.V {
		if !lim.AllowEnableNetwork {
			errs.add("enable_network", "enabling network is not allowed")
		} else {
			s.EnableNetwork = true
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	if s.CompilerOptions != nil && lang.CheckFlags != nil {
		if err := lang.CheckFlags(strings.Fields(*s.CompilerOptions)); err != nil {
			return nil, Errors{"compiler_options": {err.Error()}}
		}
	}
	if lang.CodeBase64 {
		s.SourceCode = base64.StdEncoding.EncodeToString([]byte(s.SourceCode))
	}
	a := &Valid{Job: s.job(lang.Ours), Options: Options{LanguageID: s.LanguageID, CPUExtraTime: s.CPUExtraTime,
		CompilerOptions: s.CompilerOptions, CommandLineArguments: s.CommandLineArguments, AdditionalFiles: s.AdditionalFiles}}
	if s.CallbackURL != nil {
		a.Callback = *s.CallbackURL
	}
	return a, nil
}

// numeric reads an optional number field: def when absent, and its bound
// errors.
func numeric(errs Errors, field string, n *Number, def, lo, hi float64, loInclusive, floatMax bool) float64 {
	if n == nil || n.Text == "" || n.Text == "null" {
		return def
	}
	if !n.Valid || math.IsNaN(n.V) || math.IsInf(n.V, 0) {
		errs.add(field, "is not a number")
		return def
	}
	if loInclusive && n.V < lo {
		errs.add(field, "must be greater than or equal to "+strconv.FormatFloat(lo, 'f', -1, 64))
	} else if !loInclusive && n.V <= lo {
		errs.add(field, "must be greater than "+strconv.FormatFloat(lo, 'f', -1, 64))
	}
	if n.V > hi {
		h := strconv.FormatFloat(hi, 'f', -1, 64)
		if floatMax && !strings.Contains(h, ".") {
			h += ".0"
		}
		errs.add(field, "must be less than or equal to "+h)
	}
	return n.V
}

// Decode reads a request body into a Request: malformed JSON is an error
// (400); unknown keys are dropped.
func Decode(body []byte) (*Request, error) {
	var r Request
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
