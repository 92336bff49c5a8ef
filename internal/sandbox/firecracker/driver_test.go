package firecracker

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/sandbox"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestMachineConfig(t *testing.T) {
	d, err := New(Config{RunDir: "/run/cb", VmlinuxCache: "/var/cache/cb"}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	spec := sandbox.Spec{ID: "fc-1", Kernel: "/img/vmlinuz", Initrd: "/img/initrd.cpio", Rootfs: "/img/rootfs.ext4", MemoryMB: 1024, VCPUs: 2}
	cfg := d.machineConfig(spec, "/run/cb/fc-1", "/var/cache/cb/vmlinux")

	if cfg.SocketPath != "/run/cb/fc-1/fc.sock" || cfg.KernelImagePath != "/var/cache/cb/vmlinux" || cfg.InitrdPath != spec.Initrd {
		t.Fatalf("paths: %+v", cfg)
	}
	if *cfg.MachineCfg.VcpuCount != 2 || *cfg.MachineCfg.MemSizeMib != 1024 || *cfg.MachineCfg.Smt {
		t.Fatalf("machine config: %+v", cfg.MachineCfg)
	}
	if len(cfg.Drives) != 1 || *cfg.Drives[0].PathOnHost != spec.Rootfs || !*cfg.Drives[0].IsReadOnly || *cfg.Drives[0].IsRootDevice {
		t.Fatalf("drives: %+v", cfg.Drives)
	}
	if len(cfg.VsockDevices) != 1 || cfg.VsockDevices[0].Path != "/run/cb/fc-1/v.sock" || cfg.VsockDevices[0].CID != 3 {
		t.Fatalf("vsock: %+v", cfg.VsockDevices)
	}
	for _, want := range []string{"codebench.agent=vsock:1024", "console=ttyS0", "rdinit=/init", "pci=off"} {
		if !strings.Contains(cfg.KernelArgs, want) {
			t.Errorf("kernel args %q lack %q", cfg.KernelArgs, want)
		}
	}
	// nil would make the SDK forward SIGINT/SIGTERM to every VMM.
	if cfg.ForwardSignals == nil || len(cfg.ForwardSignals) != 0 {
		t.Fatalf("ForwardSignals = %#v, want empty and non-nil", cfg.ForwardSignals)
	}
	if cfg.JailerCfg != nil {
		t.Fatal("jailer configured without being asked for")
	}
	if err := d.SnapshotSupport(); err == nil {
		t.Fatal("snapshot clones claimed without the jailer")
	}
}

func TestMachineConfigWithJailer(t *testing.T) {
	d, err := New(Config{RunDir: "/run/cb", VmlinuxCache: "/c", Jailer: &Jailer{UID: 1500, GID: 1500, NetNS: "/var/run/netns/cb"}}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	cfg := d.machineConfig(sandbox.Spec{ID: "fc-2", Rootfs: "/r", MemoryMB: 512, VCPUs: 1}, "/run/cb/fc-2", "/c/vmlinux")
	j := cfg.JailerCfg
	if j == nil || *j.UID != 1500 || *j.GID != 1500 || j.ID != "fc-2" || j.ChrootBaseDir != "/srv/jailer" ||
		j.JailerBinary != "jailer" || j.ExecFile != "firecracker" || j.CgroupVersion != "2" || j.ChrootStrategy == nil {
		t.Fatalf("jailer: %+v", j)
	}
	if cfg.NetNS != "/var/run/netns/cb" || cfg.SocketPath != APISocket || cfg.VsockDevices[0].Path != VsockSocket {
		t.Fatalf("chroot-relative paths: %+v", cfg)
	}
	if err := d.SnapshotSupport(); err != nil {
		t.Fatalf("jailer config cannot snapshot: %v", err)
	}
	cmd := jailerCommand(context.Background(), cfg, 512, io.Discard)
	got := strings.Join(cmd.Args, " ")
	for _, want := range []string{"--cgroup-version 2", "--cgroup memory.max=671088640 --cgroup memory.swap.max=0 --cgroup pids.max=64 -- --api-sock " + APISocket,
		"--netns /var/run/netns/cb", "--uid 1500 --gid 1500", "--exec-file firecracker"} {
		if !strings.Contains(got, want) {
			t.Errorf("jailer command %q lacks %q", got, want)
		}
	}
}

func TestJailerCgroupArgs(t *testing.T) {
	for _, tc := range []struct {
		version string
		want    string
	}{
		{"2", "--cgroup memory.max=402653184 --cgroup memory.swap.max=0 --cgroup pids.max=64"},
		{"1", "--cgroup memory.limit_in_bytes=402653184 --cgroup pids.max=64"},
	} {
		if got := strings.Join(jailerCgroupArgs(tc.version, 256), " "); got != tc.want {
			t.Errorf("v%s: %q, want %q", tc.version, got, tc.want)
		}
	}
}

// fakePeer plays Firecracker's side of the vsock Unix socket.
func fakePeer(t *testing.T, answer string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "v.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line, err := readLine(c, 64)
		if err != nil || line != "CONNECT 1024" {
			_, _ = c.Write([]byte("FAILURE\n"))
			return
		}
		if answer == "" {
			time.Sleep(10 * time.Second) // never answers
			return
		}
		_, _ = c.Write([]byte(answer))
		// Echo what follows, as the agent's side of the stream.
		_, _ = io.Copy(c, c)
	}()
	return path
}

func TestVsockHandshake(t *testing.T) {
	t.Run("ok", func(t *testing.T) {
		conn, err := dialVsock(context.Background(), fakePeer(t, "OK 1073741824\nhello"), AgentPort)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Bytes after the OK line belong to the stream, not the handshake.
		buf := make([]byte, 5)
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("stream after handshake: %q %v", buf, err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		if _, err := dialVsock(context.Background(), fakePeer(t, "FAILURE\n"), AgentPort); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("silent peer times out", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := dialVsock(ctx, fakePeer(t, ""), AgentPort); err == nil || time.Since(start) > 2*time.Second {
			t.Fatalf("err = %v after %s", err, time.Since(start))
		}
	})
	t.Run("no socket", func(t *testing.T) {
		if _, err := dialVsock(context.Background(), "/nonexistent/v.sock", AgentPort); err == nil {
			t.Fatal("dialled a missing socket")
		}
	})
}

// TestMachineConfigWithNIC: a networked VM gets the network's tap as its
// one interface, with the device MAC every clone shares, and its VMM runs
// in the VM's namespace (the jailer's --netns when jailed).
func TestMachineConfigWithNIC(t *testing.T) {
	nic := &sandbox.NIC{NetNS: "/run/netns/cbw-fc-3", Tap: "tap0", MAC: "0a:00:00:00:00:07"}
	for _, jailer := range []*Jailer{nil, {UID: 1500, GID: 1500, NetNS: "/var/run/netns/cb"}} {
		d, err := New(Config{RunDir: "/run/cb", VmlinuxCache: "/c", Jailer: jailer}, quiet)
		if err != nil {
			t.Fatal(err)
		}
		cfg := d.machineConfig(sandbox.Spec{ID: "fc-3", Rootfs: "/r", MemoryMB: 512, VCPUs: 1, NIC: nic}, "/run/cb/fc-3", "/c/vmlinux")
		if cfg.NetNS != nic.NetNS || len(cfg.NetworkInterfaces) != 1 {
			t.Fatalf("jailer %v: netns %q, interfaces %+v", jailer != nil, cfg.NetNS, cfg.NetworkInterfaces)
		}
		sc := cfg.NetworkInterfaces[0].StaticConfiguration
		if sc == nil || sc.HostDevName != "tap0" || sc.MacAddress != sandbox.DeviceMAC || cfg.NetworkInterfaces[0].CNIConfiguration != nil {
			t.Fatalf("interface: %+v", cfg.NetworkInterfaces[0])
		}
		if jailer != nil {
			if got := strings.Join(jailerCommand(context.Background(), cfg, 512, io.Discard).Args, " "); !strings.Contains(got, "--netns "+nic.NetNS) {
				t.Fatalf("jailer command %q is not in the VM's namespace", got)
			}
		}
	}
	d, _ := New(Config{RunDir: "/run/cb", VmlinuxCache: "/c"}, quiet)
	if cfg := d.machineConfig(sandbox.Spec{ID: "fc-4", Rootfs: "/r"}, "/run/cb/fc-4", "/c/vmlinux"); len(cfg.NetworkInterfaces) != 0 || cfg.NetNS != "" {
		t.Fatalf("a VM without a NIC has %+v in %q", cfg.NetworkInterfaces, cfg.NetNS)
	}
}
