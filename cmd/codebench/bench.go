package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/bench"
	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/sandbox"
)

// benchReport is everything "codebench bench" measured, in one run.
type benchReport struct {
	Machine      string            `json:"machine"`
	Driver       string            `json:"driver"`
	ColdBoot     bench.VMReport    `json:"cold_boot"`
	Restore      bench.VMReport    `json:"restore"`
	Load         *bench.LoadReport `json:"load"`
	Native       bench.Summary     `json:"native_baseline"`
	Targets      []target          `json:"targets"`
	TemplateDir  string            `json:"template_dir"`
	TemplateInMS int64             `json:"template_build_ms"`
}

type target struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	Met   bool    `json:"met"`
	Unit  string  `json:"unit"`
}

func benchCmd(ctx context.Context, cfg config.Config, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	n := fs.Int("n", 40, "jobs in the load run")
	c := fs.Int("c", 8, "jobs in flight at once")
	poolSize := fs.Int("pool", 4, "warm pool size (local mode), and VMs alive at once for the PSS reading")
	rounds := fs.Int("rounds", 3, "rounds of cold boots and restores (each round starts -pool VMs)")
	local := fs.Bool("local", false, "run the load through the pool directly instead of RabbitMQ and a running worker")
	asJSON := fs.Bool("json", false, "print JSON")
	loadOnly := fs.Bool("load-only", false, "only the load run through RabbitMQ (no VMs of its own: for soak tests)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *loadOnly {
		r, err := bench.LoadBroker(ctx, queueConfig(cfg), *n, *c)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(os.Stdout).Encode(r)
		}
		fmt.Printf("%d jobs, %d at once: %.1f s, %.2f jobs/s\n  %s\n  %s\n", r.N, r.Concurrency, r.Seconds, r.JobsPerSec, r.EndToEnd, r.HostOverhead)
		return nil
	}
	e, err := openEnv(ctx, cfg, log, "b", cfg.VM.AllowTCG)
	if err != nil {
		return err
	}
	defer e.close(log)
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	progress := func(format string, a ...any) {
		if !*asJSON {
			fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...)
		}
	}
	prov, err := e.provisioner(ctx, cfg, quiet)
	if prov.Template() == nil {
		return fmt.Errorf("bench needs snapshot templates (driver support and CODEBENCH_SNAPSHOTS=true): %v", err)
	}
	tmpl := prov.Template()
	rep := benchReport{Machine: machine(), Driver: e.describe(), TemplateDir: tmpl.Dir, TemplateInMS: tmpl.Meta.BuildMS}

	progress("cold boots: %d rounds of %d", *rounds, *poolSize)
	if rep.ColdBoot, err = bench.MeasureVMs(ctx, "cold boot to ready", func(ctx context.Context) (*sandbox.Instance, error) {
		ctx, cancel := context.WithTimeout(ctx, cfg.VM.BootLimit)
		defer cancel()
		return sandbox.Boot(ctx, e.driver, e.spec)
	}, *rounds, *poolSize); err != nil {
		return err
	}
	progress("restores: %d rounds of %d", *rounds, *poolSize)
	if rep.Restore, err = bench.MeasureVMs(ctx, "restore to ready", prov.Instance, *rounds, *poolSize); err != nil {
		return err
	}
	if *local {
		progress("load: %d jobs, %d at once, through a pool of %d clones", *n, *c, *poolSize)
		rep.Load, err = bench.LoadLocal(ctx, prov, e.policy, *poolSize, *n, *c)
	} else {
		progress("load: %d jobs, %d at once, through RabbitMQ to the running worker", *n, *c)
		rep.Load, err = bench.LoadBroker(ctx, queueConfig(cfg), *n, *c)
	}
	if err != nil {
		return err
	}
	progress("native baseline: %d runs", *n)
	if rep.Native, err = bench.Native(ctx, *n); err != nil {
		return err
	}
	rep.Targets = targets(&rep)
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printReport(&rep)
	return nil
}

func targets(r *benchReport) []target {
	ratio := func(a, b time.Duration) float64 {
		if b == 0 {
			return 0
		}
		return float64(a) / float64(b)
	}
	var ts []target
	add := func(name string, v, limit float64, atLeast bool, unit string) {
		met := v <= limit
		if atLeast {
			met = v >= limit
		}
		ts = append(ts, target{Name: name, Value: v, Limit: limit, Met: met, Unit: unit})
	}
	add("restore-to-ready speedup over cold boot (p50), at least", ratio(r.ColdBoot.Ready.P50, r.Restore.Ready.P50), 15, true, "x")
	add("end-to-end p99 / p50, at most", ratio(r.Load.EndToEnd.P99, r.Load.EndToEnd.P50), 3, false, "x")
	add("host overhead p50, under", float64(r.Load.HostOverhead.P50)/float64(time.Millisecond), 10, false, "ms")
	pss := 0.0
	if r.ColdBoot.PSSKB > 0 {
		pss = float64(r.Restore.PSSKB) / float64(r.ColdBoot.PSSKB)
	}
	add("idle clone PSS / idle cold-booted VM PSS, at most", pss, 0.5, false, "x")
	return ts
}

func printReport(r *benchReport) {
	fmt.Printf("machine: %s\ndriver:  %s\ntemplate: %s (built in %d ms)\n\n", r.Machine, r.Driver, r.TemplateDir, r.TemplateInMS)
	fmt.Println("VMs")
	fmt.Println(" ", r.ColdBoot.Ready)
	fmt.Println(" ", r.Restore.Ready)
	fmt.Printf("  idle VMM PSS (median, %d alive): cold boot %d KiB, clone %d KiB\n\n", r.ColdBoot.Alive, r.ColdBoot.PSSKB, r.Restore.PSSKB)
	l := r.Load
	fmt.Printf("Load: %s, %d hello.c jobs, %d at once: %.1f s, %.2f jobs/s\n", l.Mode, l.N, l.Concurrency, l.Seconds, l.JobsPerSec)
	for _, s := range []bench.Summary{l.EndToEnd, l.QueueWait, l.PoolWait, l.Publish, l.Dispatch, l.Compile, l.Run, l.Guest, l.HostOverhead, l.Teardown} {
		if s.N > 0 {
			fmt.Println(" ", s)
		}
	}
	fmt.Println(" ", r.Native)
	fmt.Printf("  end to end / native (p50): %.1fx\n\nTargets\n", float64(l.EndToEnd.P50)/float64(r.Native.P50))
	for _, t := range r.Targets {
		mark := "MET   "
		if !t.Met {
			mark = "MISSED"
		}
		fmt.Printf("  %s %-52s %.2f%s (limit %g%s)\n", mark, t.Name, t.Value, t.Unit, t.Limit, t.Unit)
	}
}

func machine() string {
	model := "unknown cpu"
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			model = strings.TrimSpace(v)
			break
		}
	}
	return fmt.Sprintf("%d cpus (%s), %s/%s", runtime.NumCPU(), model, runtime.GOOS, runtime.GOARCH)
}
