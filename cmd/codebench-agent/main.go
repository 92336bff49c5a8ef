// Command codebench-agent runs inside the guest. As /init in the initramfs it
// mounts the root disk and switches to it; as "serve" it is PID 1 on the root
// and answers the host on the agent channel; as "exec" it is the trampoline
// that applies rlimits to a job and execs it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/guest/agent"
	"github.com/codebench/codebench/internal/guest/boot"
	"github.com/codebench/codebench/internal/guest/runner"
	"github.com/codebench/codebench/internal/lang"
)

// The unprivileged job user the image creates.
const jobUID, jobGID = 1000, 1000

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
		return serve()
	default:
		return fmt.Errorf("unknown command %q", os.Args[1])
	}
}

func serve() error {
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if os.Getpid() == 1 {
		if err := boot.Stage2(); err != nil {
			return err
		}
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
	open, where, err := agentChannel(boot.CmdlineValue(agentproto.CmdlineKey))
	if err != nil {
		return err
	}
	cgroups, err := runner.SetupCgroups("/sys/fs/cgroup", "jobs")
	if err != nil {
		log.Warn("no cgroup limits; memory is limited per process by RLIMIT_AS", "err", err)
	}
	r := &runner.Runner{
		Cgroups:    cgroups,
		MaxRuns:    100,
		Languages:  langs,
		JobRoot:    boot.JobRoot,
		UID:        jobUID,
		GID:        jobGID,
		Exec:       []string{boot.AgentPath, "exec"},
		AfterPhase: func() { boot.KillUser(jobUID) },
	}
	srv := &agent.Server{
		Hello:  agentproto.HelloInfo{Agent: "codebench-agent", Kernel: boot.KernelRelease(), Languages: langs.Names()},
		Runner: r,
		Host:   guestHost{},
		Log:    log,
	}
	log.Info("agent ready", "channel", where, "languages", langs.Names())
	fmt.Println("codebench-agent: ready") // the host's console log shows boot progress
	return srv.Serve(ctx, open)
}

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
type guestHost struct{}

func (guestHost) Reset() error {
	boot.KillUser(jobUID)
	return errors.Join(boot.EmptyDir(boot.JobRoot), boot.EmptyDir("/tmp"))
}

func (guestHost) SetIdentity(id *agentproto.Identity) error {
	return errors.Join(boot.Reseed(id.Seed), boot.SetClock(time.Unix(0, id.UnixNano)))
}
