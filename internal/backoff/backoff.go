// Package backoff paces a redial loop: exponential delays with jitter, up
// to a maximum, so that many clients of one broker that lost it do not
// come back in step. The worker and the API both redial with it.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is one loop's pacing; the zero value is not usable (New).
type Backoff struct {
	initial, max time.Duration
	after        func(time.Duration) <-chan time.Time
	next         time.Duration
}

// New paces from initial, doubling up to max; after is the clock's
// time.After (nil: the real one).
func New(initial, max time.Duration, after func(time.Duration) <-chan time.Time) *Backoff {
	if after == nil {
		after = time.After
	}
	if max < initial { // a max under initial is initial
		max = initial
	}
	return &Backoff{initial: initial, max: max, after: after, next: initial}
}

// Next is the next delay: half the current step plus a random part of
// the other half; the step then doubles, up to max.
func (b *Backoff) Next() time.Duration {
	d := b.next/2 + rand.N(b.next/2+1)
	b.next = min(b.next*2, b.max)
	return d
}

// Wait waits the next delay: false when ctx ended first.
func (b *Backoff) Wait(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-b.after(d):
		return true
	}
}

// Reset starts again from the initial step (after a success).
func (b *Backoff) Reset() { b.next = b.initial }
