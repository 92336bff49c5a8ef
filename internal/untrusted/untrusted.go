// Package untrusted renders text that came from a job, a guest or an agent
// before it goes into a message, a log line or a terminal: quoted and
// clipped to a bound (so one hostile field cannot make a status or a log line
// unbounded), or with control characters escaped (so program output cannot
// drive the user's terminal).
package untrusted

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// QuoteMax is how many bytes of a user string a message quotes.
const QuoteMax = 256

// Clip returns s cut to at most n bytes on a UTF-8 boundary, with a marker
// saying how long it was when it was cut.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("...[cut, %d bytes in all]", len(s))
}

// Quote is strconv.Quote of s clipped to QuoteMax bytes (the quoting itself
// may expand a character up to 10 bytes, so the result is bounded too).
func Quote(s string) string {
	if len(s) <= QuoteMax {
		return strconv.Quote(s)
	}
	cut := QuoteMax
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + fmt.Sprintf("...[cut, %d bytes in all]", len(s))
}

// ForTerminal escapes every control character but newline and tab (and
// invalid UTF-8) so that text from a program cannot move the cursor, change
// colours or talk to the terminal. Printable text, including non-ASCII, is
// kept as it is.
func ForTerminal(s string) string {
	clean := true
	for _, r := range s {
		if isControl(r) || r == utf8.RuneError {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case isControl(r):
			if r < 0x80 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteString(s[:size])
		}
		s = s[size:]
	}
	return b.String()
}

func isControl(r rune) bool {
	return (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r < 0xa0)
}

// ForFile is how text goes to f: escaped (ForTerminal) when f is a terminal,
// unchanged when it is a file or a pipe (programs reading it get the bytes).
func ForFile(f *os.File) func(string) string {
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
		return ForTerminal
	}
	return func(s string) string { return s }
}
