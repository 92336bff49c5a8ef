// Command codebench-agent runs inside the guest. As /init in the initramfs it
// mounts the root disk and switches to it; as "serve" it is PID 1 on the root
// and answers the host on the agent channel ("serve --oci": the init of a
// gVisor sandbox, whose mounts come from the OCI spec and whose channel is
// its stdin and stdout); as "exec" it is the trampoline that applies rlimits
// to a job and execs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/guest/agent"
	"github.com/codebench/codebench/internal/guest/boot"
	"github.com/codebench/codebench/internal/guest/runner"
	"github.com/codebench/codebench/internal/lang"
)

// The unprivileged job user the image creates, and the checker's user, of
// its own (no name needed: nothing looks it up), so that a program can
// neither read nor change the checker's files.
const (
	jobUID, jobGID         = 1000, 1000
	checkerUID, checkerGID = 1001, 1001
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "codebench-agent:", err)
		if os.Getpid() == 1 {
			// PID 1 must not exit (the kernel would panic without a
			// message on the console); power off instead.
			time.Sleep(time.Second)
			_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
		}
		os.Exit(1)
	}
}

func run() error {
	if os.Args[0] == "/init" {
		return boot.Stage1()
	}
	if len(os.Args) < 2 {
		return fmt.Errorf("usage: codebench-agent serve | exec [limits] -- program args")
	}
	switch os.Args[1] {
	case "exec":
		return runner.ExecWithRlimits(os.Args[2:])
	case "serve":
		return serve(os.Args[2:])
	case "envd":
		return serveEnvd()
	default:
		return fmt.Errorf("unknown command %q", os.Args[1])
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	oci := fs.Bool("oci", false, "the init of an OCI container (gVisor): mounts from the spec, channel on stdin/stdout, console on stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// The console: the VM's serial port is PID 1's stdout; in a container
	// stdout is the agent channel, so the console is stderr.
	console := os.Stdout
	if *oci {
		console = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(console, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if os.Getpid() == 1 && !*oci {
		if err := boot.Stage2(); err != nil {
			return err
		}
	}
	if *oci {
		// The VM's root is mounted so by stage 1; a sandbox's by runsc.
		if err := boot.RemountRootNosuid(); err != nil {
			log.Warn("root stays without nosuid (no_new_privs still keeps setuid bits from mattering)", "err", err)
		}
		log.Info("namespace sysctls set to 0", "sysctls", boot.DisableNamespaces())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()

	raw, err := os.ReadFile(lang.GuestPath)
	if err != nil {
		return err
	}
	langs, err := lang.Parse(raw)
	if err != nil {
		return err
	}
	var open agent.Open
	var where string
	if *oci {
		open, where = stdioChannel()
	} else if open, where, err = agentChannel(boot.CmdlineValue(agentproto.CmdlineKey)); err != nil {
		return err
	}
	r := &runner.Runner{
		Limiter:    limiter(log),
		MaxRuns:    100,
		Restrict:   true,
		Languages:  langs,
		JobRoot:    boot.JobRoot,
		UID:        jobUID,
		GID:        jobGID,
		CheckerUID: checkerUID,
		CheckerGID: checkerGID,
		Exec:       []string{boot.AgentPath, "exec"},
		AfterPhase: func() { boot.KillUser(jobUID); boot.KillUser(checkerUID) },
	}
	defer r.Close()
	if err := r.Warm(); err != nil {
		log.Warn("the job launcher could not be made ahead; each job tries again", "err", err)
	}
	srv := &agent.Server{
		Hello:  agentproto.HelloInfo{Agent: "codebench-agent", Kernel: boot.KernelRelease(), Languages: langs.Names()},
		Runner: r,
		Host:   guestHost{oci: *oci},
		Log:    log,
	}
	if *oci {
		// A long-lived sandbox's channel is its stdio, which envd inherits.
		srv.Envd = func(req *agentproto.Envd) (func() error, error) { return startEnvd(r, req) }
	}
	log.Info("agent ready", "channel", where, "languages", langs.Names())
	fmt.Fprintln(console, "codebench-agent: ready") // the host's console log shows boot progress
	err = srv.Serve(ctx, open)
	if errors.Is(err, agent.ErrChannelGone) || errors.Is(err, agent.ErrHandedOver) {
		return nil // the host closed a channel that cannot be reopened: the sandbox ends
	}
	return err
}

// limiter picks how phases are limited: cgroup v2 (a VM's own kernel), else
// cgroup v1 with a memory watchdog (gVisor), else none (RLIMIT_AS only).
func limiter(log *slog.Logger) runner.Limiter {
	v2, err := runner.SetupCgroups("/sys/fs/cgroup", "jobs")
	if err == nil {
		return v2
	}
	v1, err1 := runner.SetupCgroupsV1("/sys/fs/cgroup", "jobs")
	if err1 == nil {
		log.Info("cgroup v2 unavailable; limits by cgroup v1 accounting and a memory watchdog", "v2", err)
		return v1
	}
	log.Warn("no cgroup limits; memory is limited per process by RLIMIT_AS", "v2", err, "v1", err1)
	return nil
}

// stdioChannel is the agent channel of a container: stdin and stdout, for
// the sandbox's whole life (the host keeps them open; it cannot reopen them).
func stdioChannel() (agent.Open, string) {
	var once sync.Once
	return func() (io.ReadWriteCloser, error) {
		var rw io.ReadWriteCloser
		once.Do(func() { rw = stdio{} })
		if rw == nil {
			return nil, agent.ErrChannelGone
		}
		return rw, nil
	}, "stdio"
}

// stdio is stdin and stdout as one stream.
type stdio struct{}

func (stdio) Read(p []byte) (int, error)  { return os.Stdin.Read(p) }
func (stdio) Write(p []byte) (int, error) { return os.Stdout.Write(p) }
func (stdio) Close() error                { return errors.Join(os.Stdin.Close(), os.Stdout.Close()) }

// agentChannel picks the transport the host asked for on the kernel command
// line: "vsock:<port>" (Firecracker) or, by default, the virtio-serial port
// named "agent" (QEMU).
func agentChannel(spec string) (agent.Open, string, error) {
	if p, ok := strings.CutPrefix(spec, "vsock:"); ok {
		port, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return nil, "", fmt.Errorf("bad %s=%s: %w", agentproto.CmdlineKey, spec, err)
		}
		ln, err := vsock.Listen(uint32(port), nil)
		if err != nil {
			return nil, "", fmt.Errorf("vsock listen on port %d: %w", port, err)
		}
		return func() (io.ReadWriteCloser, error) { return ln.Accept() }, "vsock:" + p, nil
	}
	port, err := boot.FindPort("agent", 10*time.Second)
	if err != nil {
		return nil, "", err
	}
	return func() (io.ReadWriteCloser, error) { return os.OpenFile(port, os.O_RDWR, 0) }, port, nil
}

// guestHost resets and re-identifies the guest this agent runs in.
type guestHost struct{ oci bool }

func (guestHost) Reset() error {
	boot.KillUser(jobUID)
	boot.KillUser(checkerUID)
	return errors.Join(boot.EmptyDir(boot.JobRoot), boot.EmptyDir("/tmp"))
}

func (h guestHost) SetIdentity(id *agentproto.Identity) error {
	if h.oci {
		// gVisor's random devices draw from the host's getrandom and its
		// clock is the host's: nothing of either is cloned with a sandbox.
		return nil
	}
	err := errors.Join(boot.Reseed(id.Seed), boot.SetClock(time.Unix(0, id.UnixNano)))
	if id.Net != nil {
		err = errors.Join(err, boot.ConfigureNet(id.Net))
	}
	return err
}
