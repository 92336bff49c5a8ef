package config

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeNamesEverySetting: the README's settings table names every
// setting by its whole variable name (in backquotes, in a table row).
func TestReadmeNamesEverySetting(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows strings.Builder
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "| `") {
			rows.WriteString(l)
		}
	}
	for _, n := range Names() {
		if !strings.Contains(rows.String(), "`"+n+"`") {
			t.Errorf("README.md's settings table does not name %s", n)
		}
	}
}
