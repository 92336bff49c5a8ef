package job

import (
	"fmt"
	"slices"
	"unicode/utf8"
)

// Trimmed records the sizes, in bytes, of the texts Fit cut, before it cut
// them. A text that was not cut is absent.
type Trimmed struct {
	Stdout         int `json:"stdout_bytes,omitempty"`
	Stderr         int `json:"stderr_bytes,omitempty"`
	CompileOutput  int `json:"compile_output_bytes,omitempty"`
	Error          int `json:"error_bytes,omitempty"`
	Message        int `json:"message_bytes,omitempty"`
	CheckerMessage int `json:"checker_message_bytes,omitempty"`
}

// trimMarker ends every text Fit cut.
const trimMarker = "\n[codebench: trimmed to fit the status size limit; %d of %d bytes kept]"

// minFit is the smallest limit Fit accepts: room for the status without
// its texts, and a marker per text.
const minFit = 4096

// Fit makes the status's encoding at most limit bytes by cutting its texts
// (stdout, stderr, compiler output, error, message), keeping the start of
// each, marking each cut text and recording its original size in Trimmed.
// Short texts are kept whole; the room is shared among the long ones. It
// reports whether it cut anything. A limit below minFit counts as minFit.
func (s *Status) Fit(limit int) bool {
	limit = max(limit, minFit)
	if len(s.Marshal()) <= limit {
		return false
	}
	type text struct {
		p    *string
		orig int
		save func(n int) // records the original size
	}
	if s.Trimmed == nil {
		s.Trimmed = &Trimmed{}
	}
	top := s.Trimmed
	texts := []text{
		{&s.Stdout, len(s.Stdout), func(n int) { top.Stdout = n }},
		{&s.Stderr, len(s.Stderr), func(n int) { top.Stderr = n }},
		{&s.CompileOutput, len(s.CompileOutput), func(n int) { top.CompileOutput = n }},
		{&s.Error, len(s.Error), func(n int) { top.Error = n }},
		{&s.Message, len(s.Message), func(n int) { top.Message = n }},
	}
	for i := range s.Tests {
		ts := &s.Tests[i]
		rec := func(set func(*Trimmed, int)) func(int) {
			return func(n int) {
				if ts.Trimmed == nil {
					ts.Trimmed = &Trimmed{}
				}
				set(ts.Trimmed, n)
			}
		}
		texts = append(texts,
			text{&ts.Stdout, len(ts.Stdout), rec(func(t *Trimmed, n int) { t.Stdout = n })},
			text{&ts.Stderr, len(ts.Stderr), rec(func(t *Trimmed, n int) { t.Stderr = n })},
			text{&ts.CheckerMessage, len(ts.CheckerMessage), rec(func(t *Trimmed, n int) { t.CheckerMessage = n })})
	}
	orig := make([]string, len(texts))
	for i, t := range texts {
		orig[i] = *t.p
		*t.p = ""
	}
	// Every text may need a marker and the record of its size.
	fixed := len(s.Marshal()) + len(texts)*(len(trimMarker)+64)
	budget := limit - fixed
	// Water-filling: the cheapest texts first, each takes what it needs up
	// to an equal share of what is left.
	order := make([]int, len(texts))
	for i := range order {
		order[i] = i
	}
	cost := make([]int, len(texts))
	for i := range texts {
		cost[i] = jsonCost(orig[i])
	}
	slices.SortFunc(order, func(a, b int) int { return cost[a] - cost[b] })
	for k, i := range order {
		share := max(budget, 0) / (len(order) - k)
		if cost[i] <= share {
			*texts[i].p = orig[i]
			budget -= cost[i]
			continue
		}
		kept := prefixWithin(orig[i], share)
		*texts[i].p = kept + fmt.Sprintf(trimMarker, len(kept), len(orig[i]))
		texts[i].save(len(orig[i]))
		budget -= share
	}
	if *top == (Trimmed{}) {
		s.Trimmed = nil // only tests' texts were cut; each test says so
	}
	return true
}

// jsonCost is the length of s as a JSON string body, as encoding/json with
// HTML escaping off writes it.
func jsonCost(s string) int {
	n := 0
	for len(s) > 0 {
		c, size := runeCost(s)
		n += c
		s = s[size:]
	}
	return n
}

// prefixWithin is the longest prefix of s, cut at a character boundary, whose
// JSON cost is at most budget.
func prefixWithin(s string, budget int) string {
	used, i := 0, 0
	for i < len(s) {
		c, size := runeCost(s[i:])
		if used+c > budget {
			break
		}
		used += c
		i += size
	}
	return s[:i]
}

func runeCost(s string) (cost, size int) {
	r, size := utf8.DecodeRuneInString(s)
	switch {
	case r == utf8.RuneError && size == 1:
		return 6, 1 // written as \ufffd
	case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t' || r == '\b' || r == '\f':
		return 2, size
	case r < 0x20 || r == '\u2028' || r == '\u2029':
		return 6, size
	}
	return size, size
}
