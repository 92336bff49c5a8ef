package job

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/codebench/codebench/internal/untrusted"
)

// fieldsOf are the JSON names of a struct type's fields.
func fieldsOf(t reflect.Type) map[string]bool {
	names := map[string]bool{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names[name] = true
		}
	}
	return names
}

var (
	jobFields     = fieldsOf(reflect.TypeFor[Job]())
	testFields    = fieldsOf(reflect.TypeFor[Test]())
	checkerFields = fieldsOf(reflect.TypeFor[Checker]())
	limitFields   = fieldsOf(reflect.TypeFor[Limits]())
)

// UnknownField names the first field of a job body its worker does not
// know, top-level or in a test, the checker, the interactor or the
// limits ("" when there is none): a job is refused rather than run without
// what it asked for (a misspelt "checker" would otherwise judge nothing).
// body decoded as a Job already.
func UnknownField(body []byte) string {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return ""
	}
	if f := firstUnknown(top, jobFields); f != "" {
		return untrusted.Quote(f)
	}
	nested := func(key string, known map[string]bool) string {
		var m map[string]json.RawMessage
		if raw, ok := top[key]; ok && json.Unmarshal(raw, &m) == nil {
			if f := firstUnknown(m, known); f != "" {
				return fmt.Sprintf("%s in %s", untrusted.Quote(f), key)
			}
		}
		return ""
	}
	for key, known := range map[string]map[string]bool{"checker": checkerFields, "interactor": checkerFields, "limits": limitFields} {
		if f := nested(key, known); f != "" {
			return f
		}
	}
	var tests []map[string]json.RawMessage
	if raw, ok := top["tests"]; ok && json.Unmarshal(raw, &tests) == nil {
		for i, t := range tests {
			if f := firstUnknown(t, testFields); f != "" {
				return fmt.Sprintf("%s in test %d", untrusted.Quote(f), i+1)
			}
		}
	}
	return ""
}

// firstUnknown is the first key of m (in sorted order) not in known.
func firstUnknown(m map[string]json.RawMessage, known map[string]bool) string {
	var unknown []string
	for k := range m {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	if len(unknown) == 0 {
		return ""
	}
	return unknown[0]
}
