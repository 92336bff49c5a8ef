package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/image"
	"github.com/codebench/codebench/internal/reconcile"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/sandbox/qemu"
)

// doctorCmd reports what works on this host. It exits non-zero when
// something a worker needs is missing.
func doctorCmd(ctx context.Context, cfg config.Config, args []string) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.RunDir = reconcile.OwnerDir(cfg.RunDir, "d")
	defer os.Remove(cfg.RunDir)
	bad := 0
	report := func(ok bool, what, detail string) {
		mark := "ok  "
		if !ok {
			mark = "FAIL"
			bad++
		}
		fmt.Printf("%s %-14s %s\n", mark, what, detail)
	}
	info := func(what, detail string) { fmt.Printf("info %-14s %s\n", what, detail) }

	qemuPath, err := exec.LookPath(cfg.VM.QEMU)
	if err != nil {
		report(false, "qemu", fmt.Sprintf("%s not found (apt-get install qemu-system-x86)", cfg.VM.QEMU))
	} else {
		out, _ := exec.CommandContext(ctx, qemuPath, "--version").Output()
		report(true, "qemu", strings.SplitN(string(out), "\n", 2)[0])
	}
	if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
		info("/dev/kvm", "not usable: "+err.Error())
	} else {
		f.Close()
		info("/dev/kvm", "opens (whether it boots a guest is probed below)")
	}
	if khz, err := qemu.HostTSCKHz(); err == nil {
		info("tsc", fmt.Sprintf("%d kHz (passed as tsc_early_khz)", khz))
	}
	img, err := image.Resolve(cfg.DataDir, cfg.Image)
	switch {
	case errors.Is(err, image.ErrNoImage):
		report(false, "image", "none built under "+cfg.DataDir+" (run: codebench image build)")
	case err != nil:
		report(false, "image", err.Error())
	default:
		report(true, "image", fmt.Sprintf("%s kernel %s languages %s", img.Manifest.Hash[:12],
			img.Manifest.KernelRelease, strings.Join(img.LanguageNames(), ",")))
	}
	if img != nil && qemuPath != "" {
		spec := sandbox.Spec{Kernel: img.KernelPath(), Initrd: img.InitrdPath(), Rootfs: img.RootfsPath(), MemoryMB: cfg.VM.MemoryMB}
		qcfg := qemu.Config{Binary: cfg.VM.QEMU, RunDir: cfg.RunDir, TSCKHz: cfg.VM.TSCKHz}
		probe, err := qemu.ResolveAccel(ctx, cfg.VM.Accel, qcfg, spec, filepath.Join(cfg.DataDir, "accel-probe.json"), log)
		if err != nil {
			report(false, "accelerator", err.Error())
		} else {
			detail := probe.Accel + ": " + probe.Reason
			if probe.Accel == qemu.AccelTCG {
				detail += " (TCG is not a security boundary; the worker needs CODEBENCH_ALLOW_TCG=1)"
			}
			report(probe.Accel == qemu.AccelKVM || cfg.VM.AllowTCG, "accelerator", detail)
			qcfg.Accel = probe.Accel
			if d, err := qemu.New(qcfg, log); err != nil {
				report(false, "driver qemu", err.Error())
			} else {
				bctx, cancel := context.WithTimeout(ctx, cfg.VM.BootLimit)
				inst, err := sandbox.Boot(bctx, d, spec)
				cancel()
				if err != nil {
					report(false, "driver qemu", "test boot failed: "+err.Error())
				} else {
					report(true, "driver qemu", fmt.Sprintf("boots to agent ready in %s", inst.ReadyIn.Round(time.Millisecond)))
					_ = inst.Stop(ctx)
				}
			}
		}
	}
	if d, err := firecrackerDriver(cfg, log); err != nil {
		info("driver firecracker", "misconfigured: "+err.Error())
	} else if err := d.Probe(); err != nil {
		info("driver firecracker", "cannot run here: "+err.Error())
	} else {
		detail := "binary and /dev/kvm present"
		if err := d.SnapshotSupport(); err != nil {
			detail += "; snapshot clones off: " + err.Error()
		}
		info("driver firecracker", detail+" (select with CODEBENCH_DRIVER=firecracker; see docs/FIRECRACKER.md)")
	}
	u, err := url.Parse(cfg.Worker.RabbitURL)
	if err == nil {
		conn, derr := net.DialTimeout("tcp", u.Host, 2*time.Second)
		if derr != nil {
			info("rabbitmq", fmt.Sprintf("%s not reachable (needed by worker/submit, not by run): %v", u.Host, derr))
		} else {
			conn.Close()
			report(true, "rabbitmq", u.Host+" accepts connections")
		}
	}
	if bad > 0 {
		return exitError{1}
	}
	return nil
}
