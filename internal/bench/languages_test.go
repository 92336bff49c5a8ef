package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/lang"
)

// TestNativeLanguage: the baseline compiles and runs a language's hello
// world with its own commands in the guest's environment; a language whose
// toolchain the host lacks has no baseline.
func TestNativeLanguage(t *testing.T) {
	sh := lang.Language{Name: "sh", Source: "main.sh", Compile: []string{"sh", "-c", "cp main.sh prog.sh"},
		Run: []string{"sh", "prog.sh"}, Hello: "echo \"Hello, World!\"; echo \"$HOME $PATH\" >&2\n"}
	c, r, err := nativeLanguage(context.Background(), sh, 3)
	if err != nil || c.N != 3 || r.N != 3 || r.P50 <= 0 {
		t.Fatalf("%v %+v %+v", err, c, r)
	}
	if _, _, err := nativeLanguage(context.Background(), lang.Language{Name: "x", Source: "m", Run: []string{"no-such-tool-here"}, Hello: "x"}, 1); err != errNoToolchain {
		t.Fatalf("missing toolchain: %v", err)
	}
	wrong := sh
	wrong.Hello = "echo bye\n"
	if _, _, err := nativeLanguage(context.Background(), wrong, 1); err == nil || !strings.Contains(err.Error(), "printed") {
		t.Fatalf("wrong output: %v", err)
	}
	table := LanguagesTable([]LanguageRow{{Language: "sh", Native: true, Compile: Summary{P50: 30 * time.Millisecond}, Run: Summary{P50: 10 * time.Millisecond},
		NativeCompile: Summary{P50: 3 * time.Millisecond}, NativeRun: Summary{P50: time.Millisecond}}, {Language: "x"}})
	if !strings.Contains(table, "| sh | 30 | 10 | - | 3.0 | 1.0 | 10.0 |") || !strings.Contains(table, "| x | - | - | - | no toolchain | no toolchain | - |") {
		t.Fatalf("%s", table)
	}
}
