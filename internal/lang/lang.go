// Package lang is the table of languages a guest image can run: file names,
// compile and run commands, and the Debian packages that provide them. The
// table is data: the image build copies it into the guest, and the agent reads
// it from there, so adding a language never touches the agent's code.
package lang

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/codebench/codebench/internal/untrusted"
)

// GuestPath is where the image puts the table inside the guest.
const GuestPath = "/etc/codebench/languages.json"

//go:embed languages.json
var builtin []byte

// Language says how to build and run one language.
type Language struct {
	Name       string   `json:"name"`
	Extensions []string `json:"extensions"`
	Source     string   `json:"source"`
	Compile    []string `json:"compile,omitempty"`
	Run        []string `json:"run"`
	Packages   []string `json:"packages"`
	Version    []string `json:"version,omitempty"`
	// Hello prints "Hello, World!": warm-up and smoke test.
	Hello string `json:"hello"`
	// CompileFlags are the patterns (anchored regular expressions) a job's
	// compile_flags must each match.
	CompileFlags []string `json:"compile_flags,omitempty"`
	// Main, when set, names the program's entry point from its source
	// (Java: the public top-level class, which must name the file): every
	// "{main}" in Source, Compile and Run is replaced by it (see For).
	Main *MainName `json:"main,omitempty"`
	// CodeBase64: the program is bytes (an executable), carried in a job's
	// code as base64 and decoded by the compile step; front doors that
	// take raw bytes encode them.
	CodeBase64 bool `json:"code_base64,omitempty"`
	// CodeOptional: a job may leave its code empty (Judge0's multi-file
	// program: its files are the program).
	CodeOptional bool `json:"code_optional,omitempty"`
	// Limits are what the runtime needs beyond the worker's defaults.
	Limits *Needs `json:"limits,omitempty"`
	// Judge0 and Piston name the language as those front doors do; nil:
	// that door does not offer it.
	Judge0 *Judge0Name `json:"judge0,omitempty"`
	Piston *PistonName `json:"piston,omitempty"`
}

// Needs are a runtime's needs: a job that leaves a limit unset gets at
// least this much (within the worker's maxima); a job that sets one is
// held to it. A JVM, Mono or R needs more than a C program's default.
type Needs struct {
	MemoryKB        int64 `json:"memory_kb,omitempty"`
	CompileMemoryKB int64 `json:"compile_memory_kb,omitempty"`
	// CPUMS: a JVM starting Clojure's, Groovy's, Scala's or Kotlin's
	// runtime, or the BEAM starting Elixir's, spends 1-4.5 s of CPU on a
	// program that sums two numbers, more on a loaded host.
	CPUMS int64 `json:"cpu_ms,omitempty"`
	// FileSizeKB: the BEAM's JIT sizes a memory file past a C
	// program's default file size limit.
	FileSizeKB int64 `json:"file_size_kb,omitempty"`
	// MaxStackKB caps the stack limit: Ruby 3.1 sizes its machine stack
	// from RLIMIT_STACK and crashes (SIGSEGV at start) under gVisor, whose
	// process stack does not grow past about 8 MiB, when given more.
	MaxStackKB int64 `json:"max_stack_kb,omitempty"`
}

// Judge0Name is the language's place in Judge0 CE 1.13.1's list
// (db/languages/active.rb): its ids, the first listed and every one
// accepted, and its name, "%s" standing for the version the image has.
type Judge0Name struct {
	IDs  []int  `json:"ids"`
	Name string `json:"name"`
}

// PistonName is the language as Piston's package repository names it.
type PistonName struct {
	Language string   `json:"language"`
	Aliases  []string `json:"aliases"`
	Runtime  string   `json:"runtime,omitempty"`
}

// MainName finds the program's entry point in its source.
type MainName struct {
	Pattern string `json:"pattern"` // its first group is the name
	Default string `json:"default"` // when the pattern finds none
}

// mainPlaceholder is replaced by the entry point's name.
const mainPlaceholder = "{main}"

// mainRE is what an entry point's name may be: an identifier, so that it
// can name a file and an argument safely.
var mainRE = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]{0,127}$`)

// For returns the language as it builds and runs code: placeholders filled
// with the entry point the source names (or the default). Host and guest
// both use it, so they agree on the source file's name.
func (l Language) For(code string) Language {
	if l.Main == nil {
		return l
	}
	name := l.Main.Default
	if re, err := regexp.Compile(l.Main.Pattern); err == nil {
		if m := re.FindStringSubmatch(code); len(m) > 1 && mainRE.MatchString(m[1]) {
			name = m[1]
		}
	}
	fill := func(args []string) []string {
		out := make([]string, len(args))
		for i, a := range args {
			out[i] = strings.ReplaceAll(a, mainPlaceholder, name)
		}
		return out
	}
	l.Source = strings.ReplaceAll(l.Source, mainPlaceholder, name)
	l.Compile, l.Run = fill(l.Compile), fill(l.Run)
	return l
}

// Bounds of a job's compile flags: how many, and how long each.
const (
	MaxCompileFlags     = 16
	MaxCompileFlagBytes = 256
)

// CheckCompileFlags accepts flags only if the language compiles and each
// flag matches one of its allowed patterns.
func (l Language) CheckCompileFlags(flags []string) error {
	if len(flags) == 0 {
		return nil
	}
	if len(l.Compile) == 0 {
		return fmt.Errorf("%s is not compiled: compile_flags are not accepted", l.Name)
	}
	if len(flags) > MaxCompileFlags {
		return fmt.Errorf("at most %d compile_flags", MaxCompileFlags)
	}
	for _, f := range flags {
		if len(f) > MaxCompileFlagBytes {
			return fmt.Errorf("compile flag %s is over %d bytes", untrusted.Quote(f), MaxCompileFlagBytes)
		}
		ok := false
		for _, p := range l.CompileFlags {
			if m, err := regexp.MatchString("^(?:"+p+")$", f); err == nil && m {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("compile flag %s is not allowed for %s", untrusted.Quote(f), l.Name)
		}
	}
	return nil
}

// Table is a set of languages keyed by name.
type Table map[string]Language

// Builtin returns the table shipped with this build.
func Builtin() Table {
	t, err := Parse(builtin)
	if err != nil {
		panic("lang: builtin table: " + err.Error()) // a build defect, caught by tests
	}
	return t
}

// Parse decodes and validates a table.
func Parse(b []byte) (Table, error) {
	var list []Language
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("lang: decode table: %w", err)
	}
	t := make(Table, len(list))
	for _, l := range list {
		switch {
		case l.Name == "":
			return nil, fmt.Errorf("lang: entry without a name")
		case l.Source == "" || filepath.Base(l.Source) != l.Source:
			return nil, fmt.Errorf("lang: %s: source must be a plain file name", l.Name)
		case l.Main != nil && (!strings.Contains(l.Source, mainPlaceholder) || !mainRE.MatchString(l.Main.Default)):
			return nil, fmt.Errorf("lang: %s: main needs %s in source and a valid default", l.Name, mainPlaceholder)
		case len(l.Run) == 0:
			return nil, fmt.Errorf("lang: %s: no run command", l.Name)
		case l.Hello == "":
			return nil, fmt.Errorf("lang: %s: no hello-world program", l.Name)
		case l.Judge0 != nil && (len(l.Judge0.IDs) == 0 || l.Judge0.Name == ""):
			return nil, fmt.Errorf("lang: %s: judge0 needs ids and a name", l.Name)
		case l.Piston != nil && l.Piston.Language == "":
			return nil, fmt.Errorf("lang: %s: piston needs a language", l.Name)
		}
		if _, dup := t[l.Name]; dup {
			return nil, fmt.Errorf("lang: %s listed twice", l.Name)
		}
		t[l.Name] = l
	}
	return t, nil
}

// Names returns the language names, sorted.
func (t Table) Names() []string {
	names := make([]string, 0, len(t))
	for n := range t {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Packages returns every Debian package the table needs, sorted and unique.
func (t Table) Packages() []string {
	var pkgs []string
	for _, l := range t {
		pkgs = append(pkgs, l.Packages...)
	}
	slices.Sort(pkgs)
	return slices.Compact(pkgs)
}

// ByExtension finds the language for a file name such as "hello.c".
func (t Table) ByExtension(file string) (Language, bool) {
	ext := strings.ToLower(filepath.Ext(file))
	for _, n := range t.Names() {
		if slices.Contains(t[n].Extensions, ext) {
			return t[n], true
		}
	}
	return Language{}, false
}
