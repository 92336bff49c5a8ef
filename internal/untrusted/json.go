package untrusted

import (
	"bytes"
	"fmt"
)

// JSONValues counts, without decoding or allocating, about how many values
// a JSON text holds: its objects and arrays, plus one more for every comma
// (each separates two members or elements), outside strings. Every Go value
// a decoder allocates for the text is one of these, so a decoder that
// checks the count first is bounded by it, whatever the text nests. It
// reads malformed text too (the decoder refuses that afterwards).
func JSONValues(b []byte) int {
	n := 1
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case escaped:
			escaped = false
		case inString:
			switch c {
			case '\\':
				escaped = true
			case '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[' || c == ',':
			n++
		}
	}
	return n
}

// TooManyJSONValues is the error of a text over its bound of values.
func TooManyJSONValues(what string, n, limit int) error {
	return fmt.Errorf("%s has %d JSON values or more, at most %d", what, n, limit)
}

// TopLevelString returns the value of the member key of a JSON object, when
// it is a string of at most max bytes without escapes, reading nothing
// else: no value of the text is decoded or allocated. Keys are matched as
// encoding/json matches a struct field (case-insensitively); of repeated
// keys the last wins, as there.
func TopLevelString(b []byte, key string, max int) (string, bool) {
	depth := 0
	var found string
	ok := false
	wantKey := true // at depth 1, the next string is a member's key
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '{', '[':
			depth++
			if depth == 1 {
				wantKey = c == '{'
			}
		case '}', ']':
			depth--
		case ',':
			if depth == 1 {
				wantKey = true
			}
		case '"':
			end := stringEnd(b, i)
			if end < 0 {
				return found, ok
			}
			if depth == 1 && wantKey {
				wantKey = false
				if bytes.EqualFold(b[i+1:end], []byte(key)) {
					// The value: after the colon, a plain string.
					j := end + 1
					for j < len(b) && (b[j] == ' ' || b[j] == '\t' || b[j] == '\n' || b[j] == '\r' || b[j] == ':') {
						j++
					}
					if j < len(b) && b[j] == '"' {
						vend := stringEnd(b, j)
						if vend < 0 {
							return found, ok
						}
						v := b[j+1 : vend]
						found, ok = "", false
						if len(v) <= max && bytes.IndexByte(v, '\\') < 0 {
							found, ok = string(v), true
						}
						i = vend
						continue
					}
					found, ok = "", false
				}
			}
			i = end
		}
	}
	return found, ok
}

// stringEnd is the index of the quote that ends the string starting at the
// quote b[start], or -1.
func stringEnd(b []byte, start int) int {
	for i := start + 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}
