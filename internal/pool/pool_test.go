package pool

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeMember struct {
	id      int
	healthy atomic.Bool
	stopped atomic.Bool
	// stopBlock, when set, makes Stop wait for it (a VMM slow to die).
	stopBlock chan struct{}
}

func (m *fakeMember) Healthy(context.Context) error {
	if !m.healthy.Load() {
		return errors.New("dead")
	}
	return nil
}

func (m *fakeMember) Stop(context.Context) error {
	if m.stopped.Swap(true) {
		panic("stopped twice")
	}
	if m.stopBlock != nil {
		<-m.stopBlock
	}
	return nil
}

// fakeFactory boots members instantly unless told to block or fail.
type fakeFactory struct {
	mu       sync.Mutex
	made     []*fakeMember
	inFlight int
	maxSeen  int
	fail     bool
	block    chan struct{} // when set, boots wait on it
}

func (f *fakeFactory) boot(ctx context.Context) (*fakeMember, error) {
	f.mu.Lock()
	f.inFlight++
	f.maxSeen = max(f.maxSeen, f.inFlight)
	block, fail := f.block, f.fail
	f.mu.Unlock()
	defer func() { f.mu.Lock(); f.inFlight--; f.mu.Unlock() }()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if fail {
		return nil, errors.New("boot failed")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m := &fakeMember{id: len(f.made)}
	m.healthy.Store(true)
	f.made = append(f.made, m)
	return m, nil
}

func (f *fakeFactory) members() []*fakeMember {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*fakeMember(nil), f.made...)
}

// fakeClock fires After channels only when the test says so.
type fakeClock struct {
	mu      sync.Mutex
	waiting []chan time.Time
	asked   []time.Duration
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiting = append(c.waiting, ch)
	c.asked = append(c.asked, d)
	return ch
}

func (c *fakeClock) fireAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range c.waiting {
		ch <- time.Time{}
	}
	c.waiting = nil
}

func (c *fakeClock) durations() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.asked...)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// eventually polls cond; the pool works in goroutines, but no test waits on
// a timer of the pool's.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFillsToSizeWithBoundedBoots(t *testing.T) {
	f := &fakeFactory{block: make(chan struct{})}
	p := New(Config{Size: 4, MaxBoots: 2}, f.boot, quiet, &fakeClock{})
	p.Start()
	defer p.Stop()
	eventually(t, "2 boots in flight", func() bool { return p.Stats().Booting == 2 })
	close(f.block)
	eventually(t, "4 ready", func() bool { return p.Stats().Ready == 4 })
	if f.maxSeen > 2 {
		t.Fatalf("%d boots at once, limit 2", f.maxSeen)
	}
	if n := len(f.members()); n != 4 {
		t.Fatalf("booted %d members for a pool of 4", n)
	}
}

func TestTakeNeverHandsOutTwiceAndRefills(t *testing.T) {
	f := &fakeFactory{}
	p := New(Config{Size: 2, MaxBoots: 2}, f.boot, quiet, &fakeClock{})
	p.Start()
	defer p.Stop()
	seen := map[*fakeMember]bool{}
	for range 10 {
		m, err := p.Take(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if seen[m] {
			t.Fatalf("member %d handed out twice", m.id)
		}
		seen[m] = true
	}
	eventually(t, "refilled", func() bool { return p.Stats().Ready == 2 })
}

func TestUnhealthyMemberIsReplaced(t *testing.T) {
	f := &fakeFactory{}
	p := New(Config{Size: 1, MaxBoots: 1}, f.boot, quiet, &fakeClock{})
	p.Start()
	defer p.Stop()
	eventually(t, "ready", func() bool { return p.Stats().Ready == 1 })
	first := f.members()[0]
	first.healthy.Store(false)
	m, err := p.Take(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if m == first || p.Stats().Unhealthy != 1 {
		t.Fatalf("got member %d; %d unhealthy", m.id, p.Stats().Unhealthy)
	}
	eventually(t, "the unhealthy member stopped", first.stopped.Load)
}

// TestUnhealthyMemberIsStoppedOffTheTakersPath: the taker (holding a job's
// slot) gets the next healthy member while the unhealthy one is still
// stopping; Stop waits for that stop.
func TestUnhealthyMemberIsStoppedOffTheTakersPath(t *testing.T) {
	f := &fakeFactory{}
	p := New(Config{Size: 2, MaxBoots: 2}, f.boot, quiet, &fakeClock{})
	p.Start()
	eventually(t, "ready", func() bool { return p.Stats().Ready == 2 })
	release := make(chan struct{})
	for _, m := range f.members() {
		m.healthy.Store(false) // whichever comes first is unhealthy
		m.stopBlock = release
	}
	got := make(chan *fakeMember, 1)
	go func() {
		m, err := p.Take(context.Background())
		if err != nil {
			t.Error(err)
		}
		got <- m
	}()
	eventually(t, "an unhealthy member stopping", func() bool { return p.Stats().Unhealthy >= 1 })
	// A healthy replacement: the taker must not be waiting on the stop.
	eventually(t, "a replacement booted", func() bool { return len(f.members()) >= 3 })
	select {
	case m := <-got:
		if !m.healthy.Load() {
			t.Fatalf("handed out unhealthy member %d", m.id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Take waited for an unhealthy member's stop")
	}
	stopped := make(chan struct{})
	go func() { p.Stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("Stop returned while a member was still stopping")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-stopped
}

func TestTakeHonoursCancellation(t *testing.T) {
	f := &fakeFactory{block: make(chan struct{})}
	p := New(Config{Size: 1, MaxBoots: 1}, f.boot, quiet, &fakeClock{})
	p.Start()
	defer p.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.Take(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	close(f.block)
}

func TestBootFailureBacksOffOnTheClock(t *testing.T) {
	f := &fakeFactory{fail: true}
	clock := &fakeClock{}
	p := New(Config{Size: 1, MaxBoots: 1, Backoff: time.Second, MaxBackoff: 4 * time.Second}, f.boot, quiet, clock)
	p.Start()
	defer p.Stop()
	eventually(t, "first backoff", func() bool { return len(clock.durations()) == 1 })
	// No boot while the backoff has not elapsed.
	time.Sleep(10 * time.Millisecond)
	if got := p.Stats().BootFailures; got != 1 {
		t.Fatalf("%d failures before the backoff elapsed", got)
	}
	clock.fireAll()
	eventually(t, "second backoff", func() bool { return len(clock.durations()) == 2 })
	clock.fireAll()
	eventually(t, "third backoff", func() bool { return len(clock.durations()) == 3 })
	clock.fireAll()
	eventually(t, "fourth backoff", func() bool { return len(clock.durations()) == 4 })
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}
	for i, d := range clock.durations() {
		if d != want[i] {
			t.Fatalf("backoffs %v, want %v", clock.durations(), want)
		}
	}
	// Recovery: the next boot succeeds and fills the pool.
	f.mu.Lock()
	f.fail = false
	f.mu.Unlock()
	clock.fireAll()
	eventually(t, "recovered", func() bool { return p.Stats().Ready == 1 })
}

func TestStopStopsEverything(t *testing.T) {
	f := &fakeFactory{}
	p := New(Config{Size: 3, MaxBoots: 3}, f.boot, quiet, &fakeClock{})
	p.Start()
	eventually(t, "ready", func() bool { return p.Stats().Ready == 3 })
	taken, err := p.Take(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p.Stop()
	for _, m := range f.members() {
		if m != taken && !m.stopped.Load() {
			t.Fatalf("member %d leaked", m.id)
		}
	}
	if taken.stopped.Load() {
		t.Fatal("pool stopped a member it had handed out")
	}
	if _, err := p.Take(context.Background()); !errors.Is(err, ErrStopped) {
		t.Fatalf("Take after Stop: %v", err)
	}
}

func TestStopCancelsBootsInFlight(t *testing.T) {
	f := &fakeFactory{block: make(chan struct{})}
	p := New(Config{Size: 2, MaxBoots: 2}, f.boot, quiet, &fakeClock{})
	p.Start()
	eventually(t, "booting", func() bool { return p.Stats().Booting == 2 })
	done := make(chan struct{})
	go func() { p.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not cancel boots in flight")
	}
}

func TestSizeZeroBootsOnDemand(t *testing.T) {
	f := &fakeFactory{}
	p := New(Config{Size: 0}, f.boot, quiet, &fakeClock{})
	p.Start()
	defer p.Stop()
	if _, err := p.Take(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(f.members()) != 1 {
		t.Fatal("no on-demand boot")
	}
}

func TestReadyOnceAMemberIs(t *testing.T) {
	f := &fakeFactory{block: make(chan struct{})}
	p := New(Config{Size: 2, MaxBoots: 2}, f.boot, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	p.Start()
	defer p.Stop()
	select {
	case <-p.Ready():
		t.Fatal("ready before any member booted")
	case <-time.After(50 * time.Millisecond):
	}
	close(f.block)
	select {
	case <-p.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("not ready after members booted")
	}
	onDemand := New(Config{Size: 0}, f.boot, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	onDemand.Start()
	defer onDemand.Stop()
	select {
	case <-onDemand.Ready():
	default:
		t.Fatal("a pool that boots on demand is ready at once")
	}
}
