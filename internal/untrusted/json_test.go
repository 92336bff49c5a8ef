package untrusted

import (
	"strings"
	"testing"
)

func TestJSONValues(t *testing.T) {
	for _, tc := range []struct {
		text string
		min  int // at least as many values as encoding/json would make
		max  int
	}{
		{`{}`, 1, 2},
		{`{"a":1,"b":[1,2,3]}`, 6, 8},
		{`{"s":"{[,,,]}\"{"}`, 2, 2},
		{`[[],[],[]]`, 4, 7},
	} {
		if n := JSONValues([]byte(tc.text)); n < tc.min || n > tc.max {
			t.Errorf("%s: %d values, want %d-%d", tc.text, n, tc.min, tc.max)
		}
	}
	// 8 MiB of empty objects: counted with no allocation. AllocsPerRun
	// (one P, the mean over runs, rounded down) keeps the runtime's own
	// background allocations out of it: a process-wide TotalAlloc once saw
	// 5 KB that were not JSONValues' (CI).
	body := []byte(`{"tests":[` + strings.Repeat(`{},`, 8<<20/3) + `{}]}`)
	var n int
	if allocs := testing.AllocsPerRun(5, func() { n = JSONValues(body) }); n < 8<<20/3 || allocs != 0 {
		t.Fatalf("%d values, %v allocations per count", n, allocs)
	}
}

func TestTopLevelString(t *testing.T) {
	for _, tc := range []struct {
		text, want string
		ok         bool
	}{
		{`{"id":"666","code":"x"}`, "666", true},
		{` { "ID" : "abc" } `, "abc", true},
		{`{"code":"\"id\":\"fake\"","id":"real"}`, "real", true},
		{`{"x":{"id":"nested"},"id":"top"}`, "top", true},
		{`{"x":{"id":"nested"}}`, "", false},
		{`{"id":5}`, "", false},
		{`{"id":"a\"b"}`, "", false},
		{`{"id":"first","id":"last"}`, "last", true},
		{`{"id":"` + strings.Repeat("a", 200) + `"}`, "", false},
		{`["id","x"]`, "", false},
		{`{"id":"unterminated`, "", false},
		{`{"a":"id","b":"c"}`, "", false},
	} {
		got, ok := TopLevelString([]byte(tc.text), "id", 128)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: %q %v, want %q %v", tc.text, got, ok, tc.want, tc.ok)
		}
	}
}
