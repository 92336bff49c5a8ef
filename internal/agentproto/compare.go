package agentproto

import "strings"

// Ways to compare a program's output with the expected output.
const (
	CompareExact              = "exact"
	CompareTrailingWhitespace = "trailing_whitespace" // the default
)

// OutputMatches compares a program's output with the expected one: exactly,
// or (the default) ignoring trailing spaces and tabs on each line, \r\n
// against \n, and trailing newlines. The agent uses it to stop at a failing
// test; the host to judge.
func OutputMatches(got, want, mode string) bool {
	if mode == CompareExact {
		return got == want
	}
	norm := func(s string) string {
		lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
		for i, l := range lines {
			lines[i] = strings.TrimRight(l, " \t\r")
		}
		return strings.TrimRight(strings.Join(lines, "\n"), "\n")
	}
	return norm(got) == norm(want)
}
