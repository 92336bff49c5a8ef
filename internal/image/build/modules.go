package build

import (
	"debug/elf"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// GuestModules are the kernel modules the guest needs before its root disk and
// agent channel exist; their dependencies are added in load order.
// virtio_console carries the agent channel under QEMU (virtio-serial), the
// vsock transport under Firecracker.
// virtio_net is the network device of a sandbox that asks for one.
var GuestModules = []string{"virtio_mmio", "virtio_blk", "virtio_console", "vmw_vsock_virtio_transport", "virtio_net"}

// resolveModules returns the .ko paths for want and their dependencies,
// dependencies first, reading each module's own "depends=" modinfo.
func resolveModules(modRoot string, want []string) ([]string, error) {
	index := map[string]string{}
	err := filepath.WalkDir(modRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasSuffix(p, ".ko") {
			index[modName(filepath.Base(p))] = p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string) error
	visit = func(name string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", name)
		case 2:
			return nil
		}
		path, ok := index[name]
		if !ok {
			// Built into the kernel: nothing to load.
			state[name] = 2
			return nil
		}
		state[name] = 1
		deps, err := moduleDepends(path)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, path)
		return nil
	}
	for _, w := range want {
		if _, ok := index[w]; !ok {
			return nil, fmt.Errorf("module %s not found under %s", w, modRoot)
		}
		if err := visit(w); err != nil {
			return nil, err
		}
	}
	return order, nil
}

func modName(file string) string {
	return strings.ReplaceAll(strings.TrimSuffix(file, ".ko"), "-", "_")
}

func moduleDepends(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, nil
	}
	data, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range strings.Split(string(data), "\x00") {
		if v, ok := strings.CutPrefix(kv, "depends="); ok && v != "" {
			var deps []string
			for _, d := range strings.Split(v, ",") {
				deps = append(deps, modName(d))
			}
			return deps, nil
		}
	}
	return nil, nil
}
