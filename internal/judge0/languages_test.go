package judge0

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/submission"
)

// fullCodec is the codec for every language of the table.
func fullCodec() *Codec {
	return New(Languages(lang.Builtin(), map[string]string{"c": "12.2.0", "kotlin": "kotlin 1.3.31+ds1-1"}), DefaultLimits)
}

func validate(t *testing.T, c *Codec, body string) (*Valid, Errors) {
	t.Helper()
	r, err := Decode([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return c.Validate(r, false)
}

// TestLanguagesByID: one listing per toolchain under its first id, the
// older ids accepted, the names carrying the image's versions.
func TestLanguagesByID(t *testing.T) {
	c := fullCodec()
	listed := map[int]bool{}
	for _, l := range c.Languages() {
		listed[l.ID] = true
	}
	if !listed[50] || listed[48] || listed[49] || !listed[54] || listed[52] || len(c.Languages()) != len(lang.Builtin()) {
		t.Fatalf("listed: %v", listed)
	}
	for id, name := range map[int]string{48: "C (GCC 12.2.0)", 50: "C (GCC 12.2.0)", 78: "Kotlin (1.3.31)", 43: "Plain Text", 89: "Multi-file program"} {
		if l, ok := c.Language(id); !ok || l.ID != id || l.Name != name {
			t.Errorf("%d: %+v", id, l)
		}
	}
	if _, ok := c.Language(47); ok {
		t.Error("47 (FreeBASIC) served")
	}
}

// TestRuntimeNeeds: a runtime that needs more memory or a larger file
// gets it by default; what a client asks for binds it.
func TestRuntimeNeeds(t *testing.T) {
	c := fullCodec()
	v, errs := validate(t, c, `{"source_code":"fun main() {}","language_id":78}`)
	if errs != nil || v.Job.Limits.MemoryKB != lang.Builtin()["kotlin"].Limits.MemoryKB {
		t.Fatalf("kotlin: %v %+v", errs, v)
	}
	if v.Options.LanguageID != 78 || v.Job.Limits.CPUMS != lang.Builtin()["kotlin"].Limits.CPUMS {
		t.Fatalf("kotlin's CPU: %+v", v.Job.Limits)
	}
	v, errs = validate(t, c, `{"source_code":"fun main() {}","language_id":78,"memory_limit":64000}`)
	if errs != nil || v.Job.Limits.MemoryKB != 64000 {
		t.Fatalf("kotlin, 64000: %v %+v", errs, v)
	}
	v, errs = validate(t, c, `{"source_code":"main(_) -> ok.","language_id":58}`)
	if errs != nil || v.Job.Limits.FileSizeKB != lang.Builtin()["erlang"].Limits.FileSizeKB {
		t.Fatalf("erlang: %v %+v", errs, v)
	}
	v, errs = validate(t, c, `{"source_code":"int main(){}","language_id":50}`)
	if errs != nil || v.Job.Limits.MemoryKB != DefaultLimits.MemoryLimit || v.Job.Limits.FileSizeKB != DefaultLimits.MaxFileSize {
		t.Fatalf("c: %v %+v", errs, v)
	}
}

// TestExecutableAndMultiFile: 44 carries the source's bytes (any bytes)
// in base64 and renders them back; 89 needs no source code.
func TestExecutableAndMultiFile(t *testing.T) {
	c := fullCodec()
	elf := "\x7fELF\x02\x01\x01\x00\xff\xfe"
	r, err := Decode([]byte(`{"source_code":"` + base64.StdEncoding.EncodeToString([]byte(elf)) + `","language_id":44}`))
	if err != nil {
		t.Fatal(err)
	}
	v, errs := c.Validate(r, true)
	if errs != nil || v.Job.Language != "executable" || v.Job.Code != base64.StdEncoding.EncodeToString([]byte(elf)) {
		t.Fatalf("44: %v %+v", errs, v)
	}
	rec := &submission.Record{Token: "t", Job: v.Job, Options: mustOptions(t, v.Options), Status: &job.Status{Status: job.StatusDone, Verdict: job.VerdictOK}}
	out, err := c.Render(rec, []string{"source_code", "language_id"}, true)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(out)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	if got, _ := decode64(m["source_code"].(string)); string(got) != elf || m["language_id"] != 44.0 {
		t.Fatalf("rendered: %s", b)
	}
	if _, errs := validate(t, c, `{"language_id":89}`); errs != nil {
		t.Fatalf("89 without source: %v", errs)
	}
	if _, errs := validate(t, c, `{"language_id":50}`); errs == nil || errs["source_code"] == nil {
		t.Fatalf("50 without source: %v", errs)
	}
}

func mustOptions(t *testing.T, o Options) json.RawMessage {
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
