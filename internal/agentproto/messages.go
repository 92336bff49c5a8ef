package agentproto

import "strings"

// ValidFileName accepts plain names inside the job directory: no path
// separators, no "." or "..", no leading dash, at most 255 bytes. Both the
// host (job validation) and the guest (before writing) check it.
func ValidFileName(name string) bool {
	return name != "" && len(name) <= 255 && name != "." && name != ".." &&
		!strings.ContainsAny(name, "/\\\x00") && !strings.HasPrefix(name, "-")
}

// Request is what the host sends. ID correlates the response; the host uses
// fresh IDs so that a stale answer (to a retried hello) is recognised and dropped.
type Request struct {
	ID       uint64      `json:"id"`
	Op       string      `json:"op"`
	Version  int         `json:"version,omitempty"`
	Run      *RunRequest `json:"run,omitempty"`
	Identity *Identity   `json:"identity,omitempty"`
}

// Identity makes a clone unique.
type Identity struct {
	Seed     []byte `json:"seed"`      // at least 32 random bytes
	UnixNano int64  `json:"unix_nano"` // the host's wall clock
}

// Response is what the agent answers. Exactly one of Error, Hello or Run is set
// for hello and run; ping answers with none.
type Response struct {
	ID    uint64     `json:"id"`
	Op    string     `json:"op"`
	Error *Error     `json:"error,omitempty"`
	Hello *HelloInfo `json:"hello,omitempty"`
	Run   *RunResult `json:"run,omitempty"`
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
	// AgentUS is the agent's own time for the request, receipt to answer:
	// everything spent inside the guest.
	AgentUS int64 `json:"agent_us"`
}
