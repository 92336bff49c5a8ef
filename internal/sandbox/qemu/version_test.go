package qemu

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/codebench/codebench/internal/sandbox"
)

// fakeQEMU is a qemu-system-x86_64 that only answers --version with
// version and fails anything else (nothing here may start it).
func fakeQEMU(t *testing.T, version string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "qemu-system-x86_64")
	script := "#!/bin/sh\n[ \"$1\" = --version ] || { echo 'started a VM' >&2; exit 9; }\n" +
		"echo 'QEMU emulator version " + version + "'\necho 'Copyright (c) 2003-2022 Fabrice Bellard'\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestProbeNamesAnOldJailedQEMU: a jailed QEMU older than 8.2 cannot map
// its template read-only. The probe says so and what to install, and a
// clone is refused with that reason before any QEMU starts, never with a
// bare "Permission denied" from inside the VM start.
func TestProbeNamesAnOldJailedQEMU(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	jail := &Jail{Binary: "/bin/true", UID: 64000, GID: 64000}
	for _, tc := range []struct {
		name    string
		version string
		jail    *Jail
		tooOld  bool
	}{
		{"jailed 7.2", "7.2.15 (Debian 1:7.2+dfsg-7+deb12u16)", jail, true},
		{"jailed 8.1", "8.1.5", jail, true},
		{"jailed 8.2", "8.2.0", jail, false},
		{"jailed 10.0", "10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)", jail, false},
		{"unjailed 7.2", "7.2.15", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New(Config{Binary: fakeQEMU(t, tc.version), RunDir: t.TempDir(), TSCKHz: 1000000, Accel: AccelTCG, Jail: tc.jail}, log)
			if err != nil {
				t.Fatal(err)
			}
			err = d.Probe()
			if !tc.tooOld {
				if err != nil {
					t.Fatalf("probe: %v", err)
				}
				return
			}
			if !errors.Is(err, sandbox.ErrVMMTooOld) {
				t.Fatalf("probe: %v, want ErrVMMTooOld", err)
			}
			for _, want := range []string{"needs 8.2 or later", "read-only", "bookworm-backports", tc.version[:3]} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("probe's reason %q does not say %q", err, want)
				}
			}
			dir := t.TempDir()
			_, err = d.Restore(context.Background(), sandbox.Spec{}, dir)
			if !errors.Is(err, sandbox.ErrVMMTooOld) {
				t.Fatalf("restore: %v, want ErrVMMTooOld before any start", err)
			}
			if err := d.SnapshotSupport(); !errors.Is(err, sandbox.ErrVMMTooOld) {
				t.Fatalf("snapshot support: %v", err)
			}
		})
	}
}

func TestProbeWithoutBinary(t *testing.T) {
	d, err := New(Config{Binary: filepath.Join(t.TempDir(), "none"), RunDir: t.TempDir(), TSCKHz: 1, Accel: AccelTCG},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Probe(); err == nil || !strings.Contains(err.Error(), "apt-get install qemu-system-x86") {
		t.Fatalf("probe without a binary: %v", err)
	}
}
