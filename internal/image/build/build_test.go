package build

import (
	"bytes"
	"os"
	"path/filepath"
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

func TestHashOfIsUnambiguous(t *testing.T) {
	if hashOf("ab", "c") == hashOf("a", "bc") {
		t.Fatal("hashOf concatenates without separation")
	}
}
