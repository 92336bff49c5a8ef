package image

import (
	"debug/elf"
	"os"
	"path/filepath"
	"testing"

	"github.com/codebench/codebench/internal/config"
)

func TestExtractVmlinuxFromTheImageKernel(t *testing.T) {
	img, err := Current(dataDirForTest())
	if err != nil {
		t.Skipf("no guest image to take a kernel from: %v", err)
	}
	out := filepath.Join(t.TempDir(), "vmlinux")
	if err := ExtractVmlinux(img.KernelPath(), out); err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatalf("not ELF: %v", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		t.Fatalf("machine %v type %v", f.Machine, f.Type)
	}
}

func TestExtractVmlinuxRejectsGarbage(t *testing.T) {
	in := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(in, append([]byte("junk"), append(lz4LegacyMagic, 1, 2, 3)...), 0o644)
	if err := ExtractVmlinux(in, in+".out"); err == nil {
		t.Fatal("garbage gave a kernel")
	}
}

func dataDirForTest() string {
	cfg, err := config.FromEnv()
	if err != nil {
		return config.Default().DataDir
	}
	return cfg.DataDir
}
