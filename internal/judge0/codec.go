package judge0

import (
	"encoding/json"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/submission"
)

// Door is the name Judge0's submissions carry (submission.Record.Door).
const Door = "judge0"

// Codec is Judge0's front door: its languages and limits, requests
// validated into jobs, records rendered as Judge0 renders submissions.
type Codec struct {
	list   []Language // sorted by name
	byID   map[int]Language
	byOurs map[string]Language
	limits Limits
}

// New is the codec for langs (Languages) and lim (LimitsFor).
func New(langs []Language, lim Limits) *Codec {
	c := &Codec{list: langs, byID: map[int]Language{}, byOurs: map[string]Language{}, limits: lim}
	for _, l := range langs {
		c.byID[l.ID] = l
		for _, id := range l.Also {
			if _, taken := c.byID[id]; !taken {
				alias := l
				alias.ID, alias.Also = id, nil
				c.byID[id] = alias
			}
		}
		if _, ok := c.byOurs[l.Ours]; !ok {
			c.byOurs[l.Ours] = l
		}
	}
	return c
}

// Languages are the languages, sorted by name.
func (c *Codec) Languages() []Language { return c.list }

// Language is the language with id.
func (c *Codec) Language(id int) (Language, bool) {
	l, ok := c.byID[id]
	return l, ok
}

// Limits are the codec's defaults and maxima.
func (c *Codec) Limits() Limits { return c.limits }

// LimitsFor are Judge0's defaults and maxima within what the workers
// accept (p, in the job's units, converted here): a default above a
// worker's maximum comes down to it. additional_files unpack to at most
// what a job's files may total (the workers' bound on code, stdin and
// files together); networks are allowed where the workers have them.
func LimitsFor(p job.Policy) Limits {
	lim := DefaultLimits
	seconds := func(ms int64) float64 { return float64(ms) / 1000 }
	if p.Max.MemoryKB > 0 {
		lim.MaxMemoryLimit = min(lim.MaxMemoryLimit, p.Max.MemoryKB)
	}
	if p.Max.StackKB > 0 {
		lim.MaxStackLimit = min(lim.MaxStackLimit, p.Max.StackKB)
	}
	if p.Max.Processes > 0 {
		lim.MaxMaxProcesses = min(lim.MaxMaxProcesses, p.Max.Processes)
	}
	if p.Max.CPUMS > 0 {
		lim.MaxCPUTimeLimit = min(lim.MaxCPUTimeLimit, seconds(p.Max.CPUMS))
	}
	if p.Max.WallMS > 0 {
		lim.MaxWallTimeLimit = min(lim.MaxWallTimeLimit, seconds(p.Max.WallMS))
	}
	if p.Max.FileSizeKB > 0 {
		lim.MaxMaxFileSize = min(lim.MaxMaxFileSize, p.Max.FileSizeKB)
	}
	if p.MaxRuns > 0 {
		lim.MaxNumberOfRuns = min(lim.MaxNumberOfRuns, int64(p.MaxRuns))
	}
	lim.MemoryLimit = min(lim.MemoryLimit, lim.MaxMemoryLimit)
	lim.StackLimit = min(lim.StackLimit, lim.MaxStackLimit)
	lim.MaxProcesses = min(lim.MaxProcesses, lim.MaxMaxProcesses)
	lim.CPUTimeLimit = min(lim.CPUTimeLimit, lim.MaxCPUTimeLimit)
	lim.WallTimeLimit = min(lim.WallTimeLimit, lim.MaxWallTimeLimit)
	lim.MaxFileSize = min(lim.MaxFileSize, lim.MaxMaxFileSize)
	lim.NumberOfRuns = min(lim.NumberOfRuns, lim.MaxNumberOfRuns)
	if p.MaxCodeBytes > 0 {
		lim.MaxExtractSize = min(lim.MaxExtractSize, int64(4*p.MaxCodeBytes)/1024)
	}
	lim.CompileWallMS = p.CompileWall
	lim.AllowEnableNetwork = p.Network
	return lim
}

// OptionsOf are rec's Judge0 options: its own when a Judge0 request made
// it, else what its job says (the language's id; no extra time).
func (c *Codec) OptionsOf(rec *submission.Record) Options {
	var o Options
	if len(rec.Options) > 0 && json.Unmarshal(rec.Options, &o) == nil && o.LanguageID > 0 {
		return o
	}
	return Options{LanguageID: c.byOurs[rec.Job.Language].ID}
}
