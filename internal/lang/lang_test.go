package lang

import "testing"

func TestBuiltinTable(t *testing.T) {
	tbl := Builtin()
	for _, name := range []string{"c", "cpp", "python", "go", "rust", "javascript", "java", "bash"} {
		if _, ok := tbl[name]; !ok {
			t.Fatalf("builtin table lacks %s", name)
		}
	}
	tests := map[string]string{"a.c": "c", "b.CPP": "cpp", "c.cc": "cpp", "x.py": "python", "x.cob": "cobol", "x.hs": "haskell",
		"x.m": "octave", "x.pl": "perl", "x.pro": "prolog"}
	for file, want := range tests {
		if l, ok := tbl.ByExtension(file); !ok || l.Name != want {
			t.Errorf("%s: got %q", file, l.Name)
		}
	}
	if _, ok := tbl.ByExtension("x.swift"); ok {
		t.Error("swift detected")
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

// TestJudge0AndPistonNames: every Judge0 CE 1.13.1 id Debian can serve is
// some language's, once; the five it cannot are nobody's; Piston's names
// and aliases name one language each.
func TestJudge0AndPistonNames(t *testing.T) {
	tbl := Builtin()
	byID := map[int]string{}
	piston := map[string]string{}
	for _, n := range tbl.Names() {
		l := tbl[n]
		if l.Judge0 == nil {
			t.Errorf("%s has no Judge0 id", n)
			continue
		}
		for _, id := range l.Judge0.IDs {
			if other, dup := byID[id]; dup {
				t.Errorf("Judge0 id %d is %s's and %s's", id, other, n)
			}
			byID[id] = n
		}
		if l.Piston == nil {
			continue
		}
		for _, name := range append([]string{l.Piston.Language}, l.Piston.Aliases...) {
			if other, dup := piston[name]; dup && other != n {
				t.Errorf("Piston name %q is %s's and %s's", name, other, n)
			}
			piston[name] = n
		}
	}
	notServed := map[int]bool{47: true, 70: true, 83: true, 84: true, 87: true}
	for id := 43; id <= 89; id++ {
		if _, ok := byID[id]; ok == notServed[id] {
			t.Errorf("Judge0 id %d: served %v, want %v", id, ok, !notServed[id])
		}
	}
	for name, want := range map[string]string{"csharp": "csharp", "mono": "csharp", "haskell": "haskell", "pascal": "pascal",
		"freepascal": "pascal", "sqlite3": "sql", "kotlin": "kotlin", "lisp": "commonlisp", "r": "r", "file": "executable"} {
		if piston[name] != want {
			t.Errorf("Piston %q is %q, want %q", name, piston[name], want)
		}
	}
}

func TestProfiles(t *testing.T) {
	tbl := Builtin()
	def, key, err := tbl.Profile("")
	if err != nil || key != ProfileDefault || len(def) != 8 {
		t.Fatalf("default: %v %q %v", def.Names(), key, err)
	}
	all, key, err := tbl.Profile(ProfileAll)
	if err != nil || key != ProfileAll || len(all) != len(tbl) || len(all) < 38 {
		t.Fatalf("all: %d %q %v", len(all), key, err)
	}
	l1, k1, err := tbl.Profile("ruby, c")
	_, k2, _ := tbl.Profile("c,ruby")
	if err != nil || len(l1) != 2 || k1 != k2 || k1 == ProfileDefault {
		t.Fatalf("list: %v %q %q %v", l1.Names(), k1, k2, err)
	}
	for _, bad := range []string{"cobol,swift", ",", "../x"} {
		if _, _, err := tbl.Profile(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
