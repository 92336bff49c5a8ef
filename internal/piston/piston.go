// Package piston is Piston v2's execute API (engineer-man/piston,
// api/src/api/v2.js and job.js), as its clients see it: the runtimes the
// image has under Piston's names and aliases, an execute request validated
// with Piston's messages into a codebench job, and the compile and run
// stages of a result, rendered from a submission record. The routes are
// internal/api's.
package piston

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/submission"
)

// Door is the name Piston's submissions carry (submission.Record.Door).
const Door = "piston"

// Runtime is one entry of GET /api/v2/runtimes.
type Runtime struct {
	Language string   `json:"language"`
	Version  string   `json:"version"`
	Aliases  []string `json:"aliases"`
	Runtime  string   `json:"runtime,omitempty"`
	// ours is the codebench language that runs it, compiled whether it
	// has a compile step.
	ours     string
	compiled bool
	// base64: the job carries the program's bytes in base64 (Piston's
	// "file" runtime: an uploaded executable, any encoding).
	base64 bool
}

// Runtimes are Piston's runtimes for ours (each language's Piston names,
// lang.PistonName), each with the version its version command printed
// (versions, by language: lang.ShortVersion).
func Runtimes(ours map[string]lang.Language, versions map[string]string) []Runtime {
	var out []Runtime
	for name, l := range ours {
		p := l.Piston
		if p == nil {
			continue
		}
		rt := Runtime{Language: p.Language, Aliases: append([]string{}, p.Aliases...), Runtime: p.Runtime,
			ours: name, compiled: len(l.Compile) > 0, base64: l.CodeBase64}
		rt.Version = lang.ShortVersion(name, versions[name])
		out = append(out, rt)
	}
	slices.SortFunc(out, func(a, b Runtime) int { return strings.Compare(a.Language, b.Language) })
	return out
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
	Language           any             `json:"language"`
	Version            any             `json:"version"`
	Files              json.RawMessage `json:"files"`
	Stdin              *string         `json:"stdin"`
	Args               []string        `json:"args"`
	CompileTimeout     any             `json:"compile_timeout"`
	RunTimeout         any             `json:"run_timeout"`
	CompileCPUTime     any             `json:"compile_cpu_time"`
	RunCPUTime         any             `json:"run_cpu_time"`
	CompileMemoryLimit any             `json:"compile_memory_limit"`
	RunMemoryLimit     any             `json:"run_memory_limit"`
}

// Error is Piston's 400 answer.
type Error struct {
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

func bad(format string, a ...any) *Error { return &Error{Message: fmt.Sprintf(format, a...)} }

// Bounds are the most a request may ask for, in the job's units.
type Bounds struct {
	RunWallMS, RunCPUMS, RunMemoryKB int64
	CompileWallMS, CompileMemoryKB   int64
}

// Piston's own maxima for the run (this server's; Piston's are per
// installation), before the workers' own.
const (
	maxRunWallMS   = 20_000
	maxRunCPUMS    = 15_000
	maxRunMemoryKB = 512_000
)

// BoundsFor are Piston's maxima within what the workers accept.
func BoundsFor(p job.Policy) Bounds {
	within := func(ours, theirs int64) int64 {
		if theirs > 0 {
			return min(ours, theirs)
		}
		return ours
	}
	return Bounds{RunWallMS: within(maxRunWallMS, p.Max.WallMS), RunCPUMS: within(maxRunCPUMS, p.Max.CPUMS),
		RunMemoryKB: within(maxRunMemoryKB, p.Max.MemoryKB), CompileWallMS: p.CompileWall, CompileMemoryKB: p.MaxCompileMemoryKB("")}
}

// Options are what a Piston request says that its job cannot: the
// runtime it named.
type Options struct {
	Language string `json:"language"`
	Version  string `json:"version"`
}

// Decode validates body as Piston does (its messages) and makes the job
// that runs it: the first file the program (under the language's own
// source name), the others beside it; stdin, args; the limits given,
// converted to the job's units (the rest are the workers' defaults).
func Decode(body []byte, rts []Runtime, b Bounds) (*job.Job, Runtime, error) {
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
	// Decoded once, as what it must be: an array of files.
	var files []File
	if raw := strings.TrimSpace(string(r.Files)); !strings.HasPrefix(raw, "[") || json.Unmarshal(r.Files, &files) != nil {
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
	if len(files) == 0 || !rt.base64 && !slices.ContainsFunc(files, func(f File) bool { return f.Encoding == "" || f.Encoding == "utf8" }) {
		return nil, Runtime{}, bad("files must include at least one utf8 encoded file")
	}
	limits := map[string]struct {
		v   any
		max float64
	}{
		"compile_timeout": {r.CompileTimeout, float64(b.CompileWallMS)}, "run_timeout": {r.RunTimeout, float64(b.RunWallMS)},
		"compile_cpu_time": {r.CompileCPUTime, float64(b.CompileWallMS)}, "run_cpu_time": {r.RunCPUTime, float64(b.RunCPUMS)},
		"compile_memory_limit": {r.CompileMemoryLimit, float64(b.CompileMemoryKB) * 1024},
		"run_memory_limit":     {r.RunMemoryLimit, float64(b.RunMemoryKB) * 1024},
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
	// Piston's units are milliseconds and bytes; the job's milliseconds
	// and KiB.
	j := &job.Job{Type: "code", Language: rt.ours}
	if v, ok := got["run_timeout"]; ok {
		j.Limits.WallMS = max(int64(v), 1)
	}
	if v, ok := got["run_cpu_time"]; ok {
		j.Limits.CPUMS = int64(v)
	}
	if v, ok := got["run_memory_limit"]; ok && v > 0 {
		j.Limits.MemoryKB = max(int64(v/1024), 2048)
	}
	if v, ok := got["compile_timeout"]; ok {
		j.Limits.CompileWallMS = max(int64(v), 1)
	}
	if v, ok := got["compile_cpu_time"]; ok {
		j.Limits.CompileCPUMS = max(int64(v), 1)
	}
	if v, ok := got["compile_memory_limit"]; ok && v > 0 {
		j.Limits.CompileMemoryKB = max(int64(v/1024), 2048)
	}
	for i, f := range files {
		content, err := decode(*f.Content, f.Encoding)
		if err != nil {
			return nil, Runtime{}, bad("files[%d]: %v", i, err)
		}
		if i == 0 {
			j.Code = content
			if rt.base64 {
				j.Code = base64.StdEncoding.EncodeToString([]byte(content))
			}
			continue
		}
		name := f.Name
		if name == "" {
			name = fmt.Sprintf("file%d.code", i)
		}
		if path.Base(name) != name || name == "." || name == ".." {
			return nil, Runtime{}, bad("files[%d].name must be a plain file name", i)
		}
		if j.Files == nil {
			j.Files = map[string]string{}
		}
		j.Files[name] = content
	}
	if r.Stdin != nil {
		j.Stdin = *r.Stdin
	}
	if len(r.Args) > 0 {
		j.Args = r.Args
	}
	return j, rt, nil
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
	// Run is absent when the compile failed: Piston's job.js runs nothing
	// after a failed compile and its answer has no run key.
	Run     *Stage `json:"run,omitempty"`
	Compile *Stage `json:"compile,omitempty"`
}

func ptr[T any](v T) *T { return &v }

// round3 rounds seconds to milliseconds, as isolate reports them.
func round3(s float64) float64 { return float64(int64(s*1000+0.5)) / 1000 }

// ResultOf is the answer for a finished record: a compiled language gets a
// compile stage; a failed compile is also the run stage (Piston's
// backward compatibility); the run's status as isolate's (TO, SG, RE, OL,
// XX), its code null when a signal ended it.
func ResultOf(r *submission.Record, rt Runtime) Result {
	res := Result{Language: rt.Language, Version: rt.Version}
	sum, _ := submission.SummaryOf(r)
	st := r.Status
	if st == nil {
		st = &job.Status{}
	}
	if rt.compiled {
		c := &Stage{Stderr: sum.CompileOutput, Output: sum.CompileOutput, Code: ptr(int64(0))}
		if st.Verdict == job.VerdictCompileError {
			c.Code, c.Status, c.Message = ptr(int64(1)), ptr("RE"), ptr("compilation failed")
			if sum.Message != "" {
				c.Message = ptr(sum.Message)
			}
			res.Compile = c
			return res
		}
		res.Compile = c
	}
	run := Stage{Stdout: sum.Stdout, Stderr: sum.Stderr, Output: sum.Stdout + sum.Stderr}
	if sum.Message != "" {
		run.Message = ptr(sum.Message)
	}
	// The sandbox's failure, or a compile error where there is no compile
	// stage: nothing ran, nothing was measured.
	if st.Verdict == job.VerdictInternalError || st.Verdict == job.VerdictCompileError {
		if st.Verdict == job.VerdictInternalError {
			run.Status = ptr("XX")
		}
		res.Run = &run
		return res
	}
	run.Code = ptr(sum.ExitCode)
	if sum.Signal != "" {
		run.Code, run.Signal = nil, ptr(strings.ToUpper(sum.Signal))
	}
	switch st.Verdict {
	case job.VerdictTimeLimit:
		run.Status, run.Signal, run.Code = ptr("TO"), ptr("SIGKILL"), nil
	case job.VerdictOutputLimit:
		run.Status, run.Signal, run.Code = ptr("OL"), ptr("SIGKILL"), nil
	case job.VerdictMemoryLimit:
		run.Status = ptr("SG")
	case job.VerdictRuntimeError:
		switch {
		case strings.EqualFold(sum.Signal, "SIGXFSZ"):
			run.Status, run.Signal, run.Code = ptr("OL"), ptr("SIGKILL"), nil
		case sum.Signal != "":
			run.Status = ptr("SG")
		default:
			run.Status = ptr("RE")
		}
	}
	run.Memory = ptr(sum.MemoryKB * 1024)
	run.CPUTime = ptr(round3(sum.CPU) * 1000)
	run.WallTime = ptr(round3(sum.Wall) * 1000)
	res.Run = &run
	return res
}
