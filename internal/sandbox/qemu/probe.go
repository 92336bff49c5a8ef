package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/codebench/codebench/internal/sandbox"
)

// probeTimeout bounds the KVM test boot. Under KVM the guest is ready in well
// under a second; a guest that cannot boot under this host's KVM spins until
// the timeout.
const probeTimeout = 15 * time.Second

// ProbeResult is cached so that only the first start on a host pays for it.
type ProbeResult struct {
	Accel  string `json:"accel"`
	Reason string `json:"reason"`
	Key    string `json:"key"`
}

// ResolveAccel turns "auto" into "kvm" or "tcg": KVM only when a real test
// boot of spec under KVM reaches the agent. "kvm" and "tcg" are returned as
// they are. The verdict is cached in cacheFile, keyed by the host kernel,
// the QEMU binary and the image.
func ResolveAccel(ctx context.Context, want string, cfg Config, spec sandbox.Spec, cacheFile string, log *slog.Logger) (ProbeResult, error) {
	if want == AccelKVM || want == AccelTCG {
		return ProbeResult{Accel: want, Reason: "configured"}, nil
	}
	if want != "auto" {
		return ProbeResult{}, fmt.Errorf("qemu: unknown accelerator %q", want)
	}
	key := probeKey(cfg.Binary, spec)
	if b, err := os.ReadFile(cacheFile); err == nil {
		var r ProbeResult
		if json.Unmarshal(b, &r) == nil && r.Key == key {
			return r, nil
		}
	}
	r := probeKVM(ctx, cfg, spec, log)
	r.Key = key
	if b, err := json.Marshal(r); err == nil {
		_ = os.MkdirAll(filepath.Dir(cacheFile), 0o755)
		_ = os.WriteFile(cacheFile, b, 0o644)
	}
	return r, nil
}

func probeKVM(ctx context.Context, cfg Config, spec sandbox.Spec, log *slog.Logger) ProbeResult {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return ProbeResult{Accel: AccelTCG, Reason: "cannot open /dev/kvm: " + err.Error()}
	}
	f.Close()
	cfg.Accel = AccelKVM
	d, err := New(cfg, log)
	if err != nil {
		return ProbeResult{Accel: AccelTCG, Reason: err.Error()}
	}
	log.Info("probing KVM with a test boot", "timeout", probeTimeout)
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	spec.ID = "probe-" + NewID()[3:]
	inst, err := sandbox.Boot(pctx, d, spec)
	if err != nil {
		reason := "KVM test boot failed"
		if errors.Is(err, sandbox.ErrBootTimeout) {
			reason = fmt.Sprintf("KVM test boot did not reach the agent within %s", probeTimeout)
		}
		return ProbeResult{Accel: AccelTCG, Reason: reason}
	}
	_ = inst.Stop(ctx)
	return ProbeResult{Accel: AccelKVM, Reason: fmt.Sprintf("KVM test boot ready in %s", inst.ReadyIn.Round(time.Millisecond))}
}

func probeKey(binary string, spec sandbox.Spec) string {
	var u unix.Utsname
	_ = unix.Uname(&u)
	bin := binary
	var qemuMod string
	if p, err := lookPath(bin); err == nil {
		if st, err := os.Stat(p); err == nil {
			qemuMod = st.ModTime().UTC().Format(time.RFC3339Nano)
		}
	}
	return fmt.Sprintf("%s|%s|%s|%s", unix.ByteSliceToString(u.Release[:]), bin, qemuMod, spec.Kernel)
}
