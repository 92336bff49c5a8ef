// Package pool keeps warm sandboxes ready: N members booted ahead of demand,
// refilled in the background with bounded concurrency, health-checked before
// they are handed out, and each handed out at most once.
package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/codebench/codebench/internal/cleanup"
)

// ErrStopped is returned by Take after Stop.
var ErrStopped = errors.New("pool: stopped")

// Member is what the pool holds: a booted sandbox.
type Member interface {
	// Healthy checks the member still answers (an agent ping).
	Healthy(ctx context.Context) error
	// Stop destroys it for good.
	Stop(ctx context.Context) error
}

// Factory boots one member. ctx is the pool's lifetime: it is cancelled by
// Stop.
type Factory[T Member] func(ctx context.Context) (T, error)

// Clock is the time the pool sees; tests inject a fake one.
type Clock interface {
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config sizes the pool.
type Config struct {
	Size          int           // members kept ready
	MaxBoots      int           // boots in flight at once
	HealthTimeout time.Duration // per health check
	// Backoff after a failed boot, doubling up to MaxBackoff, so a broken
	// image does not become a boot loop.
	Backoff, MaxBackoff time.Duration
}

// Stats is a snapshot for logs and tests.
type Stats struct {
	Ready, Booting, Taken, Stopped, BootFailures, Unhealthy int
}

// Pool is a warm pool. Create with New, start with Start, end with Stop.
type Pool[T Member] struct {
	cfg     Config
	factory Factory[T]
	log     *slog.Logger
	clock   Clock

	ready chan T
	wake  chan struct{}

	mu      sync.Mutex // guards booting, stats, backoff, paused
	booting int
	stats   Stats
	backoff time.Duration // last delay after a failed boot; 0 after a success
	paused  bool          // no boots until the backoff elapsed

	ctx    context.Context // the pool's lifetime, for boots; ended by Stop
	cancel context.CancelFunc
	wg     sync.WaitGroup // the refill loop, every boot and every stop off a taker's path
	// ending is set (under mu) by Stop before it waits on wg: no
	// goroutine is added to wg after that.
	ending bool
	closed chan struct{}
	once   sync.Once

	readyOnce sync.Once
	readyCh   chan struct{} // closed when the pool can first serve
}

// New makes a pool; nothing boots until Start.
func New[T Member](cfg Config, factory Factory[T], log *slog.Logger, clock Clock) *Pool[T] {
	if cfg.MaxBoots < 1 {
		cfg.MaxBoots = 1
	}
	if cfg.HealthTimeout == 0 {
		cfg.HealthTimeout = 5 * time.Second
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = time.Second
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if clock == nil {
		clock = realClock{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Pool[T]{
		cfg: cfg, factory: factory, log: log, clock: clock,
		ready:   make(chan T, max(cfg.Size, 1)),
		wake:    make(chan struct{}, 1),
		ctx:     ctx,
		cancel:  cancel,
		closed:  make(chan struct{}),
		readyCh: make(chan struct{}),
	}
}

// Ready is closed once the pool can serve: a member is ready, or the pool
// boots on demand (Size 0).
func (p *Pool[T]) Ready() <-chan struct{} { return p.readyCh }

func (p *Pool[T]) markReady() { p.readyOnce.Do(func() { close(p.readyCh) }) }

// Start launches the refill loop.
func (p *Pool[T]) Start() {
	if p.cfg.Size == 0 {
		p.markReady()
	}
	p.wg.Add(1)
	go p.refill()
	p.poke()
}

func (p *Pool[T]) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// refill keeps ready+booting at Size, at most MaxBoots booting at once.
func (p *Pool[T]) refill() {
	defer p.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.wake:
		}
		for {
			p.mu.Lock()
			need := p.cfg.Size - len(p.ready) - p.booting
			canBoot := p.booting < p.cfg.MaxBoots
			paused := p.paused
			if need > 0 && canBoot && !paused {
				p.booting++
			}
			p.mu.Unlock()
			if need <= 0 || !canBoot || paused {
				break
			}
			p.wg.Add(1)
			go p.boot()
		}
	}
}

// waitBackoff lifts the pause after d, off the refill loop.
func (p *Pool[T]) waitBackoff(d time.Duration) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		select {
		case <-p.clock.After(d):
		case <-p.ctx.Done():
			return
		}
		p.mu.Lock()
		p.paused = false
		p.mu.Unlock()
		p.poke()
	}()
}

func (p *Pool[T]) boot() {
	defer p.wg.Done()
	m, err := p.factory(p.ctx)
	p.mu.Lock()
	if err != nil {
		p.booting--
		p.stats.BootFailures++
		next := p.cfg.Backoff
		if p.backoff > 0 {
			next = min(p.backoff*2, p.cfg.MaxBackoff)
		}
		p.backoff = next
		first := !p.paused
		p.paused = true
		p.mu.Unlock()
		if p.ctx.Err() == nil {
			p.log.Error("pool: boot failed", "err", err, "retry_in", next)
		}
		if first {
			p.waitBackoff(next)
		}
		return
	}
	p.backoff = 0
	p.mu.Unlock()
	// Still counted as booting until it is in ready: the refill loop
	// would otherwise see room for one more in between and over-boot.
	select {
	case p.ready <- m:
		p.markReady()
	default:
		// Cannot happen while ready+booting <= Size; stop rather than leak.
		p.stopMember(m)
	}
	p.mu.Lock()
	p.booting--
	p.mu.Unlock()
	p.poke()
}

func (p *Pool[T]) stopMember(m T) {
	ctx, cancel := cleanup.Detached(p.ctx, cleanup.DefaultBound)
	defer cancel()
	if err := m.Stop(ctx); err != nil {
		p.log.Warn("pool: stop member", "err", err)
	}
	p.mu.Lock()
	p.stats.Stopped++
	p.mu.Unlock()
}

// stopAside stops m off the caller's path (a taker holds a job's slot),
// in a goroutine the pool owns and Stop waits for; once the pool is ending,
// on the caller's.
func (p *Pool[T]) stopAside(m T) {
	p.mu.Lock()
	if p.ending {
		p.mu.Unlock()
		p.stopMember(m)
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		p.stopMember(m)
	}()
}

// Take returns a healthy member, never handed out before. With Size 0 it
// boots one on demand. The caller owns it and must Stop it.
func (p *Pool[T]) Take(ctx context.Context) (T, error) {
	var zero T
	for {
		if p.cfg.Size == 0 {
			return p.bootNow(ctx)
		}
		select {
		case <-p.closed:
			return zero, ErrStopped
		case <-ctx.Done():
			return zero, fmt.Errorf("pool: waiting for a sandbox: %w", ctx.Err())
		case m := <-p.ready:
			p.poke()
			hctx, cancel := context.WithTimeout(ctx, p.cfg.HealthTimeout)
			err := m.Healthy(hctx)
			cancel()
			if err != nil {
				p.log.Warn("pool: unhealthy member replaced", "err", err)
				p.mu.Lock()
				p.stats.Unhealthy++
				p.mu.Unlock()
				p.stopAside(m)
				continue
			}
			p.mu.Lock()
			p.stats.Taken++
			p.mu.Unlock()
			return m, nil
		}
	}
}

func (p *Pool[T]) bootNow(ctx context.Context) (T, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()
	m, err := p.factory(ctx)
	if err == nil {
		p.mu.Lock()
		p.stats.Taken++
		p.mu.Unlock()
	}
	return m, err
}

// Stats returns counters.
func (p *Pool[T]) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Ready = len(p.ready)
	s.Booting = p.booting
	return s
}

// Stop stops refilling, cancels boots in flight, waits for them, and stops
// every ready member. Members already taken are their holders' to stop.
func (p *Pool[T]) Stop() {
	p.once.Do(func() {
		close(p.closed)
		p.cancel()
		p.mu.Lock()
		p.ending = true
		p.mu.Unlock()
		p.wg.Wait()
		p.drain()
	})
}

func (p *Pool[T]) drain() {
	for {
		select {
		case m := <-p.ready:
			p.stopMember(m)
		default:
			return
		}
	}
}
