// Package job is the job and status wire format (see docs/JOBS.md): decoding
// and validating jobs, clamping their limits, and turning an agent's raw
// result into a verdict and a status document. It is pure logic.
package job

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/untrusted"
)

// Job is one request, as published on the jobs queue.
type Job struct {
	ID       string            `json:"id"`
	Type     string            `json:"type,omitempty"`
	Language string            `json:"language,omitempty"`
	Code     string            `json:"code"`
	Stdin    string            `json:"stdin,omitempty"`
	Args     []string          `json:"args,omitempty"`
	Files    map[string]string `json:"files,omitempty"`
	Limits   Limits            `json:"limits,omitempty"`
	// Runs: compile once, run this many times (measurements per run).
	Runs         int      `json:"runs,omitempty"`
	CompileFlags []string `json:"compile_flags,omitempty"`
	// ExpectedOutput, when set, is compared with stdout: a mismatch is
	// wrong_answer. Compare is "exact" or "trailing_whitespace" (default:
	// trailing spaces on each line and trailing newlines are ignored).
	ExpectedOutput *string `json:"expected_output,omitempty"`
	Compare        string  `json:"compare,omitempty"`
	// Tests: compile once, run once per test, in order, each with its own
	// input and measurements; exclusive with runs and a job-level
	// expected_output.
	Tests []Test `json:"tests,omitempty"`
	// StopOnFailure (default true) stops at the first test that fails.
	StopOnFailure *bool `json:"stop_on_failure,omitempty"`
	// Checker judges each test's output instead of the comparison.
	Checker *Checker `json:"checker,omitempty"`
	// Interactor, with tests and instead of a checker, talks to the
	// program during each test (docs/JOBS.md, "Interactive problems").
	Interactor *Checker `json:"interactor,omitempty"`
	// Stream publishes the output while the program runs: statuses
	// "output" with a seq, at most one per 100 ms, before the final one.
	Stream bool `json:"stream,omitempty"`
	// Network asks for a sandbox with a network interface (fenced: only
	// the worker's allow-list is reachable); refused unless the worker
	// has networking enabled.
	Network bool `json:"network,omitempty"`
	// RedirectStderr sends the program's stderr to its stdout, interleaved
	// as it writes them (one pipe for both; the compiler's output stays
	// apart).
	RedirectStderr bool `json:"redirect_stderr,omitempty"`
	// ReplySecret, when set, is copied onto every status of the job: its
	// producer (the HTTP API) takes a status only with its own secret, so
	// a status for the same id from a job somebody else published is not
	// taken for this one's.
	ReplySecret string `json:"reply_secret,omitempty"`
}

// MaxReplySecret bounds a job's reply secret.
const MaxReplySecret = 128

// Test is one test case of a job.
type Test struct {
	Stdin          string   `json:"stdin,omitempty"`
	ExpectedOutput *string  `json:"expected_output,omitempty"`
	Args           []string `json:"args,omitempty"`
}

// Checker is a program that judges each test: exit 0 accepts, 1 is a wrong
// answer, anything else an internal error; its stdout is its message.
type Checker struct {
	Language string `json:"language"`
	Code     string `json:"code"`
}

// Comparison modes.
const (
	CompareExact              = agentproto.CompareExact
	CompareTrailingWhitespace = agentproto.CompareTrailingWhitespace
)

// Limits requested by a job; zero means the worker's default.
type Limits struct {
	WallMS      int64 `json:"wall_ms,omitempty"`
	CPUMS       int64 `json:"cpu_ms,omitempty"`
	MemoryKB    int64 `json:"memory_kb,omitempty"`
	StackKB     int64 `json:"stack_kb,omitempty"`
	Processes   int64 `json:"processes,omitempty"`
	OutputBytes int64 `json:"output_bytes,omitempty"`
	FileSizeKB  int64 `json:"file_size_kb,omitempty"`
	// The compile's own wall time, CPU time and memory (Piston's
	// compile_*), within the worker's compile wall; zero: the worker's.
	CompileWallMS   int64 `json:"compile_wall_ms,omitempty"`
	CompileCPUMS    int64 `json:"compile_cpu_ms,omitempty"`
	CompileMemoryKB int64 `json:"compile_memory_kb,omitempty"`
}

// Policy is what the worker accepts and how it fills in limits.
type Policy struct {
	// MaxJobBytes bounds a job message before it is decoded at all.
	MaxJobBytes  int
	MaxCodeBytes int
	MaxRuns      int
	MaxTests     int        // test cases a job may have
	Languages    []string   // what the guest image has
	Table        lang.Table // compile-flag allow-lists; nil skips the check (the guest checks too)
	Defaults     Limits
	Max          Limits
	CompileWall  int64
	// MaxJobWall caps a job's wall budget (agentproto.WallBudgetMS) in
	// milliseconds; 0: no cap.
	MaxJobWall int64
	// Network: jobs may ask for a network (the worker has it enabled).
	Network bool
}

// InvalidError explains why a job was refused. ID is set when the job's id was
// usable, so a failed status can be published to its queue.
type InvalidError struct {
	ID     string
	Reason string
	// Malformed: the body could not be decoded at all. Such a message also
	// goes to the dead-letter queue, for someone to look at.
	Malformed bool
}

func (e *InvalidError) Error() string { return "invalid job: " + e.Reason }

// ErrInvalid matches every *InvalidError.
var ErrInvalid = errors.New("invalid job")

func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

var idRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// ValidID reports whether id can name a status queue.
func ValidID(id string) bool { return idRE.MatchString(id) && id != "." && id != ".." }

// maxReason bounds the reason of an invalid job: it is published in a
// status and logged, and parts of it come from the job.
const maxReason = 1024

// Decode parses and validates a job body. The body's size is checked before
// anything is decoded.
func Decode(body []byte, p Policy) (*Job, error) {
	if p.MaxJobBytes > 0 && len(body) > p.MaxJobBytes {
		return nil, &InvalidError{ID: salvageID(body), Reason: fmt.Sprintf("job is %d bytes, over the limit of %d", len(body), p.MaxJobBytes)}
	}
	// Counted before decoded: a body of many small values ("tests":[{},
	// {},...]) would allocate far more than its size.
	if n, limit := untrusted.JSONValues(body), p.maxValues(); n > limit {
		return nil, &InvalidError{ID: salvageID(body), Reason: untrusted.TooManyJSONValues("job", n, limit).Error()}
	}
	var j Job
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&j); err != nil {
		// A decoding error can quote the input (a number literal).
		return nil, &InvalidError{ID: salvageID(body), Reason: untrusted.Clip("malformed JSON: "+err.Error(), maxReason), Malformed: true}
	}
	if f := UnknownField(body); f != "" {
		id := j.ID
		if !ValidID(id) {
			id = ""
		}
		return nil, &InvalidError{ID: id, Reason: untrusted.Clip("unknown field "+f+": this worker does not know it, and would run the job without it", maxReason)}
	}
	if err := j.Validate(p); err != nil {
		return nil, err
	}
	return &j, nil
}

// SalvageReplySecret finds a job's reply secret in a body that may not be
// a valid job, so that its producer takes the status that says so. It
// decodes nothing else.
func SalvageReplySecret(body []byte) string {
	s, _ := untrusted.TopLevelString(body, "reply_secret", MaxReplySecret)
	return s
}

// salvageID finds a usable id in a body that is not a valid job, so the
// producer hears back. It reads the id as a short string and decodes
// nothing else (a body of {"id":[[],[],...]} allocates nothing).
func salvageID(body []byte) string {
	if id, ok := untrusted.TopLevelString(body, "id", 128); ok && ValidID(id) {
		return id
	}
	return ""
}

// maxValues bounds the JSON values of a job body: every test with all its
// arguments, every file, the program's arguments, and room for the rest.
func (p Policy) maxValues() int {
	tests := agentproto.MaxTests
	if p.MaxTests > 0 {
		tests = min(tests, p.MaxTests)
	}
	return tests*(agentproto.MaxArgs+16) + 4*agentproto.MaxFiles + agentproto.MaxArgs + 1024
}

// codeProblem says what is wrong with a program's source (what names it:
// "code", "checker code"), or "".
func codeProblem(what, code string, maxBytes int) string {
	switch {
	case strings.TrimSpace(code) == "":
		return "empty " + what
	case maxBytes > 0 && len(code) > maxBytes:
		return fmt.Sprintf("%s is %d bytes, over the limit of %d", what, len(code), maxBytes)
	case !utf8.ValidString(code):
		return what + " is not valid UTF-8"
	}
	return ""
}

// Validate checks a decoded job and fills in the language.
func (j *Job) Validate(p Policy) error {
	bad := func(format string, args ...any) error {
		id := j.ID
		if !ValidID(id) {
			id = ""
		}
		return &InvalidError{ID: id, Reason: untrusted.Clip(fmt.Sprintf(format, args...), maxReason)}
	}
	switch {
	case j.ID == "":
		return bad("missing id")
	case !ValidID(j.ID):
		return bad("id must be 1-128 characters of [A-Za-z0-9._-], not . or ..")
	case len(j.ReplySecret) > MaxReplySecret:
		return bad("reply_secret is over %d bytes", MaxReplySecret)
	case j.Type != "" && j.Type != "code":
		return bad("unknown type %s (only \"code\")", untrusted.Quote(j.Type))
	}
	if j.Language == "" {
		j.Language = "c" // the seed's jobs carry no language: they are C
	}
	// A language whose program is its files (Judge0's multi-file
	// program) may have no code.
	if why := codeProblem("code", j.Code, p.MaxCodeBytes); why != "" && (j.Code != "" || !p.Table[j.Language].CodeOptional) {
		return bad("%s", why)
	}
	if j.Network && !p.Network {
		return bad("network access is not enabled on this worker (network = true in its configuration)")
	}
	if len(p.Languages) > 0 && !slices.Contains(p.Languages, j.Language) {
		return bad("unknown language %s (available: %s)", untrusted.Quote(j.Language), strings.Join(p.Languages, ", "))
	}
	switch {
	case j.Runs < 0:
		return bad("runs must be positive")
	case p.MaxRuns > 0 && j.Runs > p.MaxRuns:
		return bad("runs is %d, at most %d", j.Runs, p.MaxRuns)
	case j.Compare != "" && j.Compare != CompareExact && j.Compare != CompareTrailingWhitespace:
		return bad("compare must be %q or %q", CompareExact, CompareTrailingWhitespace)
	case j.ExpectedOutput != nil && p.Max.OutputBytes > 0 && int64(len(*j.ExpectedOutput)) > p.Max.OutputBytes:
		return bad("expected_output is %d bytes, over the output limit of %d", len(*j.ExpectedOutput), p.Max.OutputBytes)
	case len(j.Tests) > 0 && (j.Runs > 1 || j.ExpectedOutput != nil):
		return bad("tests cannot be combined with runs or a job-level expected_output")
	case p.MaxTests > 0 && len(j.Tests) > p.MaxTests:
		return bad("%d tests, at most %d", len(j.Tests), p.MaxTests)
	case len(j.Tests) > agentproto.MaxTests:
		return bad("%d tests, at most %d", len(j.Tests), agentproto.MaxTests)
	case j.Checker != nil && len(j.Tests) == 0:
		return bad("a checker needs tests")
	case j.Interactor != nil && len(j.Tests) == 0:
		return bad("an interactor needs tests")
	case j.Interactor != nil && j.Checker != nil:
		return bad("a checker and an interactor: at most one judges the tests")
	}
	for i, t := range j.Tests {
		if err := agentproto.CheckArgs(t.Args); err != nil {
			return bad("test %d: %v", i+1, err)
		}
		if t.ExpectedOutput != nil && p.Max.OutputBytes > 0 && int64(len(*t.ExpectedOutput)) > p.Max.OutputBytes {
			return bad("test %d: expected_output is %d bytes, over the output limit of %d", i+1, len(*t.ExpectedOutput), p.Max.OutputBytes)
		}
	}
	for what, c := range map[string]*Checker{"checker": j.Checker, "interactor": j.Interactor} {
		if c == nil {
			continue
		}
		if len(p.Languages) > 0 && !slices.Contains(p.Languages, c.Language) {
			return bad("unknown %s language %s", what, untrusted.Quote(c.Language))
		}
		if why := codeProblem(what+" code", c.Code, p.MaxCodeBytes); why != "" {
			return bad("%s", why)
		}
	}
	if err := agentproto.CheckArgs(j.Args); err != nil {
		return bad("%v", err)
	}
	source := ""
	if l, ok := p.Table[j.Language]; ok {
		l = l.For(j.Code)
		if err := l.CheckCompileFlags(j.CompileFlags); err != nil {
			return bad("%v", err)
		}
		source = l.Source
	} else if len(j.CompileFlags) > lang.MaxCompileFlags {
		return bad("at most %d compile_flags", lang.MaxCompileFlags)
	}
	if err := agentproto.CheckFiles(j.Files, source); err != nil {
		return bad("%v", err)
	}
	total := len(j.Code) + len(j.Stdin)
	for _, body := range j.Files {
		total += len(body)
	}
	for _, t := range j.Tests {
		total += len(t.Stdin)
		if t.ExpectedOutput != nil {
			total += len(*t.ExpectedOutput)
		}
	}
	if j.Checker != nil {
		total += len(j.Checker.Code)
	}
	if j.Interactor != nil {
		total += len(j.Interactor.Code)
	}
	if p.MaxCodeBytes > 0 && total > 4*p.MaxCodeBytes {
		return bad("code, stdin and files total %d bytes, over the limit of %d", total, 4*p.MaxCodeBytes)
	}
	if budget := agentproto.WallBudgetMS(p.Request(j)); p.MaxJobWall > 0 && budget > p.MaxJobWall {
		return bad("the job's limits add up to %s of wall time (every compile, run and test at its limit), over the limit of %s",
			time.Duration(budget)*time.Millisecond, time.Duration(p.MaxJobWall)*time.Millisecond)
	}
	// What the agent will be sent must fit its frame, or it could only
	// refuse it.
	if n := p.requestSize(j); n > agentproto.MaxRequestFrame {
		return bad("the request for this job is %d bytes, over the agent's limit of %d", n, agentproto.MaxRequestFrame)
	}
	return nil
}

// requestSize is the size of the frame the agent would receive for j.
func (p Policy) requestSize(j *Job) int {
	b, err := agentproto.Marshal(&agentproto.Request{ID: 1<<63 - 1, Op: agentproto.OpRun, Run: p.Request(j)})
	if err != nil {
		return agentproto.MaxRequestFrame + 1
	}
	return len(b)
}

// AgentLimits clamps the requested limits by the policy's maxima and fills
// defaults: the worker's, raised to what language needs (lang.Needs) where
// the job left a limit unset.
func (p Policy) AgentLimits(language string, req Limits) agentproto.Limits {
	pick := func(want, def, max int64) int64 {
		if want <= 0 {
			want = def
		}
		if max > 0 && want > max {
			want = max
		}
		return want
	}
	needs := p.needs(language)
	stackMax := p.Max.StackKB
	if needs.MaxStackKB > 0 && (stackMax <= 0 || needs.MaxStackKB < stackMax) {
		stackMax = needs.MaxStackKB
	}
	return agentproto.Limits{
		WallMS:          pick(req.WallMS, p.Defaults.WallMS, p.Max.WallMS),
		CPUMS:           pick(req.CPUMS, max(p.Defaults.CPUMS, needs.CPUMS), p.Max.CPUMS),
		MemoryKB:        pick(req.MemoryKB, max(p.Defaults.MemoryKB, needs.MemoryKB), p.Max.MemoryKB),
		StackKB:         pick(req.StackKB, p.Defaults.StackKB, stackMax),
		Processes:       pick(req.Processes, p.Defaults.Processes, p.Max.Processes),
		OutputBytes:     pick(req.OutputBytes, p.Defaults.OutputBytes, p.Max.OutputBytes),
		FileSizeKB:      pick(req.FileSizeKB, max(p.Defaults.FileSizeKB, needs.FileSizeKB), p.Max.FileSizeKB),
		CompileWallMS:   pick(req.CompileWallMS, p.CompileWall, p.CompileWall),
		CompileCPUMS:    pick(req.CompileCPUMS, 0, p.CompileWall),
		CompileMemoryKB: pick(req.CompileMemoryKB, needs.CompileMemoryKB, p.MaxCompileMemoryKB(language)),
	}
}

// needs are language's needs in the policy's table (none when unknown).
func (p Policy) needs(language string) lang.Needs {
	if l, ok := p.Table[language]; ok && l.Limits != nil {
		return *l.Limits
	}
	return lang.Needs{}
}

// Request builds the agent request for j.
func (p Policy) Request(j *Job) *agentproto.RunRequest {
	req := &agentproto.RunRequest{
		Language: j.Language, Code: j.Code, Stdin: j.Stdin, Args: j.Args, Files: j.Files,
		Limits: p.AgentLimits(j.Language, j.Limits), Runs: max(j.Runs, 1), CompileFlags: j.CompileFlags,
		Compare: j.Compare, Stream: j.Stream, RedirectStderr: j.RedirectStderr,
		StopOnFailure: j.StopOnFailure == nil || *j.StopOnFailure,
	}
	for _, t := range j.Tests {
		req.Tests = append(req.Tests, agentproto.TestCase{Stdin: t.Stdin, Args: t.Args, ExpectedOutput: t.ExpectedOutput})
	}
	if j.Checker != nil {
		req.Checker = &agentproto.Checker{Language: j.Checker.Language, Code: j.Checker.Code}
	}
	if j.Interactor != nil {
		req.Interactor = &agentproto.Checker{Language: j.Interactor.Language, Code: j.Interactor.Code}
	}
	req.Limits.JobWallMS = agentproto.WallBudgetMS(req)
	return req
}

// Clamp is l with the policy's defaults where l has none and each limit
// within the policy's maxima, in the job's units: what the worker would
// run (AgentLimits, for the agent). A front door clamps once, here, and
// stores the job as it will run.
func (p Policy) Clamp(language string, l Limits) Limits {
	a := p.AgentLimits(language, l)
	out := Limits{WallMS: a.WallMS, CPUMS: a.CPUMS, MemoryKB: a.MemoryKB, StackKB: a.StackKB, Processes: a.Processes,
		OutputBytes: a.OutputBytes, FileSizeKB: a.FileSizeKB}
	// The compile's limits stay zero (the worker's own) unless asked.
	if l.CompileWallMS > 0 {
		out.CompileWallMS = a.CompileWallMS
	}
	if l.CompileCPUMS > 0 {
		out.CompileCPUMS = a.CompileCPUMS
	}
	if l.CompileMemoryKB > 0 {
		out.CompileMemoryKB = a.CompileMemoryKB
	}
	return out
}

// MaxCompileMemoryKB is the most memory a job in language may ask for its
// compile: the largest of the policy's maximum, what every compile gets
// and what the language's compiler needs.
func (p Policy) MaxCompileMemoryKB(language string) int64 {
	return max(p.Max.MemoryKB, agentproto.CompileMemoryKB, p.needs(language).CompileMemoryKB)
}

// MaxFiles is the most files a job may carry beside its program (the
// agent's bound): a front door counts against it before it decodes them.
const MaxFiles = agentproto.MaxFiles

// ValidFileName says whether name can name one of a job's files.
func ValidFileName(name string) bool { return agentproto.ValidFileName(name) }

// WallBudget is the most wall time j can take as the worker runs it: every
// compile and every run or test at its limit.
func (p Policy) WallBudget(j *Job) time.Duration {
	return time.Duration(agentproto.WallBudgetMS(p.Request(j))) * time.Millisecond
}

// MaxArgs is the most arguments a job's program may have (the agent's
// bound).
const MaxArgs = agentproto.MaxArgs
