package qemu_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/template"
	"github.com/codebench/codebench/internal/testenv"
)

// TestJailWalls reads a running clone's QEMU from the host, the way
// docs/SECURITY.md says the VMM wall is checked: another user, no new
// privileges, seccomp, namespaces of its own, a filesystem holding only
// what it needs, a template it cannot write, and a cgroup with limits.
func TestJailWalls(t *testing.T) {
	vm := testenv.NeedJail(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tpl, err := template.Ensure(ctx, vm.Driver, template.Config{
		Root: t.TempDir(), ImageHash: "jail", Spec: vm.Spec,
		Languages: []lang.Language{lang.Builtin()["python"]}, BootLimit: 3 * time.Minute,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("template: %v", err)
	}
	inst, err := tpl.Clone(ctx, vm.Driver, vm.Spec)
	if err != nil {
		t.Fatalf("clone: %v", err)
	}
	defer inst.Stop(ctx)
	pid := inst.VM.(sandbox.Processes).PIDs()[0]
	proc := func(name string) string { return filepath.Join("/proc", itoa(pid), name) }

	status, err := os.ReadFile(proc("status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Uid:\t" + itoa(vm.Jail.UID) + "\t" + itoa(vm.Jail.UID) + "\t" + itoa(vm.Jail.UID) + "\t" + itoa(vm.Jail.UID) + "\n",
		"Gid:\t" + itoa(vm.Jail.GID) + "\t",
		"NoNewPrivs:\t1\n",
		"Seccomp:\t2\n",
		"CapEff:\t0000000000000000\n",
	} {
		if !strings.Contains(string(status), want) {
			t.Errorf("QEMU's status lacks %q:\n%s", want, status)
		}
	}
	for _, ns := range []string{"mnt", "net", "pid", "ipc", "uts"} {
		theirs, err1 := os.Readlink(proc("ns/" + ns))
		ours, err2 := os.Readlink("/proc/self/ns/" + ns)
		if err1 != nil || err2 != nil || theirs == ours {
			t.Errorf("%s namespace: QEMU %s (%v), worker %s (%v)", ns, theirs, err1, ours, err2)
		}
	}

	// What QEMU sees of the filesystem: the image, not the host's /etc
	// or /root, and the template read-only.
	root := proc("root")
	for _, hidden := range []string{"/etc/shadow", "/root", "/var/log", "/home"} {
		if _, err := os.Lstat(filepath.Join(root, hidden)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is visible to QEMU (%v)", hidden, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, vm.Spec.Kernel)); err != nil {
		real, _ := filepath.EvalSymlinks(vm.Spec.Kernel)
		if _, err := os.Stat(filepath.Join(root, real)); err != nil {
			t.Errorf("the kernel is not visible to QEMU: %v", err)
		}
	}
	mem := filepath.Join(tpl.Dir, sandbox.TemplateMemFile)
	if f, err := os.OpenFile(filepath.Join(root, mem), os.O_WRONLY, 0); !errors.Is(err, syscall.EROFS) {
		if f != nil {
			f.Close()
		}
		t.Errorf("template RAM writable in QEMU's mount namespace (err %v, want EROFS)", err)
	}
	// As the VM's user on the host, the template cannot be opened for
	// writing; the same command on a file of the user's own can (so the
	// check can fail).
	ownDir, err := os.MkdirTemp("", "jail-control-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(ownDir)
	own := filepath.Join(ownDir, "own")
	if err := os.WriteFile(own, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{ownDir, own} {
		if err := os.Chown(p, vm.Jail.UID, vm.Jail.GID); err != nil {
			t.Fatal(err)
		}
	}
	asVMUser := func(path string) error {
		cmd := exec.Command("/bin/sh", "-c", `: >> "$1"`, "sh", path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(vm.Jail.UID), Gid: uint32(vm.Jail.GID)}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return errors.New(strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := asVMUser(own); err != nil {
		t.Fatalf("control: the VM user cannot write its own file: %v", err)
	}
	if err := asVMUser(mem); err == nil {
		t.Errorf("the VM user can open the template %s for writing", mem)
	}
	if st, err := os.Stat(mem); err != nil || st.Mode().Perm() != 0o444 || st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("template RAM file: %v %v", st.Mode(), err)
	}

	// Its cgroup: QEMU is in it, with a memory limit above the guest's
	// RAM and a process limit.
	cg, err := os.ReadFile(proc("cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cg), "/codebench/"+inst.VM.ID()+"\n") {
		t.Errorf("QEMU is not in its cgroup:\n%s", cg)
	}
	memLimit, pids, err := vm.Jail.Cgroups.Limits(inst.VM.ID())
	if err != nil {
		t.Fatal(err)
	}
	if memLimit < int64(vm.Spec.MemoryMB)<<20 || memLimit > int64(vm.Spec.MemoryMB+1024)<<20 || pids <= 0 || pids > 1024 {
		t.Errorf("cgroup limits: memory %d bytes, pids %d (guest RAM %d MiB)", memLimit, pids, vm.Spec.MemoryMB)
	}

	// And the jailed VM still runs programs.
	res, err := inst.Agent.Run(ctx, &agentproto.RunRequest{Language: "python", Code: "print(6*7)"}, nil)
	if err != nil || strings.TrimSpace(res.Stdout) != "42" {
		t.Fatalf("run in the jailed VM: %v %+v", err, res)
	}
	if err := inst.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, err := vm.Jail.Cgroups.Limits(inst.VM.ID()); err == nil {
		t.Errorf("the VM's cgroup outlived it")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
