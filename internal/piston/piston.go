// Package piston is Piston v2's execute API (engineer-man/piston,
// api/src/api/v2.js and job.js), as its clients see it: the runtimes the
// image has under Piston's names and aliases, an execute request validated
// with Piston's messages, and the compile and run stages of a result. The
// routes are internal/api's; a request runs as a Judge0 submission does.
package piston

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/judge0"
)

// Runtime is one entry of GET /api/v2/runtimes.
type Runtime struct {
	Language string   `json:"language"`
	Version  string   `json:"version"`
	Aliases  []string `json:"aliases"`
	Runtime  string   `json:"runtime,omitempty"`
	// judge0ID is the language that runs it.
	judge0ID int
}

// pistonNames are Piston's language names, aliases and runtime packages for
// the Judge0 languages the image has.
var pistonNames = map[int]Runtime{
	50: {Language: "c", Aliases: []string{"gcc"}, Runtime: "gcc"},
	54: {Language: "c++", Aliases: []string{"cpp", "g++"}, Runtime: "gcc"},
	71: {Language: "python", Aliases: []string{"py", "py3", "python3"}},
	60: {Language: "go", Aliases: []string{"go", "golang"}},
	73: {Language: "rust", Aliases: []string{"rs"}},
	63: {Language: "javascript", Aliases: []string{"node-javascript", "node-js", "javascript", "js"}, Runtime: "node"},
	62: {Language: "java", Aliases: []string{}},
	46: {Language: "bash", Aliases: []string{"sh"}},
}

// Runtimes are Piston's runtimes for langs, each with the version in the
// language's Judge0 name ("C (GCC 12.2.0)": 12.2.0).
func Runtimes(langs []judge0.Language) []Runtime {
	var out []Runtime
	for _, l := range langs {
		rt, ok := pistonNames[l.ID]
		if !ok {
			continue
		}
		rt.judge0ID = l.ID
		rt.Version = versionOf(l.Name)
		out = append(out, rt)
	}
	slices.SortFunc(out, func(a, b Runtime) int { return strings.Compare(a.Language, b.Language) })
	return out
}

// versionOf is the last word of a Judge0 name's parentheses.
func versionOf(name string) string {
	open, end := strings.LastIndexByte(name, '('), strings.LastIndexByte(name, ')')
	if open < 0 || end < open {
		return "0.0.0"
	}
	f := strings.Fields(name[open+1 : end])
	if len(f) == 0 {
		return "0.0.0"
	}
	return f[len(f)-1]
}

// find is the runtime for language (name or alias) and version (a range,
// matchVersion).
func find(rts []Runtime, language, version string) (Runtime, bool) {
	for _, rt := range rts {
		if rt.Language != language && !slices.Contains(rt.Aliases, language) {
			continue
		}
		if matchVersion(version, rt.Version) {
			return rt, true
		}
	}
	return Runtime{}, false
}

// matchVersion is semver's range match for the forms clients send: "*",
// "3", "3.11", "3.x", "3.11.2": each part given equal or a wildcard.
func matchVersion(pattern, version string) bool {
	if pattern == "*" || pattern == "x" {
		return true
	}
	want, have := strings.Split(pattern, "."), strings.Split(version, ".")
	if len(want) > len(have) {
		return false
	}
	for i, w := range want {
		if w != "x" && w != "X" && w != "*" && w != have[i] {
			return false
		}
	}
	return true
}

// File is one file of a request.
type File struct {
	Name     string  `json:"name"`
	Content  *string `json:"content"`
	Encoding string  `json:"encoding"`
}

// Request is POST /api/v2/execute's body.
type Request struct {
	Language           any      `json:"language"`
	Version            any      `json:"version"`
	Files              any      `json:"files"`
	Stdin              *string  `json:"stdin"`
	Args               []string `json:"args"`
	CompileTimeout     any      `json:"compile_timeout"`
	RunTimeout         any      `json:"run_timeout"`
	CompileCPUTime     any      `json:"compile_cpu_time"`
	RunCPUTime         any      `json:"run_cpu_time"`
	CompileMemoryLimit any      `json:"compile_memory_limit"`
	RunMemoryLimit     any      `json:"run_memory_limit"`
}

// Error is Piston's 400 answer.
type Error struct {
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

func bad(format string, a ...any) *Error { return &Error{Message: fmt.Sprintf(format, a...)} }

// Submission validates r as Piston does (its messages) and makes the Judge0
// submission that runs it: the first file the program (under the
// language's own source name), the others beside it; stdin, args; the run
// limits (ms, bytes) in Judge0's units, within lim's maxima.
func Submission(body []byte, rts []Runtime, lim judge0.Limits) (*judge0.Submission, Runtime, error) {
	var r Request
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, Runtime{}, bad("invalid JSON: %v", err)
	}
	language, ok := r.Language.(string)
	if !ok || language == "" {
		return nil, Runtime{}, bad("language is required as a string")
	}
	version, ok := r.Version.(string)
	if !ok || version == "" {
		return nil, Runtime{}, bad("version is required as a string")
	}
	raw, ok := r.Files.([]any)
	if !ok {
		return nil, Runtime{}, bad("files is required as an array")
	}
	b, _ := json.Marshal(raw)
	var files []File
	if err := json.Unmarshal(b, &files); err != nil {
		return nil, Runtime{}, bad("files is required as an array")
	}
	for i, f := range files {
		if f.Content == nil {
			return nil, Runtime{}, bad("files[%d].content is required as a string", i)
		}
	}
	rt, ok := find(rts, language, version)
	if !ok {
		return nil, Runtime{}, bad("%s-%s runtime is unknown", language, version)
	}
	if len(files) == 0 || !slices.ContainsFunc(files, func(f File) bool { return f.Encoding == "" || f.Encoding == "utf8" }) {
		return nil, Runtime{}, bad("files must include at least one utf8 encoded file")
	}
	limits := map[string]struct {
		v   any
		max float64
	}{
		"compile_timeout": {r.CompileTimeout, float64(lim.CompileWallMS)}, "run_timeout": {r.RunTimeout, lim.MaxWallTimeLimit * 1000},
		"compile_cpu_time": {r.CompileCPUTime, float64(lim.CompileWallMS)}, "run_cpu_time": {r.RunCPUTime, lim.MaxCPUTimeLimit * 1000},
		"compile_memory_limit": {r.CompileMemoryLimit, float64(max(lim.MaxMemoryLimit, agentproto.CompileMemoryKB)) * 1024},
		"run_memory_limit":     {r.RunMemoryLimit, float64(lim.MaxMemoryLimit) * 1024},
	}
	got := map[string]float64{}
	for _, name := range []string{"memory_limit", "timeout", "cpu_time"} {
		for _, stage := range []string{"compile", "run"} {
			key := stage + "_" + name
			c := limits[key]
			if c.v == nil || c.v == 0.0 || c.v == false || c.v == "" {
				continue
			}
			v, isNum := c.v.(float64)
			if !isNum {
				return nil, Runtime{}, bad("If specified, %s must be a number", key)
			}
			if c.max > 0 && v > c.max {
				return nil, Runtime{}, bad("%s cannot exceed the configured limit of %g", key, c.max)
			}
			if v < 0 && !(name == "memory_limit" && v == -1) {
				return nil, Runtime{}, bad("%s must be non-negative", key)
			}
			got[key] = v
		}
	}
	s := &judge0.Submission{LanguageID: rt.judge0ID, NumberOfRuns: 1,
		CPUTimeLimit: lim.CPUTimeLimit, CPUExtraTime: lim.CPUExtraTime, WallTimeLimit: lim.WallTimeLimit,
		MemoryLimit: lim.MemoryLimit, StackLimit: lim.StackLimit, MaxProcesses: lim.MaxProcesses, MaxFileSize: lim.MaxFileSize}
	if v, ok := got["run_timeout"]; ok {
		s.WallTimeLimit = max(v/1000, 0.001)
	}
	if v, ok := got["run_cpu_time"]; ok {
		s.CPUTimeLimit = v / 1000
	}
	if v, ok := got["run_memory_limit"]; ok && v > 0 {
		s.MemoryLimit = max(int64(v/1024), 2048)
	}
	if v, ok := got["compile_timeout"]; ok {
		s.CompileWallMS = max(int64(v), 1)
	}
	if v, ok := got["compile_cpu_time"]; ok {
		s.CompileCPUMS = max(int64(v), 1)
	}
	if v, ok := got["compile_memory_limit"]; ok && v > 0 {
		s.CompileMemoryKB = max(int64(v/1024), 2048)
	}
	for i, f := range files {
		content, err := decode(*f.Content, f.Encoding)
		if err != nil {
			return nil, Runtime{}, bad("files[%d]: %v", i, err)
		}
		if i == 0 {
			s.SourceCode = content
			continue
		}
		name := f.Name
		if name == "" {
			name = fmt.Sprintf("file%d.code", i)
		}
		if path.Base(name) != name || name == "." || name == ".." {
			return nil, Runtime{}, bad("files[%d].name must be a plain file name", i)
		}
		if s.Files == nil {
			s.Files = map[string]string{}
		}
		s.Files[name] = content
	}
	if r.Stdin != nil {
		in := *r.Stdin
		s.Stdin = &in
	}
	if len(r.Args) > 0 {
		s.Args = r.Args
	}
	return s, rt, nil
}

func decode(content, encoding string) (string, error) {
	switch encoding {
	case "", "utf8":
		return content, nil
	case "base64":
		b, err := base64.StdEncoding.DecodeString(content)
		return string(b), err
	case "hex":
		b, err := hex.DecodeString(content)
		return string(b), err
	}
	return "", fmt.Errorf("encoding %q is not one of utf8, base64, hex", encoding)
}

// Stage is a compile or run stage of a result.
type Stage struct {
	Stdout   string   `json:"stdout"`
	Stderr   string   `json:"stderr"`
	Output   string   `json:"output"`
	Code     *int64   `json:"code"`
	Signal   *string  `json:"signal"`
	Message  *string  `json:"message"`
	Status   *string  `json:"status"`
	Memory   *int64   `json:"memory"`
	CPUTime  *float64 `json:"cpu_time"`
	WallTime *float64 `json:"wall_time"`
}

// Result is the execute answer.
type Result struct {
	Language string `json:"language"`
	Version  string `json:"version"`
	Run      Stage  `json:"run"`
	Compile  *Stage `json:"compile,omitempty"`
}

// signalNames are the names of the numbers a record carries.
var signalNames = map[int64]string{1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS",
	8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM",
	24: "SIGXCPU", 25: "SIGXFSZ", 31: "SIGSYS"}

func ptr[T any](v T) *T { return &v }

// ResultOf is the answer for a finished record: a compiled language gets a
// compile stage; a failed compile is also the run stage (Piston's
// backward compatibility); the run's status as isolate's (TO, SG, RE, OL,
// XX), its code null when a signal ended it.
func ResultOf(r *judge0.Record, rt Runtime, compiled bool) Result {
	res := Result{Language: rt.Language, Version: rt.Version}
	str := func(s *string) string {
		if s == nil {
			return ""
		}
		return *s
	}
	if compiled {
		c := &Stage{Stderr: str(r.CompileOutput), Output: str(r.CompileOutput), Code: ptr(int64(0))}
		if r.StatusID == judge0.CompileError {
			c.Code, c.Status, c.Message = ptr(int64(1)), ptr("RE"), ptr("compilation failed")
			if r.Message != nil {
				c.Message = r.Message
			}
			res.Compile, res.Run = c, *c
			return res
		}
		res.Compile = c
	}
	run := Stage{Stdout: str(r.Stdout), Stderr: str(r.Stderr), Output: str(r.Stdout) + str(r.Stderr), Message: r.Message}
	run.Code = r.ExitCode
	if r.ExitSignal != nil {
		run.Code, run.Signal = nil, ptr(signalNames[*r.ExitSignal])
	}
	switch r.StatusID {
	case judge0.TimeLimit:
		run.Status, run.Signal, run.Code = ptr("TO"), ptr("SIGKILL"), nil
	case judge0.SIGSEGV, judge0.SIGFPE, judge0.SIGABRT, judge0.RuntimeOther:
		run.Status = ptr("SG")
	case judge0.SIGXFSZ:
		run.Status, run.Signal, run.Code = ptr("OL"), ptr("SIGKILL"), nil
	case judge0.NZEC:
		run.Status = ptr("RE")
	case judge0.InternalError:
		run.Status = ptr("XX")
	}
	if r.Memory != nil {
		run.Memory = ptr(*r.Memory * 1024)
	}
	if r.Time != nil {
		run.CPUTime = ptr(*r.Time * 1000)
	}
	if r.WallTime != nil {
		run.WallTime = ptr(*r.WallTime * 1000)
	}
	res.Run = run
	return res
}

// JudgeID is the Judge0 language a runtime runs as.
func (rt Runtime) JudgeID() int { return rt.judge0ID }
