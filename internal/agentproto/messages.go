package agentproto

import (
	"fmt"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/codebench/codebench/internal/untrusted"
)

// Bounds of a run request. The host checks them before it sends a request
// (a job over them is invalid_job) and the agent checks them again.
const (
	MaxFiles     = 64       // extra files
	MaxArgs      = 256      // program arguments
	MaxArgsBytes = 64 << 10 // all arguments together
	// MaxCompileOutput bounds the compiler's diagnostics the agent keeps.
	MaxCompileOutput = 64 << 10
	// MaxTests bounds a request's test cases (the worker's max_tests is
	// at most this; the whole-job wall bounds them too).
	MaxTests = 1024
	// MaxTotalOutput bounds the output the agent keeps for all the tests of
	// a request together (each test keeps at most its output limit, and
	// none once this is used up); it keeps the answer under the frame.
	MaxTotalOutput = 4 << 20
	// MaxCheckerMessage bounds what a checker says about one test.
	MaxCheckerMessage = 4 << 10
	// StreamEvery is the least time between two output frames of a run.
	StreamEvery = 100 * time.Millisecond
)

// ValidFileName accepts plain names inside the job directory: no path
// separators, no "." or "..", no leading dash, at most 255 bytes.
func ValidFileName(name string) bool {
	return name != "" && len(name) <= 255 && name != "." && name != ".." &&
		!strings.ContainsAny(name, "/\\\x00") && !strings.HasPrefix(name, "-")
}

// CheckFiles is the one rule for extra files, on both sides: at most
// MaxFiles, each a ValidFileName, and none named like the program's own
// source file (source), which the agent writes itself.
func CheckFiles(files map[string]string, source string) error {
	if len(files) > MaxFiles {
		return fmt.Errorf("%d files, at most %d", len(files), MaxFiles)
	}
	for name := range files {
		if !ValidFileName(name) {
			return fmt.Errorf("invalid file name %s", untrusted.Quote(name))
		}
		if name == source {
			return fmt.Errorf("file name %s is the program's own source file", untrusted.Quote(name))
		}
	}
	return nil
}

// CheckArgs bounds the program's arguments.
func CheckArgs(args []string) error {
	if len(args) > MaxArgs {
		return fmt.Errorf("%d args, at most %d", len(args), MaxArgs)
	}
	n := 0
	for _, a := range args {
		n += len(a)
	}
	if n > MaxArgsBytes {
		return fmt.Errorf("args total %d bytes, at most %d", n, MaxArgsBytes)
	}
	return nil
}

// jsonExpansion is the most one captured byte grows to in the JSON of an
// answer: a control byte is written \u00XX; an invalid byte becomes the four
// characters \xNN (textExpansion), five in JSON.
const jsonExpansion = 6

// textExpansion is the most the agent's text grows over the raw bytes it
// captured (an invalid byte is written as the four characters \xNN).
const textExpansion = 4

// ResponseBound is the largest frame a well-behaved agent sends in answer to
// req: the envelope and measurements, plus the kept output and compiler
// diagnostics at their worst JSON expansion. The host reads no more.
func ResponseBound(req *Request) uint32 {
	const envelope = 64 << 10
	if req.Op != OpRun || req.Run == nil {
		return envelope
	}
	out := req.Run.Limits.OutputBytes
	if out <= 0 {
		out = DefaultOutputBytes
	}
	runs := int64(max(req.Run.Runs, 1))
	kept := out
	if t := int64(len(req.Run.Tests)); t > 0 {
		kept = min(out*t, MaxTotalOutput)
		runs = t
	}
	n := envelope + jsonExpansion*(kept+2*MaxCompileOutput+runs*MaxCheckerMessage) + runs*1024
	return uint32(min(n, MaxResponseFrame))
}

// WallBudgetMS is the longest req may take: every compile (the program's
// and the checker's) and every run, test and checker run at its wall limit.
// The host waits this long (and a margin) for the answer; the agent stops
// the request when it is spent (Limits.JobWallMS).
func WallBudgetMS(req *RunRequest) int64 {
	wall, compile := req.Limits.WallMS, req.Limits.CompileWallMS
	if wall <= 0 {
		wall = DefaultWallMS
	}
	phases := int64(max(req.Runs, len(req.Tests), 1))
	compiles := int64(1)
	switch {
	case req.Checker != nil:
		phases, compiles = 2*phases, 2
	case req.Interactor != nil:
		// The program and the interactor run together: a test takes
		// the interactor's wall at most.
		return 2*compile + phases*(wall+InteractorMarginMS)
	}
	return compiles*compile + phases*wall
}

// InteractorMarginMS is how much more wall and CPU time an interactor gets
// than the program it talks to: it must outlast the program to judge it.
const InteractorMarginMS = 2_000

// CompileMemoryKB is the memory a compile gets at least, unless the
// request says otherwise (compilers need headroom).
const CompileMemoryKB = 512 << 10

// DefaultWallMS is the agent's wall limit when a request leaves it at zero.
const DefaultWallMS = 10_000

// ResponseValues bounds the JSON values (untrusted.JSONValues) of a frame
// answering req, so that the host counts a frame before it decodes it: an
// answer of many small values ("tests":[{},{},...]) would otherwise
// allocate far more than its size.
func ResponseValues(req *Request) int {
	const envelope = 256
	if req.Op != OpRun || req.Run == nil {
		return envelope
	}
	return envelope + 32*max(req.Run.Runs, 1) + 64*len(req.Run.Tests)
}

// StreamFrames is the most output frames a run may send: one per
// StreamEvery of each run's or test's wall limit (and a second of slack),
// plus its last.
func StreamFrames(req *RunRequest) int {
	wall := req.Limits.WallMS
	if wall <= 0 {
		wall = DefaultWallMS
	}
	n := max(req.Runs, len(req.Tests), 1)
	return n*int((wall+1000)/StreamEvery.Milliseconds()+2) + 16
}

// StreamBound is the most output a run may stream: its output limit for each
// run or test (at their textual expansion).
func StreamBound(req *RunRequest) int64 {
	out := req.Limits.OutputBytes
	if out <= 0 {
		out = DefaultOutputBytes
	}
	n := int64(max(req.Runs, len(req.Tests), 1))
	return textExpansion*out*n + 64<<10
}

// CheckResult checks an agent's answer against the request it answers: no
// more runs than asked, no more output than the limit allows. A guest whose
// answer fails it is hostile or broken.
func CheckResult(req *RunRequest, r *RunResult) error {
	out := req.Limits.OutputBytes
	if out <= 0 {
		out = DefaultOutputBytes
	}
	runs := max(req.Runs, 1)
	switch {
	case len(r.Runs) > runs:
		return fmt.Errorf("%d runs answered, %d asked", len(r.Runs), runs)
	case int64(len(r.Stdout)+len(r.Stderr)) > textExpansion*out:
		return fmt.Errorf("%d bytes of output answered, the limit is %d", len(r.Stdout)+len(r.Stderr), out)
	case len(r.CompileOutput) > textExpansion*MaxCompileOutput || len(r.CheckerCompileOutput) > textExpansion*MaxCompileOutput:
		return fmt.Errorf("%d bytes of compiler output answered, at most %d are kept", len(r.CompileOutput), MaxCompileOutput)
	case len(r.Tests) > len(req.Tests):
		return fmt.Errorf("%d tests answered, %d asked", len(r.Tests), len(req.Tests))
	}
	var total int64
	for i, t := range r.Tests {
		n := int64(len(t.Stdout) + len(t.Stderr))
		total += n
		if n > textExpansion*out || len(t.CheckerMessage) > textExpansion*MaxCheckerMessage {
			return fmt.Errorf("test %d: %d bytes of output answered, the limit is %d", i+1, n, out)
		}
		if t.Interaction != nil && req.Interactor == nil {
			return fmt.Errorf("test %d: an interaction answered, no interactor asked", i+1)
		}
	}
	if total > textExpansion*MaxTotalOutput {
		return fmt.Errorf("%d bytes of output answered for all tests, at most %d are kept", total, MaxTotalOutput)
	}
	phases := []*Phase{r.Compile, r.Run}
	for i := range r.Runs {
		phases = append(phases, &r.Runs[i])
	}
	for i := range r.Tests {
		phases = append(phases, &r.Tests[i].Phase, r.Tests[i].Checker)
	}
	for _, ph := range phases {
		if ph != nil && ph.Signal != "" && unix.SignalNum(ph.Signal) == 0 {
			return fmt.Errorf("signal %s is no signal's name", untrusted.Quote(ph.Signal))
		}
	}
	return nil
}

// TestCase is one run of the compiled program with its own input.
type TestCase struct {
	Stdin string   `json:"stdin,omitempty"`
	Args  []string `json:"args,omitempty"`
	// ExpectedOutput, when set, is compared with the program's stdout
	// (see RunRequest.Compare) unless a checker decides.
	ExpectedOutput *string `json:"expected_output,omitempty"`
}

// Checker is a program that judges each test's output: it is compiled once
// next to the program and run after each test with three file arguments
// (the test's input, the expected output, the program's output); exit 0
// accepts, 1 rejects, anything else is the checker's own failure. What it
// prints on stdout is its message about the test.
type Checker struct {
	Language string `json:"language"`
	Code     string `json:"code"`
}

// TestResult is one test's outcome.
type TestResult struct {
	Phase
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	// OutputKept is false when the request's total output was used up
	// before this test: its output was not kept (the limit still applies).
	OutputKept bool `json:"output_kept"`
	// Matched reports the comparison with the expected output, when there
	// was one and no checker.
	Matched *bool `json:"matched,omitempty"`
	// Checker is the checker's run, when there is a checker and the
	// program ran cleanly.
	Checker        *Phase `json:"checker,omitempty"`
	CheckerMessage string `json:"checker_message,omitempty"`
	// Interaction is how the program and the interactor talked, when the
	// request has an interactor (Checker is then the interactor's run).
	Interaction *Interaction `json:"interaction,omitempty"`
}

// Interaction is how a program and its interactor ended: which of the two
// ended first decides whose verdict stands (the host's job.Status).
type Interaction struct {
	// InteractorFirst: the interactor ended while the program still ran.
	InteractorFirst bool `json:"interactor_first,omitempty"`
}

// Output is a chunk of a running program's output (an OpOutput frame).
type Output struct {
	// Test is the test (from 0) or run whose output this is.
	Test   int    `json:"test"`
	Seq    int    `json:"seq"`
	Stdout string `json:"stdout,omitempty"`
	Stderr string `json:"stderr,omitempty"`
}

// Request is what the host sends. ID correlates the response; the host uses
// fresh IDs so that a stale answer (to a retried hello) is recognised and dropped.
type Request struct {
	ID       uint64      `json:"id"`
	Op       string      `json:"op"`
	Version  int         `json:"version,omitempty"`
	Run      *RunRequest `json:"run,omitempty"`
	Identity *Identity   `json:"identity,omitempty"`
	Envd     *Envd       `json:"envd,omitempty"`
}

// Bounds on a long-lived sandbox's environment variables, checked by the
// host before it asks and by the agent again.
const (
	MaxEnvdVars  = 256
	MaxEnvdBytes = 64 << 10
)

// Envd turns a sandbox into a long-lived one (OpEnvd): the agent mounts the
// user's home (HomeMB of tmpfs) and hands its channel to envd, which serves
// the data plane as the sandbox user over internal/sandboxlink. The agent
// answers no request after that; the sandbox lives until it is stopped.
type Envd struct {
	Envs   map[string]string `json:"envs,omitempty"`
	HomeMB int               `json:"home_mb"`
}

// CheckEnvs bounds a sandbox's environment: count, size, and names a shell
// can hold.
func CheckEnvs(envs map[string]string) error {
	if len(envs) > MaxEnvdVars {
		return fmt.Errorf("%d environment variables: at most %d", len(envs), MaxEnvdVars)
	}
	total := 0
	for k, v := range envs {
		total += len(k) + len(v) + 2
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00") {
			return fmt.Errorf("environment variable %q: a name without = or NUL, a value without NUL", k)
		}
	}
	if total > MaxEnvdBytes {
		return fmt.Errorf("environment variables of %d bytes: at most %d", total, MaxEnvdBytes)
	}
	return nil
}

// Identity makes a clone unique.
type Identity struct {
	Seed     []byte `json:"seed"`      // at least 32 random bytes
	UnixNano int64  `json:"unix_nano"` // the host's wall clock
	// Net configures the guest's network interface (a networked sandbox);
	// nil leaves it as it is (none, or down).
	Net *Net `json:"net,omitempty"`
}

// Net is a guest interface's configuration: its MAC, its address (CIDR
// notation; the guest uses it as a /32 and routes everything through the
// gateway) and the gateway.
type Net struct {
	MAC     string `json:"mac"`
	Addr    string `json:"addr"`
	Gateway string `json:"gateway"`
}

// Response is what the agent answers. Exactly one of Error, Hello or Run is set
// for hello and run; ping answers with none. While a run with Stream runs,
// the agent also sends frames with the run's id, op OpOutput and Output set,
// before its answer.
type Response struct {
	ID     uint64     `json:"id"`
	Op     string     `json:"op"`
	Error  *Error     `json:"error,omitempty"`
	Hello  *HelloInfo `json:"hello,omitempty"`
	Run    *RunResult `json:"run,omitempty"`
	Output *Output    `json:"output,omitempty"`
}

// Error is a protocol-level failure: the request could not be served.
// A program that fails is not an Error; it is a RunResult.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return "agent: " + e.Code + ": " + e.Message }

// HelloInfo describes the agent.
type HelloInfo struct {
	Version   int      `json:"version"`
	Agent     string   `json:"agent"`
	Kernel    string   `json:"kernel"`
	Languages []string `json:"languages"`
}

// DefaultOutputBytes is the agent's output limit when a request leaves it at
// zero.
const DefaultOutputBytes = 64 << 10

// Limits bound one run. Zero means "the agent's built-in default".
type Limits struct {
	WallMS        int64 `json:"wall_ms,omitempty"`
	CPUMS         int64 `json:"cpu_ms,omitempty"`
	MemoryKB      int64 `json:"memory_kb,omitempty"`
	StackKB       int64 `json:"stack_kb,omitempty"`
	Processes     int64 `json:"processes,omitempty"`
	OutputBytes   int64 `json:"output_bytes,omitempty"`
	FileSizeKB    int64 `json:"file_size_kb,omitempty"`
	CompileWallMS int64 `json:"compile_wall_ms,omitempty"`
	// CompileCPUMS and CompileMemoryKB bound the compile; zero: its wall
	// limit, and the larger of MemoryKB and CompileMemoryKB.
	CompileCPUMS    int64 `json:"compile_cpu_ms,omitempty"`
	CompileMemoryKB int64 `json:"compile_memory_kb,omitempty"`
	// JobWallMS bounds the whole request (its WallBudgetMS): the agent
	// stops what is left once it is spent.
	JobWallMS int64 `json:"job_wall_ms,omitempty"`
}

// RunRequest asks the agent to write, compile and run one program.
type RunRequest struct {
	Language string            `json:"language"`
	Code     string            `json:"code"`
	Stdin    string            `json:"stdin,omitempty"`
	Args     []string          `json:"args,omitempty"`
	Files    map[string]string `json:"files,omitempty"`
	Limits   Limits            `json:"limits"`
	// Runs runs the compiled program this many times (default 1).
	Runs int `json:"runs,omitempty"`
	// CompileFlags go right after the compiler's name; the host and the
	// agent both check them against the language's allow-list.
	CompileFlags []string `json:"compile_flags,omitempty"`
	// Tests, when set, replace Runs: the program runs once per test, in
	// order, each with its own input, limits and measurements.
	Tests []TestCase `json:"tests,omitempty"`
	// StopOnFailure ends the tests at the first that does not pass.
	StopOnFailure bool `json:"stop_on_failure,omitempty"`
	// Compare is how ExpectedOutput is compared: "exact" or
	// "trailing_whitespace" (the default).
	Compare string   `json:"compare,omitempty"`
	Checker *Checker `json:"checker,omitempty"`
	// Interactor, with Tests and instead of Checker, talks to the program
	// during each test: compiled once like a checker and run as the
	// checker's user, as testlib runs one (`interactor input output
	// [answer]`), its stdout the program's stdin and the program's stdout
	// its stdin. Its result is each test's Checker.
	Interactor *Checker `json:"interactor,omitempty"`
	// Stream asks for OpOutput frames while the program runs: new output,
	// at most one frame per StreamEvery.
	Stream bool `json:"stream,omitempty"`
	// RedirectStderr gives the program's runs one pipe for stdout and
	// stderr: what it writes to either is stdout, in the order written.
	RedirectStderr bool `json:"redirect_stderr,omitempty"`
	// Profile asks the agent where its time went (RunResult.Profile): the
	// benchmarks set it, jobs never do.
	Profile bool `json:"profile,omitempty"`
}

// Profile is where the agent's time for a request went: each step's time
// summed over the request's phases, in microseconds, under a fixed set of
// names (the runner's), and the offset of each test's start from the
// request's receipt, at most MaxTests of them.
type Profile struct {
	StepsUS      map[string]int64 `json:"steps_us"`
	Counts       map[string]int   `json:"counts"`
	TestStartsUS []int64          `json:"test_starts_us,omitempty"`
}

// Phase outcome of a compile or a run.
type Phase struct {
	ExitCode  int    `json:"exit_code"`
	Signal    string `json:"signal,omitempty"`
	WallUS    int64  `json:"wall_us"`
	CPUUserUS int64  `json:"cpu_user_us"`
	CPUSysUS  int64  `json:"cpu_sys_us"`
	MaxRSSKB  int64  `json:"max_rss_kb"`
	// TimedOut is set when the agent killed the process at the wall limit.
	TimedOut bool `json:"timed_out,omitempty"`
	// OutputLimited is set when the agent killed the process for exceeding
	// the output cap.
	OutputLimited bool `json:"output_limited,omitempty"`
	// MemoryLimited is set when the kernel OOM-killed a process of the
	// phase in its memory-limited cgroup.
	MemoryLimited bool `json:"memory_limited,omitempty"`
}

// RunResult is the raw outcome; the host derives the verdict from it.
type RunResult struct {
	Compiled      bool   `json:"compiled"`
	Compile       *Phase `json:"compile,omitempty"`
	CompileOutput string `json:"compile_output"`
	Run           *Phase `json:"run,omitempty"`
	// Runs has every run when more than one was asked for; Run, Stdout and
	// Stderr are the first run's.
	Runs   []Phase `json:"runs,omitempty"`
	Stdout string  `json:"stdout"`
	Stderr string  `json:"stderr"`
	// Tests has each test's outcome, in order, when the request had tests
	// (fewer than asked when StopOnFailure stopped them).
	Tests []TestResult `json:"tests,omitempty"`
	// CheckerCompiled is false when the checker (or the interactor) did
	// not compile; its diagnostics are in CheckerCompileOutput, and no
	// test ran.
	CheckerCompiled      bool   `json:"checker_compiled,omitempty"`
	CheckerCompileOutput string `json:"checker_compile_output,omitempty"`
	// AgentUS is the agent's own time for the request, receipt to answer:
	// everything spent inside the guest.
	AgentUS int64 `json:"agent_us"`
	// Profile is set when the request asked for it.
	Profile *Profile `json:"profile,omitempty"`
}
