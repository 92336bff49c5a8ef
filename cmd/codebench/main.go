// Command codebench is the host binary: the worker daemon, one-shot runs,
// job submission, benchmarks, image builds and host diagnostics. It only
// wires packages together; the logic lives under internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/sandbox/qemu"
)

const usage = `usage: codebench <command> [flags]

commands:
  run FILE        run one program in a fresh microVM (no broker needed)
  worker          serve jobs from RabbitMQ with a warm pool of microVMs
  submit FILE     publish a job to RabbitMQ and follow its status queue
  declare         declare the broker topology (queues jobs, jobs.dead) and exit
  image build     build the guest image (kernel, initramfs, root filesystem)
  doctor          report what works on this host
  bench           cold boot vs snapshot restore, memory per VM, and load with percentiles
`

// hardDeadlineMargin is how long past the grace period a stopping worker
// may take to requeue, destroy its VMs and disconnect.
const hardDeadlineMargin = 60 * time.Second

// exitError carries a process exit status out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	os.Exit(realMain())
}

func realMain() int {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	// The QEMU driver re-executes this binary as each VM's jail helper.
	if os.Args[1] == qemu.JailCommand {
		fmt.Fprintln(os.Stderr, "codebench:", qemu.JailMain(os.Args[2:]))
		return 1
	}
	cfg, err := config.FromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "codebench: config:", err)
		return 2
	}
	if cmd := os.Args[1]; cmd != "worker" {
		// The worker loads its configuration once more (its flags and
		// --config) and scrubs then.
		if err := config.ScrubEnv(); err != nil {
			fmt.Fprintln(os.Stderr, "codebench: config:", err)
			return 2
		}
	}
	level := slog.LevelInfo
	if cfg.Verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cmd, args := os.Args[1], os.Args[2:]
	if cmd == "worker" {
		// The hard deadline: whatever hangs during shutdown (a VM that
		// will not die, a broker that does not answer), the process ends
		// this long after the first signal.
		go func() {
			<-ctx.Done()
			time.Sleep(cfg.Worker.Grace + hardDeadlineMargin)
			fmt.Fprintln(os.Stderr, "codebench: shutdown exceeded its hard deadline; exiting")
			os.Exit(3)
		}()
	}
	switch cmd {
	case "image":
		err = imageCmd(ctx, cfg, args)
	case "run":
		err = runCmd(ctx, cfg, log, args)
	case "doctor":
		err = doctorCmd(ctx, cfg, args)
	case "worker":
		err = workerCmd(ctx, cfg, log, args)
	case "submit":
		err = submitCmd(ctx, cfg, args)
	case "declare":
		err = declareCmd(ctx, cfg, args)
	case "bench":
		err = benchCmd(ctx, cfg, log, args)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "codebench: unknown command %q\n%s", cmd, usage)
		return 2
	}
	var ee exitError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case err != nil:
		fmt.Fprintln(os.Stderr, "codebench:", err)
		return 1
	}
	return 0
}
