package lang

import "testing"

func TestBuiltinTable(t *testing.T) {
	tbl := Builtin()
	for _, name := range []string{"c", "cpp", "python"} {
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
