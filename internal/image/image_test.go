package image

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMirrorFromDeb822(t *testing.T) {
	text := `Types: deb
# comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
`
	if got := mirrorFromDeb822(text, "bookworm"); got != "http://mirror.example/debian" {
		t.Fatalf("got %q", got)
	}
	if got := mirrorFromDeb822(text, "bookworm-security"); got != "http://security.example/debian-security" {
		t.Fatalf("got %q", got)
	}
	if got := mirrorFromDeb822(text, "trixie"); got != "" {
		t.Fatalf("got %q", got)
	}
}

func TestMirrorFromList(t *testing.T) {
	text := "# deb http://old/ bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\ndeb http://s.example bookworm-security main\n"
	if got := mirrorFromList(text, "bookworm"); got != "http://m.example/debian" {
		t.Fatalf("got %q", got)
	}
}

func TestDebianMirrorFromDir(t *testing.T) {
	root := t.TempDir()
	if _, err := DebianMirror(root, "bookworm"); err == nil {
		t.Fatal("empty apt dir gave a mirror")
	}
	os.MkdirAll(filepath.Join(root, "sources.list.d"), 0o755)
	os.WriteFile(filepath.Join(root, "sources.list"), []byte("deb http://l.example/debian bookworm main\n"), 0o644)
	if got, err := DebianMirror(root, "bookworm"); err != nil || got != "http://l.example/debian" {
		t.Fatalf("got %q %v", got, err)
	}
}

func TestCPIONewc(t *testing.T) {
	var buf bytes.Buffer
	cw := &cpioWriter{w: &buf}
	cw.Dir("dev")
	cw.File("init", 0o755, []byte("abc"))
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if len(b)%4 != 0 || !bytes.HasPrefix(b, []byte("070701")) || !bytes.Contains(b, []byte("TRAILER!!!\x00")) {
		t.Fatalf("not a newc archive: %q", b)
	}
	// Header of "init": mode 0100755 and file size 3, name then data aligned.
	i := bytes.Index(b, []byte("init\x00"))
	hdr := string(b[i-110 : i])
	if hdr[14:22] != "000081ED" || hdr[54:62] != "00000003" {
		t.Fatalf("init header %q", hdr)
	}
}

func writeImage(t *testing.T, m Manifest, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), m.Hash)
	os.MkdirAll(dir, 0o755)
	for name, body := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	os.WriteFile(filepath.Join(dir, ManifestFile), mustJSON(m), 0o644)
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
	f := filepath.Join(os.TempDir(), "cb-hash-"+randHex(4))
	os.WriteFile(f, []byte(s), 0o644)
	defer os.Remove(f)
	sum, _, _ := FileSHA256(f)
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

func TestHashOfIsUnambiguous(t *testing.T) {
	if hashOf("ab", "c") == hashOf("a", "bc") {
		t.Fatal("hashOf concatenates without separation")
	}
}
