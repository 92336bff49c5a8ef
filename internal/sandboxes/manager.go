// Package sandboxes keeps long-lived sandboxes: each is a warm pool's
// sandbox handed to envd (agentproto.OpEnvd), reached through a
// sandboxlink, with an id, an access token, metadata, a deadline the client
// extends, and an owner (the API key that made it). Pause checkpoints the
// whole sandbox to disk and frees its memory; resume restores it, processes
// and all. Paused sandboxes are kept on disk and outlive the host process;
// running ones are paused when the host stops, and what a killed host left
// running is reclaimed at the next start. internal/e2b speaks the E2B API
// over it.
package sandboxes

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/codebench/codebench/internal/agentclient"
	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/cleanup"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/sandboxlink"
)

// Errors the API maps to its statuses.
var (
	ErrNotFound      = errors.New("sandboxes: no such sandbox")
	ErrAlreadyPaused = errors.New("sandboxes: already paused")
	ErrNotRunning    = errors.New("sandboxes: not running")
	ErrQuota         = errors.New("sandboxes: over the key's quota")
	ErrFull          = errors.New("sandboxes: this host has no room for another sandbox")
	ErrBadToken      = errors.New("sandboxes: wrong access token")
	ErrBadRequest    = errors.New("sandboxes: bad request")
)

// States.
const (
	StateRunning = "running"
	StatePaused  = "paused"
	stateBusy    = "creating"
)

// Agent is what the manager asks of a warm sandbox's agent
// (agentclient.Client): to hand the channel to envd.
type Agent interface {
	Envd(ctx context.Context, req *agentproto.Envd) error
}

var _ Agent = (*agentclient.Client)(nil)

// Warm is a sandbox from the warm pool: its VM, its agent, and how to give
// it back for good.
type Warm struct {
	VM    sandbox.VM
	Agent Agent
	Stop  func(context.Context) error
}

// Config is the manager's wiring and limits.
type Config struct {
	Dir    string // records and checkpoints
	Spec   sandbox.Spec
	Pauser sandbox.Pauser // nil: pause is refused
	Take   func(ctx context.Context) (Warm, error)
	// Limits (config.Sandboxes).
	Max, MaxRunning                    int
	KeyRunning, KeyPaused, KeyMemoryMB int
	HomeMB                             int
	DefaultTimeout, MaxTimeout         time.Duration
	Now                                func() time.Time
	// Usage reads a running sandbox's CPU time and memory as the host
	// charges them (its host cgroup); nil: no metrics.
	Usage func(vmID string) (cpu time.Duration, memBytes int64, err error)
}

// Record is what is kept of a sandbox on disk (0600: it holds the token).
type Record struct {
	ID         string            `json:"id"`
	TemplateID string            `json:"template_id"`
	Token      string            `json:"token"`
	Owner      string            `json:"owner"` // sha256 of the API key
	Metadata   map[string]string `json:"metadata,omitempty"`
	Envs       map[string]string `json:"envs,omitempty"`
	StartedAt  time.Time         `json:"started_at"`
	EndAt      time.Time         `json:"end_at"`
	State      string            `json:"state"`
	AutoPause  bool              `json:"auto_pause,omitempty"`
	MemoryMB   int               `json:"memory_mb"`
	VCPUs      int               `json:"vcpus"`
	RootDir    string            `json:"root_dir"`
	Epoch      uint32            `json:"epoch"`
}

// Info is a sandbox as the API shows it.
type Info = Record

type box struct {
	op  sync.Mutex // one lifecycle step at a time
	rec Record     // guarded by Manager.mu

	// lastCPU is the CPU time read at lastAt (metrics: the share of the
	// CPU used since the last reading); guarded by Manager.mu.
	lastCPU time.Duration
	lastAt  time.Time

	// while running (guarded by op, read under Manager.mu)
	vm        sandbox.VM
	stop      func(context.Context) error
	link      *sandboxlink.Link
	transport *http.Transport
}

// Manager keeps the sandboxes of this host.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	boxes map[string]*box

	quit chan struct{}
	done chan struct{}
}

// Owner is how a key is kept: its hash.
func Owner(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// New loads the paused sandboxes kept in cfg.Dir; what else is there (a
// sandbox that was running when its host was killed, a half-made one) is
// removed, and counted in reclaimed.
func New(cfg Config, log *slog.Logger) (m *Manager, reclaimed []string, err error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, nil, err
	}
	m = &Manager{cfg: cfg, log: log, boxes: map[string]*box{}}
	entries, err := os.ReadDir(cfg.Dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		dir := filepath.Join(cfg.Dir, e.Name())
		rec, err := readRecord(dir)
		if err == nil && rec.State == StatePaused && rec.ID == e.Name() && exists(filepath.Join(dir, "checkpoint")) {
			m.boxes[rec.ID] = &box{rec: rec}
			continue
		}
		reclaimed = append(reclaimed, e.Name())
		if err := os.RemoveAll(dir); err != nil {
			log.Warn("sandboxes: remove a leftover", "dir", dir, "err", err)
		}
	}
	return m, reclaimed, nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func readRecord(dir string) (Record, error) {
	var r Record
	b, err := os.ReadFile(filepath.Join(dir, "record.json"))
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

func (m *Manager) save(rec Record) error {
	dir := filepath.Join(m.cfg.Dir, rec.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "record.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "record.json"))
}

// Start starts the reaper: sandboxes past their deadline are killed (or
// paused, if they asked for it), and dead ones forgotten.
func (m *Manager) Start() {
	m.quit, m.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(m.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-m.quit:
				return
			case <-t.C:
				m.reap()
			}
		}
	}()
}

func (m *Manager) reap() {
	now := m.cfg.Now()
	type due struct {
		id    string
		pause bool
		dead  bool
	}
	var list []due
	m.mu.Lock()
	for id, b := range m.boxes {
		if b.rec.State != StateRunning {
			continue
		}
		if b.vm != nil && sandbox.IsDone(b.vm.Done()) {
			list = append(list, due{id: id, dead: true})
		} else if now.After(b.rec.EndAt) {
			list = append(list, due{id: id, pause: b.rec.AutoPause && m.cfg.Pauser != nil})
		}
	}
	m.mu.Unlock()
	for _, d := range list {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var err error
		switch {
		case d.dead:
			m.log.Warn("sandbox ended on its own (out of memory, or its processes crashed it)", "sandbox_id", d.id)
			err = m.kill(ctx, d.id, "")
		case d.pause:
			m.log.Info("sandbox timed out: paused (auto-pause)", "sandbox_id", d.id)
			if err = m.pause(ctx, d.id, "", true); errors.Is(err, ErrQuota) {
				m.log.Info("sandbox timed out: killed, its key keeps the most paused sandboxes it may", "sandbox_id", d.id)
				err = m.kill(ctx, d.id, "")
			}
		default:
			m.log.Info("sandbox timed out: killed", "sandbox_id", d.id)
			err = m.kill(ctx, d.id, "")
		}
		cancel()
		if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrAlreadyPaused) {
			m.log.Warn("sandbox timeout", "sandbox_id", d.id, "err", err)
		}
	}
}

// Close stops the reaper, then pauses every running sandbox so that it
// outlives this process (kills it where the driver cannot pause).
func (m *Manager) Close(ctx context.Context) {
	if m.quit != nil {
		close(m.quit)
		<-m.done
	}
	m.mu.Lock()
	var ids []string
	for id, b := range m.boxes {
		if b.rec.State == StateRunning {
			ids = append(ids, id)
		}
	}
	m.mu.Unlock()
	for _, id := range ids {
		var err error
		if m.cfg.Pauser != nil {
			err = m.pause(ctx, id, "", false)
		}
		if m.cfg.Pauser == nil || err != nil {
			if err != nil {
				m.log.Warn("sandbox could not be paused at shutdown: killed", "sandbox_id", id, "err", err)
			}
			_ = m.kill(ctx, id, "")
		}
	}
}

// CreateRequest is what a client asks for.
type CreateRequest struct {
	TemplateID string
	Metadata   map[string]string
	Envs       map[string]string
	Timeout    time.Duration // 0: the default
	AutoPause  bool
}

func newID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

func newToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (m *Manager) clampTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return m.cfg.DefaultTimeout
	}
	return min(d, m.cfg.MaxTimeout)
}

// admit checks the host's and the owner's limits for one more running
// sandbox (and, for a new one, one more sandbox); m.mu is held.
func (m *Manager) admit(owner string, fresh bool) error {
	total, running, keyRunning, keyMem := 0, 0, 0, 0
	for _, b := range m.boxes {
		total++
		if b.rec.State == StatePaused {
			continue
		}
		running++
		if b.rec.Owner == owner {
			keyRunning++
			keyMem += b.rec.MemoryMB
		}
	}
	switch {
	case fresh && total >= m.cfg.Max:
		return fmt.Errorf("%w: %d sandboxes kept (CODEBENCH_SANDBOXES_MAX)", ErrFull, total)
	case running >= m.cfg.MaxRunning:
		return fmt.Errorf("%w: %d sandboxes running (CODEBENCH_SANDBOXES_MAX_RUNNING)", ErrFull, running)
	case keyRunning >= m.cfg.KeyRunning:
		return fmt.Errorf("%w: %d sandboxes running for this API key, the most it may run", ErrQuota, keyRunning)
	case keyMem+m.cfg.Spec.MemoryMB > m.cfg.KeyMemoryMB:
		return fmt.Errorf("%w: %d MiB of sandboxes running for this API key; another would pass its %d MiB", ErrQuota, keyMem, m.cfg.KeyMemoryMB)
	}
	return nil
}

// Create makes a sandbox from the warm pool.
func (m *Manager) Create(ctx context.Context, key string, req CreateRequest) (Info, error) {
	if err := agentproto.CheckEnvs(req.Envs); err != nil {
		return Info{}, fmt.Errorf("%w: envVars: %w", ErrBadRequest, err)
	}
	if err := checkMetadata(req.Metadata); err != nil {
		return Info{}, err
	}
	now := m.cfg.Now()
	rec := Record{ID: newID(), TemplateID: req.TemplateID, Token: newToken(), Owner: Owner(key), Metadata: req.Metadata,
		Envs: req.Envs, StartedAt: now, EndAt: now.Add(m.clampTimeout(req.Timeout)), State: stateBusy, AutoPause: req.AutoPause,
		MemoryMB: m.cfg.Spec.MemoryMB, VCPUs: max(m.cfg.Spec.VCPUs, 1), RootDir: m.cfg.Spec.RootDir, Epoch: 1}
	b := &box{rec: rec}
	b.op.Lock()
	defer b.op.Unlock()
	m.mu.Lock()
	if err := m.admit(rec.Owner, true); err != nil {
		m.mu.Unlock()
		return Info{}, err
	}
	m.boxes[rec.ID] = b
	m.mu.Unlock()

	var stack cleanup.Stack
	fail := func(err error) (Info, error) {
		uctx, cancel := cleanup.Detached(ctx, cleanup.DefaultBound)
		defer cancel()
		err = errors.Join(err, stack.Unwind(uctx))
		m.mu.Lock()
		delete(m.boxes, rec.ID)
		m.mu.Unlock()
		_ = os.RemoveAll(filepath.Join(m.cfg.Dir, rec.ID))
		return Info{}, err
	}
	w, err := m.cfg.Take(ctx)
	if err != nil {
		return fail(fmt.Errorf("sandboxes: a warm sandbox: %w", err))
	}
	stack.Push("stop the sandbox", w.Stop)
	if err := w.Agent.Envd(ctx, &agentproto.Envd{Envs: req.Envs, HomeMB: m.cfg.HomeMB}); err != nil {
		return fail(fmt.Errorf("sandboxes: start envd: %w", err))
	}
	if err := m.attach(ctx, b, w.VM, w.Stop, rec.Epoch); err != nil {
		return fail(err)
	}
	stack.Push("close the link", func(context.Context) error { return b.link.Close() })
	m.mu.Lock()
	b.rec.State = StateRunning
	rec = b.rec
	m.mu.Unlock()
	if err := m.save(rec); err != nil {
		return fail(fmt.Errorf("sandboxes: keep the record: %w", err))
	}
	m.log.Info("sandbox created", "sandbox_id", rec.ID, "vm_id", w.VM.ID())
	return rec, nil
}

// attach dials the sandbox's link for epoch; b.op is held.
func (m *Manager) attach(ctx context.Context, b *box, vm sandbox.VM, stop func(context.Context) error, epoch uint32) error {
	ch, err := vm.DialAgent(ctx)
	if err != nil {
		return fmt.Errorf("sandboxes: dial the sandbox: %w", err)
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	link, err := sandboxlink.Dial(lctx, ch, epoch)
	if err != nil {
		return err
	}
	tr := &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return link.Open(ctx) },
		MaxIdleConnsPerHost: 32, IdleConnTimeout: 60 * time.Second, DisableCompression: true,
		// Streams in flight per sandbox: more wait for one to end.
		MaxConnsPerHost: maxStreams,
	}
	var cpu time.Duration
	if m.cfg.Usage != nil {
		cpu, _, _ = m.cfg.Usage(vm.ID())
	}
	m.mu.Lock()
	b.vm, b.stop, b.link, b.transport = vm, stop, link, tr
	b.lastCPU, b.lastAt = cpu, m.cfg.Now()
	m.mu.Unlock()
	return nil
}

// maxStreams bounds a sandbox's data-plane streams at once (each is an
// HTTP connection through its link; the SDK pools 200).
const maxStreams = 200

const (
	maxMetadata      = 64
	maxMetadataBytes = 16 << 10
)

func checkMetadata(md map[string]string) error {
	total := 0
	for k, v := range md {
		total += len(k) + len(v)
	}
	if len(md) > maxMetadata || total > maxMetadataBytes {
		return fmt.Errorf("%w: metadata of %d entries and %d bytes: at most %d and %d", ErrBadRequest, len(md), total, maxMetadata, maxMetadataBytes)
	}
	return nil
}

// get finds owner's sandbox (another owner's is not found); owner ""
// is the host itself.
func (m *Manager) get(id, owner string) (*box, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.boxes[id]
	if !ok || b.rec.State == stateBusy || (owner != "" && b.rec.Owner != owner) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return b, nil
}

// acquire finds owner's sandbox and takes its lifecycle lock; the sandbox
// is checked again once the lock is held (a kill may have come first).
// The caller runs release.
func (m *Manager) acquire(id, owner string) (b *box, release func(), err error) {
	if b, err = m.get(id, owner); err != nil {
		return nil, nil, err
	}
	b.op.Lock()
	m.mu.Lock()
	current := m.boxes[id] == b
	m.mu.Unlock()
	if !current {
		b.op.Unlock()
		return nil, nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return b, b.op.Unlock, nil
}

// Get returns key's sandbox id.
func (m *Manager) Get(key, id string) (Info, error) {
	b, err := m.get(id, Owner(key))
	if err != nil {
		return Info{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return b.rec, nil
}

// Filter selects sandboxes to list.
type Filter struct {
	Metadata map[string]string
	States   []string // empty: all
}

// List returns key's sandboxes that pass f, oldest first.
func (m *Manager) List(key string, f Filter) []Info {
	owner := Owner(key)
	m.mu.Lock()
	var out []Info
	for _, b := range m.boxes {
		r := b.rec
		if r.Owner != owner || r.State == stateBusy {
			continue
		}
		if len(f.States) > 0 && !contains(f.States, r.State) {
			continue
		}
		ok := true
		for k, v := range f.Metadata {
			if r.Metadata[k] != v {
				ok = false
			}
		}
		if ok {
			out = append(out, r)
		}
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StartedAt.Equal(out[j].StartedAt) {
			return out[i].StartedAt.Before(out[j].StartedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// SetTimeout sets the sandbox's deadline to now plus d (E2B's semantics:
// it may shorten it too).
func (m *Manager) SetTimeout(key, id string, d time.Duration) error {
	b, err := m.get(id, Owner(key))
	if err != nil {
		return err
	}
	m.mu.Lock()
	b.rec.EndAt = m.cfg.Now().Add(m.clampTimeout(d))
	rec := b.rec
	m.mu.Unlock()
	return m.save(rec)
}

// Kill destroys the sandbox, running or paused.
func (m *Manager) Kill(ctx context.Context, key, id string) error {
	return m.kill(ctx, id, Owner(key))
}

func (m *Manager) kill(ctx context.Context, id, owner string) error {
	b, release, err := m.acquire(id, owner)
	if err != nil {
		return err
	}
	defer release()
	m.mu.Lock()
	delete(m.boxes, id)
	m.mu.Unlock()
	var errs []error
	if b.link != nil {
		b.transport.CloseIdleConnections()
		errs = append(errs, b.link.Close())
	}
	if b.stop != nil {
		errs = append(errs, b.stop(ctx))
	}
	errs = append(errs, os.RemoveAll(filepath.Join(m.cfg.Dir, id)))
	m.log.Info("sandbox killed", "sandbox_id", id)
	return errors.Join(errs...)
}

// Pause checkpoints the sandbox to disk and ends its processes on the
// host; ErrAlreadyPaused if it is paused.
func (m *Manager) Pause(ctx context.Context, key, id string) error {
	return m.pause(ctx, id, Owner(key), true)
}

// pause pauses id (owner's, or any for ""); with quota, not beyond its
// owner's paused sandboxes (a shutdown's pause is the host's, not the
// owner's, and keeps the sandbox whatever the count).
func (m *Manager) pause(ctx context.Context, id, owner string, quota bool) error {
	if m.cfg.Pauser == nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, sandbox.ErrNoPause)
	}
	b, release, err := m.acquire(id, owner)
	if err != nil {
		return err
	}
	defer release()
	m.mu.Lock()
	state := b.rec.State
	paused := 0
	for _, o := range m.boxes {
		if o.rec.Owner == b.rec.Owner && o.rec.State == StatePaused {
			paused++
		}
	}
	m.mu.Unlock()
	if state == StatePaused {
		return ErrAlreadyPaused
	}
	if quota && paused >= m.cfg.KeyPaused {
		return fmt.Errorf("%w: %d paused sandboxes for this API key, the most it may keep", ErrQuota, paused)
	}
	if state != StateRunning || b.link == nil {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	dir := filepath.Join(m.cfg.Dir, id, "checkpoint")
	t0 := time.Now()
	if err := errors.Join(os.RemoveAll(dir), os.MkdirAll(dir, 0o700)); err != nil {
		return fmt.Errorf("sandboxes: pause %s: %w", id, err)
	}
	b.transport.CloseIdleConnections()
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = b.link.Quiesce(qctx)
	cancel()
	if err == nil {
		err = m.cfg.Pauser.Checkpoint(ctx, b.vm, dir)
	}
	if err != nil {
		return m.pauseFailed(ctx, b, dir, err)
	}
	_ = b.link.Close()
	stopErr := b.stop(ctx) // what the pool's member holds besides the VM
	if stopErr != nil {
		m.log.Warn("sandboxes: after a pause", "sandbox_id", id, "err", stopErr)
	}
	m.mu.Lock()
	b.vm, b.stop, b.link, b.transport = nil, nil, nil, nil
	b.rec.State = StatePaused
	rec := b.rec
	m.mu.Unlock()
	m.log.Info("sandbox paused", "sandbox_id", id, "ms", time.Since(t0).Milliseconds())
	return m.save(rec)
}

// pauseFailed ends a failed pause; b.op is held. A sandbox that still runs
// (its checkpoint failed before runsc paused it: no room for the image, say)
// gets a new epoch of its link and runs on; one that does not is lost, and
// forgotten. Either way the caller learns why.
func (m *Manager) pauseFailed(ctx context.Context, b *box, dir string, cause error) error {
	id := b.rec.ID
	_ = os.RemoveAll(dir)
	_ = b.link.Close()
	if !sandbox.IsDone(b.vm.Done()) {
		epoch := b.rec.Epoch + 1
		if err := m.attach(ctx, b, b.vm, b.stop, epoch); err == nil {
			m.mu.Lock()
			b.rec.Epoch = epoch
			rec := b.rec
			m.mu.Unlock()
			m.log.Warn("sandbox pause failed; it runs on", "sandbox_id", id, "err", cause)
			return errors.Join(fmt.Errorf("sandboxes: pause %s failed, the sandbox runs on: %w", id, cause), m.save(rec))
		}
	}
	stopErr := b.stop(ctx)
	m.mu.Lock()
	delete(m.boxes, id)
	m.mu.Unlock()
	_ = os.RemoveAll(filepath.Join(m.cfg.Dir, id))
	return fmt.Errorf("sandboxes: pause %s (the sandbox is lost): %w", id, errors.Join(cause, stopErr))
}

// Connect resumes a paused sandbox (resumed) or finds a running one, and
// extends its deadline to now plus timeout, never shortening it.
func (m *Manager) Connect(ctx context.Context, key, id string, timeout time.Duration) (info Info, resumed bool, err error) {
	owner := Owner(key)
	b, release, err := m.acquire(id, owner)
	if err != nil {
		return Info{}, false, err
	}
	defer release()
	m.mu.Lock()
	if b.rec.State == StatePaused {
		if err := m.admit(owner, false); err != nil {
			m.mu.Unlock()
			return Info{}, false, err
		}
	}
	paused := b.rec.State == StatePaused
	m.mu.Unlock()
	if paused {
		if err := m.resume(ctx, b); err != nil {
			return Info{}, false, err
		}
	}
	m.mu.Lock()
	if end := m.cfg.Now().Add(m.clampTimeout(timeout)); end.After(b.rec.EndAt) {
		b.rec.EndAt = end
	}
	rec := b.rec
	m.mu.Unlock()
	return rec, paused, m.save(rec)
}

// resume restores b from its checkpoint; b.op is held.
func (m *Manager) resume(ctx context.Context, b *box) error {
	t0 := time.Now()
	spec := m.cfg.Spec
	spec.ID = ""
	spec.RootDir, spec.MemoryMB, spec.VCPUs = b.rec.RootDir, b.rec.MemoryMB, b.rec.VCPUs
	dir := filepath.Join(m.cfg.Dir, b.rec.ID, "checkpoint")
	vm, err := m.cfg.Pauser.Restore(ctx, spec, dir)
	if err != nil {
		return fmt.Errorf("sandboxes: resume %s: %w", b.rec.ID, err)
	}
	epoch := b.rec.Epoch + 1
	if err := m.attach(ctx, b, vm, vm.Stop, epoch); err != nil {
		uctx, cancel := cleanup.Detached(ctx, cleanup.DefaultBound)
		defer cancel()
		_ = vm.Stop(uctx)
		return fmt.Errorf("sandboxes: resume %s: %w", b.rec.ID, err)
	}
	m.mu.Lock()
	b.rec.State, b.rec.Epoch = StateRunning, epoch
	m.mu.Unlock()
	// The restored sandbox has read its memory in; the image is freed.
	_ = os.RemoveAll(dir)
	m.log.Info("sandbox resumed", "sandbox_id", b.rec.ID, "vm_id", vm.ID(), "ms", time.Since(t0).Milliseconds())
	return nil
}

// Transport is how the data plane reaches a running sandbox whose token
// the caller gave; ErrNotRunning for a paused one.
func (m *Manager) Transport(id, token string) (http.RoundTripper, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.boxes[id]
	if !ok || b.rec.State == stateBusy {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if !tokenEqual(b.rec.Token, token) {
		return nil, ErrBadToken
	}
	if b.rec.State != StateRunning || b.transport == nil {
		return nil, fmt.Errorf("%w: %s is %s", ErrNotRunning, id, b.rec.State)
	}
	return b.transport, nil
}

// Processes are the host processes of each running sandbox (for the
// benchmark's memory figures), by sandbox id.
func (m *Manager) Processes() map[string][]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string][]int{}
	for id, b := range m.boxes {
		if b.rec.State == StateRunning && b.vm != nil {
			out[id] = sandbox.PIDs(b.vm)
		}
	}
	return out
}

// Metric is one reading of a running sandbox (E2B's SandboxMetric).
type Metric struct {
	Time     time.Time
	CPUCount int
	CPUPct   float64 // of its CPUs, since the last reading (or its start)
	MemUsed  int64   // bytes the host charges to it, its Sentry included
	MemTotal int64   // bytes it may have (its memory, not the Sentry's)
}

// Metrics reads key's running sandbox now; a paused one has none (nil).
func (m *Manager) Metrics(key, id string) ([]Metric, error) {
	b, err := m.get(id, Owner(key))
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	vm, vcpus, memMB := b.vm, b.rec.VCPUs, b.rec.MemoryMB
	m.mu.Unlock()
	if vm == nil || m.cfg.Usage == nil {
		return nil, nil
	}
	cpu, mem, err := m.cfg.Usage(vm.ID())
	if err != nil {
		return nil, fmt.Errorf("sandboxes: metrics of %s: %w", id, err)
	}
	now := m.cfg.Now()
	m.mu.Lock()
	elapsed := now.Sub(b.lastAt)
	pct := 0.0
	if elapsed > 0 {
		pct = float64(cpu-b.lastCPU) / float64(elapsed) / float64(max(vcpus, 1)) * 100
	}
	b.lastCPU, b.lastAt = cpu, now
	m.mu.Unlock()
	return []Metric{{Time: now, CPUCount: vcpus, CPUPct: min(max(pct, 0), 100), MemUsed: mem, MemTotal: int64(memMB) << 20}}, nil
}

// Counts are the host's sandboxes by state.
func (m *Manager) Counts() (running, paused int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range m.boxes {
		switch b.rec.State {
		case StateRunning:
			running++
		case StatePaused:
			paused++
		}
	}
	return running, paused
}

func tokenEqual(a, b string) bool {
	return len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// Find returns the running sandbox whose token match accepts (a presigned
// URL carries no sandbox id, only a signature made with its token).
func (m *Manager) Find(match func(token string) bool) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, b := range m.boxes {
		if b.rec.State == StateRunning && match(b.rec.Token) {
			return id, true
		}
	}
	return "", false
}

// Token returns the sandbox's access token, for checking a presigned
// URL's signature.
func (m *Manager) Token(id string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.boxes[id]
	if !ok {
		return "", false
	}
	return b.rec.Token, true
}
