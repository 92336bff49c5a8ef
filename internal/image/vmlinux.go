package image

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/pierrec/lz4/v4"
)

// lz4LegacyMagic starts the LZ4 payload of a bzImage built with
// CONFIG_KERNEL_LZ4, as Debian's kernels are.
var lz4LegacyMagic = []byte{0x02, 0x21, 0x4c, 0x18}

// ExtractVmlinux writes the uncompressed ELF kernel inside a bzImage to out:
// Firecracker boots an ELF vmlinux on x86_64, not a bzImage. Like the kernel's
// scripts/extract-vmlinux, it tries each place the compression magic occurs
// and keeps the first that decompresses to a valid ELF file.
func ExtractVmlinux(bzImage, out string) error {
	data, err := os.ReadFile(bzImage)
	if err != nil {
		return err
	}
	for off := 0; ; {
		i := bytes.Index(data[off:], lz4LegacyMagic)
		if i < 0 {
			return errors.New("image: no LZ4 payload with an ELF kernel in " + bzImage)
		}
		off += i
		var buf bytes.Buffer
		// The payload is followed by other data, which ends the stream with
		// an error; what was decompressed before it is the kernel.
		_, _ = io.Copy(&buf, lz4.NewReader(bytes.NewReader(data[off:])))
		if f, err := elf.NewFile(bytes.NewReader(buf.Bytes())); err == nil {
			f.Close()
			tmp := out + ".tmp"
			if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
				return err
			}
			return os.Rename(tmp, out)
		}
		off += len(lz4LegacyMagic)
		if off >= len(data) {
			return fmt.Errorf("image: no ELF kernel in %s", bzImage)
		}
	}
}
