package image

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeImage(t *testing.T, m Manifest, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), m.Hash)
	os.MkdirAll(dir, 0o755)
	for name, body := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	mj, _ := json.MarshalIndent(m, "", "  ")
	os.WriteFile(filepath.Join(dir, ManifestFile), mj, 0o644)
	return dir
}

func validManifest() (Manifest, map[string]string) {
	files := map[string]string{KernelFile: "kernel", InitrdFile: "initrd!", RootfsFile: "rootfs!!", RootTreeDir + agentInTree: "agent"}
	m := Manifest{Schema: Schema, Hash: strings.Repeat("a", 64), Languages: []LanguageInfo{{Name: "c"}}, RootTree: RootTreeDir}
	art := func(name string) Artifact {
		sum := hashOfBytes(files[name])
		return Artifact{File: name, SHA256: sum, Size: int64(len(files[name]))}
	}
	m.Kernel, m.Initrd, m.Rootfs = art(KernelFile), art(InitrdFile), art(RootfsFile)
	return m, files
}

func hashOfBytes(s string) string {
	f, _ := os.CreateTemp("", "cb-hash-")
	f.WriteString(s)
	f.Close()
	defer os.Remove(f.Name())
	sum, _, _ := FileSHA256(f.Name())
	return sum
}

func TestLoadAndVerify(t *testing.T) {
	m, files := validManifest()
	img, err := Load(writeImage(t, m, files))
	if err != nil {
		t.Fatal(err)
	}
	if err := img.Verify(); err != nil {
		t.Fatal(err)
	}
	if !img.HasLanguage("c") || img.HasLanguage("go") {
		t.Fatal("languages")
	}
}

func TestLoadDetectsCorruption(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m *Manifest, files map[string]string)
	}{
		{"truncated rootfs", func(m *Manifest, f map[string]string) { f[RootfsFile] = "r" }},
		{"missing kernel", func(m *Manifest, f map[string]string) { delete(f, KernelFile) }},
		{"wrong schema", func(m *Manifest, f map[string]string) { m.Schema = 99 }},
		{"no languages", func(m *Manifest, f map[string]string) { m.Languages = nil }},
		{"path in file name", func(m *Manifest, f map[string]string) { m.Kernel.File = "../vmlinuz" }},
		{"no root tree", func(m *Manifest, f map[string]string) { m.RootTree = "" }},
		{"root tree without the agent", func(m *Manifest, f map[string]string) { delete(f, RootTreeDir+agentInTree) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, files := validManifest()
			tt.mutate(&m, files)
			_, err := Load(writeImage(t, m, files))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
		})
	}
	// Same size, different bytes: only Verify sees it.
	m, files := validManifest()
	files[RootfsFile] = "ROOTFS!!"
	img, err := Load(writeImage(t, m, files))
	if err != nil {
		t.Fatal(err)
	}
	if err := img.Verify(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Verify err = %v", err)
	}
}

func TestManifestDirMismatch(t *testing.T) {
	m, files := validManifest()
	dir := writeImage(t, m, files)
	other := filepath.Join(filepath.Dir(dir), strings.Repeat("b", 64))
	os.Rename(dir, other)
	if _, err := Load(other); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v", err)
	}
}

// TestForLanguages: the image a configuration names is its profile's
// link; an install from before profiles serves the default profile from
// images/current; another profile without its image is an error that
// says how to build it; a hash names an image whatever the profile.
func TestForLanguages(t *testing.T) {
	m, files := validManifest()
	src := writeImage(t, m, files)
	data := t.TempDir()
	images := filepath.Join(data, ImagesSubdir)
	if err := os.MkdirAll(images, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(src, filepath.Join(images, m.Hash)); err != nil {
		t.Fatal(err)
	}
	if _, err := ForLanguages(data, "", "default"); !errors.Is(err, ErrNoImage) {
		t.Fatalf("nothing built: %v", err)
	}
	if err := os.Symlink(m.Hash, filepath.Join(images, CurrentLink)); err != nil {
		t.Fatal(err)
	}
	if img, err := ForLanguages(data, "", "default"); err != nil || img.Manifest.Hash != m.Hash {
		t.Fatalf("default from current: %v", err)
	}
	_, err := ForLanguages(data, "", "all")
	if !errors.Is(err, ErrNoImage) || !strings.Contains(err.Error(), "image build --languages all") {
		t.Fatalf("all, unbuilt: %v", err)
	}
	if err := os.Symlink(m.Hash, filepath.Join(images, ProfilePrefix+"all")); err != nil {
		t.Fatal(err)
	}
	if img, err := ForLanguages(data, "", "all"); err != nil || img.Manifest.Hash != m.Hash {
		t.Fatalf("all: %v", err)
	}
	if img, err := ForLanguages(data, m.Hash, "ruby,c"); err != nil || img.Manifest.Hash != m.Hash {
		t.Fatalf("by hash: %v", err)
	}
	if _, err := ForLanguages(data, "", "cobol,swift"); err == nil {
		t.Fatal("an unknown language")
	}
	if p := Profiles(data); len(p) != 1 || p[0].Profile != "all" {
		t.Fatalf("profiles: %+v", p)
	}
}
