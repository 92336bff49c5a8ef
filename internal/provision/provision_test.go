package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/template"
)

// coldOnly is a driver without the snapshot capability.
type coldOnly struct{}

func (coldOnly) Name() string { return "cold-only" }
func (coldOnly) Start(context.Context, sandbox.Spec) (sandbox.VM, error) {
	return nil, context.Canceled
}

func TestProvisionerFallsBackToColdBoot(t *testing.T) {
	tests := []struct {
		name      string
		snapshots bool
		wantLog   string
	}{
		{"driver without snapshots", true, "cannot save sandboxes"},
		{"snapshots disabled", false, "snapshots disabled by configuration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			p, err := New(context.Background(), coldOnly{}, sandbox.Spec{}, template.Config{Root: t.TempDir()}, tt.snapshots, Rotation{},
				slog.New(slog.NewTextHandler(&buf, nil)))
			if err != nil || p.Template() != nil {
				t.Fatal("template with a driver that cannot snapshot")
			}
			if !strings.Contains(buf.String(), tt.wantLog) {
				t.Fatalf("log %q lacks %q", buf.String(), tt.wantLog)
			}
		})
	}
}

// rotationHarness is a provisioner with a template, a clock the test moves
// and a rebuild the test answers.
type rotationHarness struct {
	p        *Provisioner
	now      time.Time
	requests chan *template.Template // the old template of each rebuild asked for
	answers  chan error              // nil: the rebuild succeeds
}

func newRotation(t *testing.T, rot Rotation) *rotationHarness {
	h := &rotationHarness{now: time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC),
		requests: make(chan *template.Template, 4), answers: make(chan error)}
	old := &template.Template{Dir: "gen0", Meta: template.Meta{Created: h.now.Format(time.RFC3339)}}
	h.p = &Provisioner{tmpl: old, rot: rot, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	h.p.ctx, h.p.cancel = context.WithCancel(context.Background())
	h.p.now = func() time.Time { return h.now }
	gen := 0
	h.p.rebuild = func(ctx context.Context, old *template.Template) (*template.Template, error) {
		h.requests <- old
		select {
		case err := <-h.answers:
			if err != nil {
				return nil, err
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		gen++
		return &template.Template{Dir: fmt.Sprintf("gen%d", gen), Meta: template.Meta{Created: h.now.Format(time.RFC3339)}}, nil
	}
	t.Cleanup(h.p.Close)
	return h
}

// clone is what Instance does after a successful clone.
func (h *rotationHarness) clone() { h.p.cloned(h.p.Template()) }

// finish answers the rebuild in progress and waits for the swap.
func (h *rotationHarness) finish(t *testing.T, err error) {
	t.Helper()
	h.answers <- err
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.p.mu.Lock()
		busy := h.p.rebuilding
		h.p.mu.Unlock()
		if !busy {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("rebuild did not finish")
		}
		time.Sleep(time.Millisecond)
	}
}

func (h *rotationHarness) noRequest(t *testing.T) {
	t.Helper()
	select {
	case old := <-h.requests:
		t.Fatalf("unexpected rebuild of %s", old.Dir)
	default:
	}
}

func TestRotationByClones(t *testing.T) {
	h := newRotation(t, Rotation{MaxClones: 3})
	h.clone()
	h.clone()
	h.noRequest(t)
	h.clone() // the third: due
	if old := <-h.requests; old.Dir != "gen0" {
		t.Fatalf("rebuild of %s", old.Dir)
	}
	// While it builds, clones still come from gen0 and ask for nothing.
	for range 5 {
		h.clone()
	}
	h.noRequest(t)
	if got := h.p.Template().Dir; got != "gen0" {
		t.Fatalf("template during the rebuild: %s", got)
	}
	h.finish(t, nil)
	if got := h.p.Template().Dir; got != "gen1" {
		t.Fatalf("template after the rebuild: %s", got)
	}
	if h.p.prev.Dir != "gen0" {
		t.Fatalf("previous template: %v", h.p.prev)
	}
	// The count starts again for the new template.
	h.clone()
	h.clone()
	h.noRequest(t)
}

func TestRotationByAge(t *testing.T) {
	h := newRotation(t, Rotation{MaxAge: 24 * time.Hour})
	h.now = h.now.Add(23 * time.Hour)
	h.clone()
	h.noRequest(t)
	h.now = h.now.Add(time.Hour)
	h.clone()
	<-h.requests
	h.finish(t, nil)
	if got := h.p.Template().Dir; got != "gen1" {
		t.Fatalf("template after the rebuild: %s", got)
	}
}

func TestRotationRetriesAfterFailure(t *testing.T) {
	h := newRotation(t, Rotation{MaxClones: 1})
	h.clone()
	<-h.requests
	h.finish(t, errors.New("boot failed"))
	if got := h.p.Template().Dir; got != "gen0" {
		t.Fatalf("a failed rebuild replaced the template: %s", got)
	}
	// Not again until the retry delay has passed.
	h.clone()
	h.noRequest(t)
	h.now = h.now.Add(rotationRetry)
	h.clone()
	<-h.requests
	h.finish(t, nil)
	if got := h.p.Template().Dir; got != "gen1" {
		t.Fatalf("template after the retry: %s", got)
	}
}

func TestRotationStopsOnClose(t *testing.T) {
	h := newRotation(t, Rotation{MaxClones: 1})
	h.clone()
	<-h.requests
	h.p.Close() // cancels the rebuild in progress and waits for it
	if got := h.p.Template().Dir; got != "gen0" {
		t.Fatalf("template after Close: %s", got)
	}
}
