package lang

import "testing"

func TestBuiltinTable(t *testing.T) {
	tbl := Builtin()
	for _, name := range []string{"c", "cpp", "python", "go", "rust", "javascript", "java", "bash"} {
		if _, ok := tbl[name]; !ok {
			t.Fatalf("builtin table lacks %s", name)
		}
	}
	tests := map[string]string{"a.c": "c", "b.CPP": "cpp", "c.cc": "cpp", "x.py": "python"}
	for file, want := range tests {
		if l, ok := tbl.ByExtension(file); !ok || l.Name != want {
			t.Errorf("%s: got %q", file, l.Name)
		}
	}
	if _, ok := tbl.ByExtension("x.cob"); ok {
		t.Error("cobol detected")
	}
}

func TestParseRejects(t *testing.T) {
	for _, bad := range []string{
		`{`,
		`[{"source":"a.c","run":["x"],"hello":"x"}]`,
		`[{"name":"c","source":"../a.c","run":["x"],"hello":"x"}]`,
		`[{"name":"c","source":"a.c"}]`,
		`[{"name":"c","source":"a.c","run":["x"],"hello":"x"},{"name":"c","source":"a.c","run":["x"],"hello":"x"}]`,
		`[{"name":"c","source":"a.c","run":["x"]}]`,
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestCheckCompileFlags(t *testing.T) {
	tbl := Builtin()
	tests := []struct {
		lang  string
		flags []string
		ok    bool
	}{
		{"c", nil, true},
		{"c", []string{"-O2", "-std=c99", "-Wall"}, true},
		{"c", []string{"-O2;rm"}, false},
		{"c", []string{"-o/etc/passwd"}, false},
		{"c", []string{"-fplugin=/tmp/x.so"}, false},
		{"cpp", []string{"-std=c++20", "-O3"}, true},
		{"rust", []string{"-C", "opt-level=2"}, true},
		{"python", []string{"-O"}, false},
		{"go", []string{"-race"}, false},
	}
	for _, tt := range tests {
		err := tbl[tt.lang].CheckCompileFlags(tt.flags)
		if (err == nil) != tt.ok {
			t.Errorf("%s %v: err=%v, want ok=%v", tt.lang, tt.flags, err, tt.ok)
		}
	}
}

func TestForNamesJavaFilesAfterThePublicClass(t *testing.T) {
	java := Builtin()["java"]
	tests := []struct{ code, source, class string }{
		{"public class Main { public static void main(String[] a) {} }", "Main.java", "Main"},
		{"import java.util.*;\n\npublic final class Solution {\n  public static void main(String[] a) {}\n}\nclass Helper {}", "Solution.java", "Solution"},
		{"class NotPublic { public static void main(String[] a) {} }", "Main.java", "Main"},
		{"// public class Trick\npublic class Real {}", "Real.java", "Real"},
		{"public class Bad;rm -rf {}", "Bad.java", "Bad"},
	}
	for _, tt := range tests {
		l := java.For(tt.code)
		if l.Source != tt.source || l.Run[len(l.Run)-1] != tt.class || l.Compile[len(l.Compile)-1] != tt.source {
			t.Errorf("%q: source %s compile %v run %v", tt.code, l.Source, l.Compile, l.Run)
		}
	}
	if c := Builtin()["c"]; c.For("int main(){}").Source != "main.c" {
		t.Error("a language without main is unchanged")
	}
}
