package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/sandbox"
)

var _ sandbox.Snapshotter = (*Driver)(nil)

// migSocket carries the device state (a migration stream without RAM:
// x-ignore-shared) between QEMU and the driver.
const migSocket = "mig.sock"

// SnapshotSupport implements sandbox.Snapshotter: QEMU can always clone,
// but a jailed QEMU only from a template it opens read-only (QEMU 8.2+):
// an older one would need every clone to be able to write the template.
func (d *Driver) SnapshotSupport() error {
	if d.cfg.Jail != nil && !d.readOnlyTemplates() {
		return d.tooOld()
	}
	return nil
}

// tooOld says why a jailed QEMU older than 8.2 cannot run clones, and what
// to install: never a bare "Permission denied" from deep in a VM start.
func (d *Driver) tooOld() error {
	return fmt.Errorf("%w: %s: a jailed QEMU needs 8.2 or later to map its snapshot template read-only "+
		"(readonly=on,rom=off); install qemu-system-x86 from bookworm-backports (scripts/install-deps.sh does "+
		"where the host's mirror serves it)", sandbox.ErrVMMTooOld, strings.TrimSuffix(d.Version(), " accel="+d.cfg.Accel))
}

// StartTemplate implements sandbox.Snapshotter: a VM whose RAM lives in the
// template's RAM file, shared, so that after Snapshot the file holds the guest's memory.
func (d *Driver) StartTemplate(ctx context.Context, spec sandbox.Spec, dir string) (sandbox.VM, error) {
	return d.launch(ctx, spec, launchOpts{memPath: filepath.Join(dir, sandbox.TemplateMemFile), shared: true})
}

// Snapshot implements sandbox.Snapshotter: the device state is migrated (RAM
// skipped, it is already in the shared file) over a Unix socket into
// dir/state; the VM ends paused and is stopped.
func (d *Driver) Snapshot(ctx context.Context, v sandbox.VM, dir string) error {
	vm, ok := v.(*VM)
	if !ok {
		return fmt.Errorf("qemu: snapshot of a %T", v)
	}
	defer vm.Stop(ctx)
	if err := setIgnoreShared(ctx, vm.qmp); err != nil {
		return err
	}
	sock := filepath.Join(vm.dir, migSocket)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	defer ln.Close()
	if err := vm.grant(sock); err != nil {
		return err
	}
	tmp := filepath.Join(dir, sandbox.TemplateStateFile+".tmp")
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer out.Close()
	copied := make(chan error, 1)
	go func() { // owned here: ends when the stream ends or ln closes
		c, err := ln.Accept()
		if err != nil {
			copied <- err
			return
		}
		defer c.Close()
		_, err = io.Copy(out, io.LimitReader(c, 1<<30))
		copied <- err
	}()
	if _, err := vm.qmp.Execute(ctx, "migrate", map[string]any{"uri": "unix:" + sock}); err != nil {
		ln.Close()
		<-copied
		return err
	}
	if err := waitMigration(ctx, vm, "query-migrate", "completed"); err != nil {
		ln.Close()
		<-copied
		return err
	}
	if err := <-copied; err != nil {
		return fmt.Errorf("qemu: receive snapshot stream: %w", err)
	}
	if err := out.Sync(); err != nil {
		return err
	}
	// The VM is gone before its RAM file is handed back.
	if err := vm.Stop(ctx); err != nil {
		return err
	}
	if err := d.templateDone(filepath.Join(dir, sandbox.TemplateMemFile)); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, sandbox.TemplateStateFile))
}

// Restore implements sandbox.Snapshotter: a new VM maps the template's RAM
// privately (copy on write: the template is never modified) and loads the
// device state; it runs from where the template was saved.
func (d *Driver) Restore(ctx context.Context, spec sandbox.Spec, dir string) (_ sandbox.VM, err error) {
	if err := d.SnapshotSupport(); err != nil {
		return nil, err
	}
	state, err := os.Open(filepath.Join(dir, sandbox.TemplateStateFile))
	if err != nil {
		return nil, err
	}
	defer state.Close()
	vm, err := d.launch(ctx, spec, launchOpts{memPath: filepath.Join(dir, sandbox.TemplateMemFile), incoming: true})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, vm.Stop(ctx))
		}
	}()
	if err := setIgnoreShared(ctx, vm.qmp); err != nil {
		return nil, err
	}
	sock := filepath.Join(vm.dir, migSocket)
	if _, err := vm.qmp.Execute(ctx, "migrate-incoming", map[string]any{"uri": "unix:" + sock}); err != nil {
		return nil, err
	}
	var dialer net.Dialer
	c, err := dialer.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, fmt.Errorf("qemu: connect to incoming migration: %w", err)
	}
	_, err = io.Copy(c, state)
	c.Close()
	if err != nil {
		return nil, fmt.Errorf("qemu: send snapshot stream: %w", err)
	}
	if err := waitMigration(ctx, vm, "query-status", "running"); err != nil {
		return nil, err
	}
	return vm, nil
}

func setIgnoreShared(ctx context.Context, q *qmp) error {
	_, err := q.Execute(ctx, "migrate-set-capabilities", map[string]any{
		"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}},
	})
	return err
}

// waitMigration polls a QMP query until its "status" is want, fails on a
// failed migration, the VM's exit, or ctx.
func waitMigration(ctx context.Context, vm *VM, query, want string) error {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		raw, err := vm.qmp.Execute(ctx, query, nil)
		if err != nil {
			return err
		}
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("qemu: %s: %w", query, err)
		}
		switch st.Status {
		case want:
			return nil
		case "failed", "cancelled", "internal-error", "guest-panicked":
			return fmt.Errorf("qemu: migration %s: %s", st.Status, st.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("qemu: waiting for %s %s (last %q): %w", query, want, st.Status, ctx.Err())
		case <-vm.done:
			return fmt.Errorf("%w during migration: %s", sandbox.ErrVMExited, vm.stderrTail())
		case <-tick.C:
		}
	}
}
