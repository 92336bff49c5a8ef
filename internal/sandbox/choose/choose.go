// Package choose picks the sandbox driver a host can run: the candidates in
// order of preference (a KVM microVM, then gVisor, then QEMU under TCG),
// each probed for real (a test boot that must reach the agent), the first
// that works chosen; one that is no security boundary only when allowed. It
// reports every candidate, chosen or not, and why, for the worker's log and
// for "codebench doctor".
package choose

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/codebench/codebench/internal/sandbox"
)

// ErrNone: no candidate can run here (or only ones not allowed).
var ErrNone = errors.New("no sandbox driver can run here")

// Candidate is one way to run sandboxes.
type Candidate struct {
	Name string
	// Boundary: a security boundary (TCG emulation is not).
	Boundary bool
	// Probe makes the driver and proves it works here, saying how (or
	// why it does not).
	Probe func(ctx context.Context) (sandbox.Driver, string, error)
}

// Report is what became of one candidate.
type Report struct {
	Name   string
	Works  bool
	Chosen bool
	Detail string // how it works, or why not, or why it was not tried
}

func (r Report) String() string {
	mark := "no "
	switch {
	case r.Chosen:
		mark = "USE"
	case r.Works:
		mark = "ok "
	}
	return fmt.Sprintf("%s %-12s %s", mark, r.Name, r.Detail)
}

// Choice is the chosen driver and the reports of every candidate.
type Choice struct {
	Driver  sandbox.Driver
	Name    string
	Detail  string
	Reports []Report
}

// Choose probes the candidates in order and takes the first that works and
// is a boundary, or is allowed without one. With all, it probes every
// candidate even after choosing (for doctor); otherwise it stops at the
// first it takes.
func Choose(ctx context.Context, cands []Candidate, allowNoBoundary, all bool) (*Choice, error) {
	c := &Choice{}
	var why []string
	for _, cand := range cands {
		if c.Driver != nil && !all {
			c.Reports = append(c.Reports, Report{Name: cand.Name, Detail: "not tried: " + c.Name + " was chosen first"})
			continue
		}
		drv, detail, err := cand.Probe(ctx)
		r := Report{Name: cand.Name, Works: err == nil, Detail: detail}
		if err != nil {
			r.Detail = err.Error()
			why = append(why, cand.Name+": "+err.Error())
		}
		if err == nil && !cand.Boundary {
			r.Detail += " (not a security boundary"
			if !allowNoBoundary {
				r.Detail += "; set CODEBENCH_ALLOW_TCG=1 to use it for development)"
				why = append(why, cand.Name+": not a security boundary, not allowed")
			} else {
				r.Detail += "; allowed by CODEBENCH_ALLOW_TCG)"
			}
		}
		if err == nil && c.Driver == nil && (cand.Boundary || allowNoBoundary) {
			r.Chosen = true
			c.Driver, c.Name, c.Detail = drv, cand.Name, r.Detail
		}
		c.Reports = append(c.Reports, r)
	}
	if c.Driver == nil {
		return c, fmt.Errorf("%w: %s", ErrNone, strings.Join(why, "; "))
	}
	return c, nil
}
