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
	"github.com/codebench/codebench/internal/network"
	"github.com/codebench/codebench/internal/reconcile"
	"github.com/codebench/codebench/internal/sandbox/choose"
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
		fmt.Printf("%s %-20s %s\n", mark, what, detail)
	}
	info := func(what, detail string) { fmt.Printf("info %-20s %s\n", what, detail) }

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
	if img != nil {
		// Every candidate the configuration allows, probed for real, in the
		// order the worker tries them.
		c, err := choose.Choose(ctx, candidates(cfg, specFor(cfg, img), log), cfg.VM.AllowTCG, true)
		for _, r := range c.Reports {
			what := "driver " + r.Name
			switch {
			case r.Chosen:
				report(true, what, "USED: "+r.Detail)
			case r.Works:
				info(what, "works: "+r.Detail)
			default:
				info(what, "cannot run here: "+r.Detail)
			}
		}
		if err != nil {
			report(false, "sandbox", fmt.Sprintf("the worker will refuse to start: %v", err))
		} else {
			report(true, "sandbox", fmt.Sprintf("the worker will use %s (CODEBENCH_DRIVER=%s)", c.Name, cfg.VM.Driver))
			// The walls around a job on that driver (docs/SECURITY.md).
			for _, w := range walls(ctx, cfg, c, specFor(cfg, img)) {
				mark := "wall"
				if !w.present {
					mark = "MISS"
				}
				fmt.Printf("%s %-20s %s\n", mark, w.name, w.detail)
			}
		}
	}
	for _, raw := range strings.Split(cfg.Worker.RabbitURL, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			continue
		}
		conn, derr := net.DialTimeout("tcp", u.Host, 2*time.Second)
		if derr != nil {
			info("rabbitmq", fmt.Sprintf("%s not reachable (needed by worker/submit, not by run): %v", u.Host, derr))
		} else {
			conn.Close()
			report(true, "rabbitmq", u.Host+" accepts connections")
		}
	}
	if cfg.Network.Enabled {
		if err := network.Check(filepath.SplitList(cfg.Network.CNIPath), cfg.Network.IPMasq); err != nil {
			report(false, "network", strings.ReplaceAll(err.Error(), "\n", "; "))
		} else {
			report(true, "network", fmt.Sprintf("CNI plugins in %s, nft; subnet %s, allowed %q (docs/NETWORKING.md)",
				cfg.Network.CNIPath, cfg.Network.Subnet, cfg.Network.Allow))
		}
	} else {
		info("network", "off: jobs that ask for a network are refused (docs/NETWORKING.md)")
	}
	if bad > 0 {
		return exitError{1}
	}
	return nil
}
