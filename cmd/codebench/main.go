// Command codebench is the host binary: the worker daemon, one-shot runs,
// job submission, benchmarks, image builds and host diagnostics. It only
// wires packages together; the logic lives under internal/.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/sandbox/drivers"
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
  api             serve Judge0's HTTP API (CE 1.13.1) in front of the workers
  sandboxes       host long-lived sandboxes for the E2B SDK (docs/SANDBOXES.md)
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

// commandFunc runs a command with the configuration main loaded once and
// the arguments left after its flags.
type commandFunc func(ctx context.Context, cfg config.Config, log *slog.Logger, args []string) error

// commands: each registers its own flags on the FlagSet main parses, and
// returns what runs it.
var commands = map[string]func(fs *flag.FlagSet) commandFunc{
	"run":            runCmd,
	"worker":         workerCmd,
	"submit":         submitCmd,
	"declare":        declareCmd,
	"image build":    imageBuildCmd,
	"image packages": imagePackagesCmd,
	"doctor":         doctorCmd,
	"bench":          benchCmd,
	"api":            apiCmd,
	"sandboxes":      sandboxesCmd,
}

// invocation is one run of the binary: the command, its arguments, and
// the configuration loaded once for the whole process, with what main
// derives from it.
type invocation struct {
	name string
	run  commandFunc
	args []string // left after the flags
	cfg  config.Config
	// level is the log level: debug when the configuration says so.
	level slog.Level
	// hardDeadline is how long after the first signal the process ends
	// whatever hangs (0: no such deadline; the worker's is its grace
	// period plus hardDeadlineMargin).
	hardDeadline time.Duration
}

// errUsage is a command line that names no command: the usage was printed.
var errUsage = errors.New("usage")

// parseInvocation finds the command in argv (without the program's name),
// parses its flags and loads the configuration: the file (--config or
// CODEBENCH_CONFIG), the environment, the flags.
func parseInvocation(argv []string, lookup func(string) (string, bool)) (*invocation, error) {
	name, args := argv[0], argv[1:]
	switch {
	case name == "image" && len(args) > 0 && (args[0] == "build" || args[0] == "packages"):
		name, args = "image "+args[0], args[1:]
	case name == "image":
		return nil, fmt.Errorf("%w: codebench image build [--agent PATH] [--languages default|all|c,cpp,python] | image packages [--languages ...]", errUsage)
	}
	setup, ok := commands[name]
	if !ok {
		return nil, fmt.Errorf("%w: unknown command %q", errUsage, name)
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	run := setup(fs)
	configFile := fs.String("config", "", "TOML config file (default: $CODEBENCH_CONFIG); flags > environment > file > defaults")
	overrides := config.Flags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	cfg, err := config.Load(lookup, *configFile, overrides())
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	inv := &invocation{name: name, run: run, args: fs.Args(), cfg: cfg, level: slog.LevelInfo}
	if cfg.Verbose {
		inv.level = slog.LevelDebug
	}
	if name == "worker" {
		inv.hardDeadline = cfg.Worker.Grace + hardDeadlineMargin
	}
	if name == "sandboxes" {
		inv.hardDeadline = sandboxesShutdown + hardDeadlineMargin
	}
	return inv, nil
}

func realMain() int {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	// A driver re-executes this binary as its helper (QEMU's jail).
	if ok, err := drivers.Reexec(os.Args[1:]); ok {
		fmt.Fprintln(os.Stderr, "codebench:", err)
		return 1
	}
	if n := os.Args[1]; n == "help" || n == "-h" || n == "--help" {
		fmt.Print(usage)
		return 0
	}
	inv, err := parseInvocation(os.Args[1:], os.LookupEnv)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(os.Stderr, "codebench: %v\n%s", err, usage)
		return 2
	case err != nil:
		fmt.Fprintln(os.Stderr, "codebench:", err)
		return 2
	}
	// Children (runsc, QEMU, the CNI plugins, nft) get none of it.
	if err := config.ScrubEnv(); err != nil {
		fmt.Fprintln(os.Stderr, "codebench: config:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: inv.level}))
	for _, w := range inv.cfg.Warnings {
		log.Warn("config: " + w)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if inv.hardDeadline > 0 {
		// Whatever hangs during shutdown (a VM that will not die, a broker
		// that does not answer), the process ends this long after the
		// first signal.
		go func() {
			<-ctx.Done()
			time.Sleep(inv.hardDeadline)
			fmt.Fprintln(os.Stderr, "codebench: shutdown exceeded its hard deadline; exiting")
			os.Exit(3)
		}()
	}
	err = inv.run(ctx, inv.cfg, log, inv.args)
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
