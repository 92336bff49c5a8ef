package lang

import (
	"regexp"
	"strings"
)

var versionRE = regexp.MustCompile(`\d+(\.\d+)+`)

// ShortVersion is the version number in what language name's version
// command printed ("Python 3.11.2": 3.11.2; Debian's "2:1.17-74" for the
// JDK: 17); "unknown" when there is none. Every front door names versions
// with it.
func ShortVersion(name, printed string) string {
	v := versionRE.FindString(printed)
	if v == "" {
		return "unknown"
	}
	if name == "java" {
		v = strings.TrimPrefix(v, "1.")
	}
	return v
}
