package untrusted

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClipAndQuoteAreBounded(t *testing.T) {
	huge := strings.Repeat("\u0080", 400_000) // 800 KB; %q writes each as \u0080
	q := Quote(huge)
	if len(q) > 10*QuoteMax+64 || !strings.Contains(q, "cut, 800000 bytes in all") || !utf8.ValidString(q) {
		t.Fatalf("Quote of 800 KB is %d bytes: %.80q", len(q), q)
	}
	if got := Quote("cobol"); got != `"cobol"` {
		t.Fatalf("short strings are quoted whole: %s", got)
	}
	c := Clip(strings.Repeat("é", 1000), 101) // a 2-byte rune straddles the cut
	if !utf8.ValidString(c) || !strings.HasPrefix(c, strings.Repeat("é", 50)+"...[cut, 2000 bytes") {
		t.Fatalf("Clip: %q", c)
	}
}

func TestForTerminal(t *testing.T) {
	for in, want := range map[string]string{
		"Hello, World!\n\tok":     "Hello, World!\n\tok",
		"\x1b[2J\x1b]0;pwned\x07": `\x1b[2J\x1b]0;pwned\x07`,
		"bin\xff\x00":             `bin\xff\x00`,
		"é \u009b c1":             `é \u009b c1`,
		"\r overwrite":            `\x0d overwrite`,
	} {
		if got := ForTerminal(in); got != want {
			t.Errorf("ForTerminal(%q) = %q, want %q", in, got, want)
		}
	}
}
