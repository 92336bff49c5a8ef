package judge0

import (
	"encoding/base64"
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
	// Also are the language's other ids (Judge0's 48 and 49 for its 50):
	// accepted, not listed.
	Also []int `json:"-"`
	// MemoryKB is the runtime's need (lang.Needs): the default memory
	// limit is raised to it.
	MemoryKB, FileSizeKB, CPUMS int64 `json:"-"`
	// CodeBase64: the job carries the source's bytes in base64 (44,
	// Executable); CodeOptional: source_code may be blank (89, Multi-file
	// program).
	CodeBase64, CodeOptional bool `json:"-"`
}

// Languages are Judge0's languages for ours (versions: what the image's
// manifest says each prints; a missing one is "unknown"), sorted by name
// as GET /languages lists them: each under the first of its ids, the
// others accepted (Also). A language of ours Judge0 has no id for is left
// out.
func Languages(ours map[string]lang.Language, versions map[string]string) []Language {
	var out []Language
	for name, l := range ours {
		j := l.Judge0
		if j == nil {
			continue
		}
		// Java's and Scala's files are named after the code's; Judge0 shows Main.
		main := strings.NewReplacer("{main}", "Main")
		jl := Language{ID: j.IDs[0], Also: j.IDs[1:], Name: strings.Replace(j.Name, "%s", lang.ShortVersion(name, versions[name]), 1),
			SourceFile: main.Replace(l.Source), RunCmd: main.Replace(strings.Join(l.Run, " ")), Ours: name, CheckFlags: l.CheckCompileFlags, Hello: l.Hello,
			CodeBase64: l.CodeBase64, CodeOptional: l.CodeOptional}
		if l.Limits != nil {
			jl.MemoryKB, jl.FileSizeKB, jl.CPUMS = l.Limits.MemoryKB, l.Limits.FileSizeKB, l.Limits.CPUMS
		}
		if l.CodeBase64 {
			jl.Hello = decodedHello(l.Hello)
		}
		if len(l.Compile) > 0 {
			jl.CompileCmd = main.Replace(strings.Join(l.Compile, " "))
		}
		out = append(out, jl)
	}
	slices.SortFunc(out, func(a, b Language) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// decodedHello is an executable's hello world as its bytes (the table
// carries it in base64, as a job does).
func decodedHello(b64 string) string {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return b64
	}
	return string(b)
}
