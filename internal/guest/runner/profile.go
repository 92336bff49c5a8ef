package runner

import (
	"context"
	"sync"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
)

// profiler sums the time of a request's steps (RunRequest.Profile): the
// benchmark's anatomy of a run. A nil profiler records nothing; the steps'
// names are the runner's own, a fixed set.
type profiler struct {
	mu    sync.Mutex // phases run concurrently with an interactor
	start time.Time
	p     agentproto.Profile
}

type profilerKey struct{}

// withProfiler returns ctx carrying a new profiler when asked for.
func withProfiler(ctx context.Context, on bool) (context.Context, *profiler) {
	if !on {
		return ctx, nil
	}
	p := &profiler{start: time.Now(), p: agentproto.Profile{StepsUS: map[string]int64{}, Counts: map[string]int{}}}
	return context.WithValue(ctx, profilerKey{}, p), p
}

func profilerOf(ctx context.Context) *profiler {
	p, _ := ctx.Value(profilerKey{}).(*profiler)
	return p
}

// step adds the time since since to name's and returns now, for the next
// step to start from.
func (p *profiler) step(name string, since time.Time) time.Time {
	now := time.Now()
	if p == nil {
		return now
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.StepsUS[name] += now.Sub(since).Microseconds()
	p.p.Counts[name]++
	return now
}

// testStarts records that a test starts now.
func (p *profiler) testStarts() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.p.TestStartsUS) < agentproto.MaxTests {
		p.p.TestStartsUS = append(p.p.TestStartsUS, time.Since(p.start).Microseconds())
	}
}

// result is the profile, nil without a profiler.
func (p *profiler) result() *agentproto.Profile {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.p
	return &out
}
