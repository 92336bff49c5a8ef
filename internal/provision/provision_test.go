package provision

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

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
			p, err := New(context.Background(), coldOnly{}, sandbox.Spec{}, template.Config{Root: t.TempDir()}, tt.snapshots,
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
