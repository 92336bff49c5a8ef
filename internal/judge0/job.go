package judge0

import (
	"math"
	"strings"

	"github.com/codebench/codebench/internal/job"
)

// fields are a submission's values as Judge0 validates them, in Judge0's
// units (seconds, KB), every default filled in.
type fields struct {
	SourceCode                            string
	LanguageID                            int
	CompilerOptions, CommandLineArguments *string
	NumberOfRuns                          int64
	Stdin, ExpectedOutput                 *string
	CPUTimeLimit, CPUExtraTime            float64
	WallTimeLimit                         float64
	MemoryLimit, StackLimit, MaxProcesses int64
	MaxFileSize                           int64
	RedirectStderr                        bool
	CallbackURL                           *string
	AdditionalFiles                       []byte
	Files                                 map[string]string
	EnableNetwork                         bool
}

// ms is seconds as milliseconds, to the nearest.
func ms(seconds float64) int64 { return int64(math.Round(seconds * 1000)) }

// job is the codebench job that runs s in language ours: its code, input,
// options split on white space (Judge0 passes them through a shell; quotes
// are not interpreted here), runs, the expected output compared as Judge0
// compares it (each line's trailing white space and the trailing newlines
// ignored: job.CompareTrailingWhitespace), and the limits: CPU and wall
// time, memory, stack, processes and file size. Units change here, once.
func (s *fields) job(ours string) job.Job {
	j := job.Job{Type: "code", Language: ours, Code: s.SourceCode,
		Limits: job.Limits{
			CPUMS:      ms(s.CPUTimeLimit),
			WallMS:     ms(s.WallTimeLimit),
			MemoryKB:   s.MemoryLimit,
			StackKB:    s.StackLimit,
			Processes:  s.MaxProcesses,
			FileSizeKB: s.MaxFileSize,
		},
		Network:        s.EnableNetwork,
		RedirectStderr: s.RedirectStderr,
		Files:          s.Files,
	}
	if s.Stdin != nil {
		j.Stdin = *s.Stdin
	}
	if s.CompilerOptions != nil {
		j.CompileFlags = strings.Fields(*s.CompilerOptions)
	}
	if s.CommandLineArguments != nil {
		j.Args = strings.Fields(*s.CommandLineArguments)
	}
	if s.NumberOfRuns > 1 {
		j.Runs = int(s.NumberOfRuns)
	}
	if s.ExpectedOutput != nil {
		e := *s.ExpectedOutput
		j.ExpectedOutput, j.Compare = &e, job.CompareTrailingWhitespace
	}
	return j
}

// round3 rounds seconds to milliseconds, as isolate reports them.
func round3(s float64) float64 { return float64(int64(s*1000+0.5)) / 1000 }
