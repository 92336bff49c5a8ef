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
	"path/filepath"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/hostpkg"
	"github.com/codebench/codebench/internal/image"
	"github.com/codebench/codebench/internal/network"
	"github.com/codebench/codebench/internal/reconcile"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/sandbox/choose"
	"github.com/codebench/codebench/internal/sandbox/drivers"
)

// doctorCmd reports what works on this host. It exits non-zero when
// something a worker needs is missing; with --strict also when a wall is
// missing on the chosen driver (one the configuration did not waive), or
// when the host has an older runsc or QEMU than its apt sources serve and
// the README promises.
func doctorCmd(fs *flag.FlagSet) commandFunc {
	strict := fs.Bool("strict", false, "also fail on a missing wall and on packages older than the apt sources serve")
	driver := fs.String("driver", "", "check auto or exactly one candidate, by the name doctor prints, instead of CODEBENCH_DRIVER")
	return func(ctx context.Context, cfg config.Config, log *slog.Logger, args []string) error {
		if *driver != "" {
			if err := selectDriver(&cfg, drivers.List(cfg, sandbox.Spec{}, log), *driver); err != nil {
				return err
			}
		}
		// What doctor checks logs only its warnings: the report is the output.
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
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
		// warn fails only under --strict.
		warn := func(what, detail string) {
			if *strict {
				report(false, what, detail)
				return
			}
			fmt.Printf("warn %-20s %s\n", what, detail)
		}
		for _, p := range checkPackages(ctx) {
			switch {
			case p.stale:
				warn("package "+p.name, p.detail)
			default:
				info("package "+p.name, p.detail)
			}
		}

		// Each driver's binary is its own probe's to find (the driver lines
		// below); the packages above say what is installed.
		if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
			info("/dev/kvm", "not usable: "+err.Error())
		} else {
			f.Close()
			info("/dev/kvm", "opens (whether it boots a guest is probed below)")
		}
		for _, f := range drivers.HostFacts() {
			info(f[0], f[1])
		}
		img, err := image.ForLanguages(cfg.DataDir, cfg.Image, cfg.ImageLanguages)
		switch {
		case errors.Is(err, image.ErrNoImage):
			report(false, "image", "none built under "+cfg.DataDir+" (run: codebench image build)")
		case err != nil:
			report(false, "image", err.Error())
		default:
			report(true, "image", fmt.Sprintf("%s (language profile %s) kernel %s languages %s", img.Manifest.Hash[:12], cfg.ImageLanguages,
				img.Manifest.KernelRelease, strings.Join(img.LanguageNames(), ",")))
		}
		if img != nil {
			// Every candidate the configuration allows, probed for real, in the
			// order the worker tries them.
			list := drivers.List(cfg, drivers.Spec(img, cfg.VM), log)
			c, err := choose.Choose(ctx, candidates(cfg, list), cfg.VM.AllowTCG, true)
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
				desc, _ := describing(list, c.Name)
				for _, w := range walls(ctx, c, desc, drivers.Spec(img, cfg.VM)) {
					mark := "wall"
					if !w.Present {
						mark = "MISS"
						if w.WaivedBy != "" {
							w.Detail += " (accepted by " + w.WaivedBy + ")"
						} else if *strict {
							bad++
						}
					}
					fmt.Printf("%s %-20s %s\n", mark, w.Name, w.Detail)
				}
				if desc.Notes != nil {
					for _, n := range desc.Notes(c.Driver) {
						info("driver "+c.Name, n)
					}
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
			ns, leases, records, _ := network.Leftovers(ctx, network.Config{Name: cfg.Network.Name, StateDir: networkStateDir(cfg)})
			info("network state", fmt.Sprintf("%d namespaces, %d leases, %d attachments (a running worker's, or left by a killed one: the next worker reclaims them)",
				len(ns), len(leases), len(records)))
		} else {
			info("network", "off: jobs that ask for a network are refused (docs/NETWORKING.md)")
		}
		if bad > 0 {
			return exitError{1}
		}
		return nil
	}
}

// promise is a package scripts/install-deps.sh takes from
// bookworm-backports where the host's mirror serves it, the version it
// wants (its "wanted" table holds the same), and what an older one costs.
type promise struct{ pkg, min, without string }

var promised = []promise{
	{"runsc", "0.0~20231113", "no systrap platform: gVisor runs on ptrace, far slower"},
	{"qemu-system-x86", "1:8.2", "a jailed QEMU cannot map its template read-only: no snapshot clones, auto skips QEMU"},
}

// pkgCheck is one line of doctor's package report.
type pkgCheck struct {
	name, detail string
	// stale: older than promised while the apt sources serve one that is not.
	stale bool
}

// checkPackages compares each promised package with what the host has and
// what its apt sources serve.
func checkPackages(ctx context.Context) []pkgCheck {
	var out []pkgCheck
	for _, p := range promised {
		have, err := hostpkg.Installed(ctx, p.pkg)
		offers, _ := hostpkg.Served(ctx, p.pkg)
		out = append(out, p.judge(have, err, offers))
	}
	return out
}

// judge is one promise's line, given the installed version (or why none)
// and what the sources serve.
func (p promise) judge(have string, haveErr error, offers []hostpkg.Offer) pkgCheck {
	c := pkgCheck{name: p.pkg, detail: have}
	newest, served := hostpkg.Newest(offers)
	servesPromise := served && hostpkg.Compare(newest.Version, p.min) >= 0
	switch {
	case haveErr != nil:
		c.detail = "not installed from a Debian package (scripts/install-deps.sh installs it)"
	case hostpkg.Compare(have, p.min) >= 0:
		c.detail += fmt.Sprintf(" (>= %s)", p.min)
	case servesPromise:
		c.stale = true
		c.detail += fmt.Sprintf(" is older than %s: %s; the apt sources serve %s (%s): run scripts/install-deps.sh",
			p.min, p.without, newest.Version, newest.Source)
	default:
		c.detail += fmt.Sprintf(" is older than %s (%s), and the apt sources serve nothing newer", p.min, p.without)
	}
	return c
}
