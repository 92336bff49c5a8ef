package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/envd"
	"github.com/codebench/codebench/internal/guest/boot"
	"github.com/codebench/codebench/internal/guest/runner"
	"github.com/codebench/codebench/internal/sandboxlink"
)

const sandboxGID = agentproto.SandboxUID

// startEnvd makes this sandbox a long-lived one: a fresh tmpfs for the
// user's home (made before the user runs anything, so no path in it is the
// user's yet), then envd as the user, restricted like a job, on the
// container's stdio. The returned func waits for envd to end.
func startEnvd(r *runner.Runner, req *agentproto.Envd) (func() error, error) {
	size := max(req.HomeMB, 16)
	if err := syscall.Mount("tmpfs", agentproto.SandboxHomeRoot, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV,
		fmt.Sprintf("mode=0755,size=%dm", size)); err != nil {
		return nil, fmt.Errorf("mount the home: %w", err)
	}
	if err := makeHome(); err != nil {
		return nil, err
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + agentproto.SandboxHome,
		"USER=" + agentproto.SandboxUser, "LOGNAME=" + agentproto.SandboxUser, "SHELL=/bin/bash", "LANG=C.UTF-8"}
	for k, v := range req.Envs {
		env = append(env, k+"="+v)
	}
	cmd := exec.Command(boot.AgentPath, "envd")
	cmd.Dir = agentproto.SandboxHome
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true,
		Credential: &syscall.Credential{Uid: agentproto.SandboxUID, Gid: sandboxGID, Groups: []uint32{}}}
	if err := r.StartRestricted(cmd); err != nil {
		return nil, fmt.Errorf("start envd: %w", err)
	}
	return cmd.Wait, nil
}

// makeHome makes the user's home on the fresh tmpfs, with /etc/skel's files.
func makeHome() error {
	home := agentproto.SandboxHome
	if err := os.Mkdir(home, 0o750); err != nil {
		return err
	}
	err := filepath.WalkDir("/etc/skel", func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == "/etc/skel" {
			return err
		}
		dst := filepath.Join(home, strings.TrimPrefix(p, "/etc/skel/"))
		if d.IsDir() {
			return errors.Join(os.Mkdir(dst, 0o755), os.Lchown(dst, agentproto.SandboxUID, sandboxGID))
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return errors.Join(os.WriteFile(dst, b, 0o644), os.Lchown(dst, agentproto.SandboxUID, sandboxGID))
	})
	if err != nil {
		return fmt.Errorf("home: %w", err)
	}
	return os.Chown(home, agentproto.SandboxUID, sandboxGID)
}

// serveEnvd is "codebench-agent envd": the data plane of a long-lived
// sandbox, as its user, on stdin and stdout until the host closes them.
func serveEnvd() error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if os.Getuid() == 0 {
		return fmt.Errorf("envd must not run as root")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	home, _ := os.UserHomeDir()
	h := envd.Handler(envd.Config{User: agentproto.SandboxUser, Home: home, Env: os.Environ(), Log: log})
	log.Info("envd ready", "user", agentproto.SandboxUser, "home", home)
	return sandboxlink.Serve(ctx, stdio{}, h, log)
}
