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

	"github.com/codebench/codebench/internal/bench"
	"github.com/codebench/codebench/internal/config"
)

func benchCmd(ctx context.Context, cfg config.Config, log *slog.Logger, args []string) error {
	if len(args) == 0 || (args[0] != "boot" && args[0] != "e2e") {
		return fmt.Errorf("usage: codebench bench boot|e2e [-n N] [--json]")
	}
	mode := args[0]
	fs := flag.NewFlagSet("bench "+mode, flag.ContinueOnError)
	n := fs.Int("n", 10, "samples")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var report any
	var lines []string
	switch mode {
	case "boot":
		e, err := openEnv(ctx, cfg, log)
		if err != nil {
			return err
		}
		r, err := bench.Boot(ctx, e.driver, e.spec, *n)
		if err != nil {
			return err
		}
		report = r
		lines = []string{e.describe(), r.Boot.String(), r.GuestHello.String(), r.GuestCompile.String(), r.GuestRun.String(), r.NativeHello.String(),
			fmt.Sprintf("ratio guest/native hello.c (p50): %.1fx", float64(r.GuestHello.P50)/float64(r.NativeHello.P50))}
	case "e2e":
		r, err := bench.EndToEnd(ctx, queueConfig(cfg), *n)
		if err != nil {
			return err
		}
		report = r
		lines = []string{r.EndToEnd.String(), r.PoolWait.String(), r.Agent.String(), r.InGuest.String(), r.HostOverhead.String(), r.NativeHello.String(),
			fmt.Sprintf("ratio end-to-end/native hello.c (p50): %.1fx", float64(r.EndToEnd.P50)/float64(r.NativeHello.P50))}
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(report)
	}
	fmt.Printf("machine: %d cores, %s/%s, %s\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, cpuModel())
	fmt.Println(strings.Join(lines, "\n"))
	return nil
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown cpu"
}
