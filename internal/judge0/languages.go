package judge0

import (
	"slices"
	"strings"

	"github.com/codebench/codebench/internal/lang"
)

// Language is one of Judge0's languages, backed by one of ours.
type Language struct {
	ID         int    `json:"id"`
	Name       string `json:"name"`
	IsArchived bool   `json:"is_archived"`
	SourceFile string `json:"source_file"`
	CompileCmd any    `json:"compile_cmd"` // a string, or null
	RunCmd     string `json:"run_cmd"`
	// Ours is the codebench language that runs it; CheckFlags checks
	// compiler options against its allow-list.
	Ours       string               `json:"-"`
	CheckFlags func([]string) error `json:"-"`
	// Hello is a hello world in it (the playground's first program).
	Hello string `json:"-"`
}

// judge0Names are Judge0 CE 1.13.1's ids (db/languages/active.rb) for the
// languages the image has, and the name each carries, with our version.
var judge0Names = map[string]struct {
	id   int
	name string
}{
	"c": {50, "C (GCC %s)"}, "cpp": {54, "C++ (GCC %s)"}, "python": {71, "Python (%s)"},
	"go": {60, "Go (%s)"}, "rust": {73, "Rust (%s)"}, "javascript": {63, "JavaScript (Node.js %s)"},
	"java": {62, "Java (OpenJDK %s)"}, "bash": {46, "Bash (%s)"},
}

// Languages are Judge0's languages for ours (versions: what the image's
// manifest says each prints; a missing one is "unknown"), sorted by name
// as GET /languages lists them. A language of ours Judge0 has no id for is
// left out.
func Languages(ours map[string]lang.Language, versions map[string]string) []Language {
	var out []Language
	for name, l := range ours {
		j, ok := judge0Names[name]
		if !ok {
			continue
		}
		// Java's class is named after the code's; Judge0 shows Main.
		main := strings.NewReplacer("{main}", "Main")
		jl := Language{ID: j.id, Name: strings.Replace(j.name, "%s", lang.ShortVersion(name, versions[name]), 1),
			SourceFile: main.Replace(l.Source), RunCmd: main.Replace(strings.Join(l.Run, " ")), Ours: name, CheckFlags: l.CheckCompileFlags, Hello: l.Hello}
		if len(l.Compile) > 0 {
			jl.CompileCmd = main.Replace(strings.Join(l.Compile, " "))
		}
		out = append(out, jl)
	}
	slices.SortFunc(out, func(a, b Language) int { return strings.Compare(a.Name, b.Name) })
	return out
}
