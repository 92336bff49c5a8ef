package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/execute"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/testenv"
)

// programs are each language's test programs beside its hello world
// (testdata/languages.json): one that reads two integers and prints their
// sum, one that does not compile (compiled languages), one that exits
// non-zero; files are a multi-file program's, by program.
type programs struct {
	Sum          string                       `json:"sum"`
	CompileError string                       `json:"compile_error"`
	RuntimeError string                       `json:"runtime_error"`
	Files        map[string]map[string]string `json:"files"`
}

func loadPrograms(t *testing.T) map[string]programs {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "languages.json"))
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]programs
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProgramsCoverEveryLanguage: the table test's programs name every
// language of the table, and only those.
func TestProgramsCoverEveryLanguage(t *testing.T) {
	progs := loadPrograms(t)
	table := lang.Builtin()
	for _, n := range table.Names() {
		if _, ok := progs[n]; !ok {
			t.Errorf("testdata/languages.json has no programs for %s", n)
		}
	}
	for n := range progs {
		if _, ok := table[n]; !ok {
			t.Errorf("testdata/languages.json has programs for %s, which the table lacks", n)
		}
	}
}

// A case is one program of one language and what must come of it.
type langCase struct {
	language, kind string // kind: hello, sum, compile_error, runtime_error
	code           string // the program's bytes
	files          map[string]string
}

// cases are every language's cases: hello world for all; the sum, a
// compile error and a runtime error where the language has them.
func langCases(t *testing.T, table lang.Table, names []string) []langCase {
	progs := loadPrograms(t)
	var out []langCase
	for _, n := range names {
		l := table[n]
		hello := l.Hello
		if l.CodeBase64 { // the table carries an executable's bytes in base64
			b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(hello))
			if err != nil {
				t.Fatal(err)
			}
			hello = string(b)
		}
		out = append(out, langCase{language: n, kind: "hello", code: hello})
		p := progs[n]
		for _, c := range []struct{ kind, code string }{{"sum", p.Sum}, {"compile_error", p.CompileError}, {"runtime_error", p.RuntimeError}} {
			if c.code != "" || p.Files[c.kind] != nil {
				out = append(out, langCase{language: n, kind: c.kind, code: c.code, files: p.Files[c.kind]})
			}
		}
	}
	return out
}

// sumInput and sumOutput are the sum program's input and answer.
const sumInput, sumOutput = "3 4\n", "7"

// TestLanguages: every language of the full profile's image (CI builds it),
// through the HTTP API in front of a real worker on the default driver:
// through Judge0 by id, hello world, the sum (judged against its expected
// output), a compile error (compilation error, with the compiler's
// message) and a runtime error (a non-zero exit); through Piston, the
// same four: hello world and the compile error (Piston's answer: no run
// stage) by the language's name, the sum and the runtime error by its
// alias. Then the official Judge0 IDE against the same API.
func TestLanguages(t *testing.T) {
	testenv.NeedVM(t)
	img := testenv.NeedImage(t, lang.ProfileAll)
	url := testenv.Vhost(t, "langs")
	table := lang.Builtin()
	var names []string
	for _, n := range table.Names() {
		if img.HasLanguage(n) {
			names = append(names, n)
		}
	}
	if len(names) != len(table) {
		t.Fatalf("the full profile's image has %d of the table's %d languages", len(names), len(table))
	}
	var wlogs, alogs bytes.Buffer
	startWorkerBinary(t, &wlogs, "RABBITMQ_URL="+url, "CODEBENCH_LANGUAGES=all", "CODEBENCH_RUN_DIR="+filepath.Join(t.TempDir(), "run"),
		"CODEBENCH_POOL_SIZE=2", "CODEBENCH_CONCURRENCY=2")
	_, base := startAPI(t, &alogs, "RABBITMQ_URL="+url, "CODEBENCH_LANGUAGES=all", "CODEBENCH_API_DATABASE_URL="+filepath.Join(t.TempDir(), "api.db"),
		"CODEBENCH_API_CLIENT_IN_FLIGHT=0", "CODEBENCH_API_CLIENT_PER_MINUTE=0", "CODEBENCH_API_CLIENT_SANDBOX=0")
	defer func() {
		if t.Failed() {
			t.Logf("worker:\n%s\napi:\n%s", lastOf(wlogs.String(), 20000), lastOf(alogs.String(), 20000))
		}
	}()

	// GET /languages lists each language once, under its first id; the
	// others are accepted; the five Debian cannot serve are unknown.
	var listed []map[string]any
	getJSON(t, base+"/languages", &listed)
	ids := map[float64]string{}
	for _, l := range listed {
		ids[l["id"].(float64)] = l["name"].(string)
	}
	for _, n := range names {
		j := table[n].Judge0
		if _, ok := ids[float64(j.IDs[0])]; !ok {
			t.Errorf("GET /languages lacks %s (%d)", n, j.IDs[0])
		}
		for _, also := range j.IDs[1:] {
			if _, ok := ids[float64(also)]; ok {
				t.Errorf("GET /languages lists %s's other id %d", n, also)
			}
			if code, m := apiCall(t, "GET", fmt.Sprintf("%s/languages/%d", base, also), nil); code != 200 || m["id"] != float64(also) {
				t.Errorf("GET /languages/%d: %d %v", also, code, m)
			}
		}
	}
	if len(listed) != len(names) || ids[61] != "Haskell (GHC 9.0.2)" || ids[82] != "SQL (SQLite 3.40.1)" {
		t.Errorf("GET /languages: %d languages, want %d: %v", len(listed), len(names), listed)
	}
	// The playground offers every language, each with its hello world.
	var play []map[string]any
	getJSON(t, base+"/playground/languages", &play)
	for _, l := range play {
		if h, _ := l["hello"].(string); h == "" {
			t.Errorf("the playground's %v has no hello world", l["name"])
		}
	}
	if len(play) != len(names) {
		t.Errorf("the playground offers %d languages, want %d", len(play), len(names))
	}
	for _, id := range []int{47, 70, 83, 84, 87} {
		code, m := apiCall(t, "POST", base+"/submissions", map[string]any{"source_code": "x", "language_id": id})
		if e, _ := json.Marshal(m); code != 422 || !strings.Contains(string(e), fmt.Sprintf("language with id %d doesn't exist", id)) {
			t.Errorf("language %d: %d %s", id, code, e)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	cases := langCases(t, table, names)
	// Two more through Judge0's older ids for GCC.
	cases = append(cases, langCase{language: "c", kind: "hello", code: table["c"].Hello}, langCase{language: "cpp", kind: "hello", code: table["cpp"].Hello})
	older := map[int]int{len(cases) - 2: 48, len(cases) - 1: 52}

	// Judge0: every case, in batches of 20, polled as a batch.
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tokens := make([]string, len(cases))
	for start := 0; start < len(cases); start += 20 {
		var batch []map[string]any
		for i := start; i < min(start+20, len(cases)); i++ {
			c := cases[i]
			id := table[c.language].Judge0.IDs[0]
			if o, ok := older[i]; ok {
				id = o
			}
			s := map[string]any{"source_code": b64(c.code), "language_id": id}
			if c.kind == "sum" {
				s["stdin"], s["expected_output"] = b64(sumInput), b64(sumOutput+"\n")
			}
			if c.files != nil {
				s["additional_files"] = zipOf(t, c.files)
			}
			batch = append(batch, s)
		}
		var answers []map[string]any
		if code := postJSON(t, base+"/submissions/batch?base64_encoded=true", map[string]any{"submissions": batch}, &answers); code != 201 {
			t.Fatalf("batch: %d %v", code, answers)
		}
		for k, a := range answers {
			tok, _ := a["token"].(string)
			if tok == "" {
				t.Fatalf("%s %s: %v", cases[start+k].language, cases[start+k].kind, a)
			}
			tokens[start+k] = tok
		}
	}

	// Piston, meanwhile: hello by name, the sum by alias, three at once.
	var pmu sync.Mutex
	var pistonErrs []string
	var wg sync.WaitGroup
	next := make(chan langCase)
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range next {
				if err := pistonCase(ctx, base, table[c.language], c); err != "" {
					pmu.Lock()
					pistonErrs = append(pistonErrs, err)
					pmu.Unlock()
				}
			}
		}()
	}
	for _, c := range langCases(t, table, names) {
		if table[c.language].Piston != nil {
			next <- c
		}
	}
	close(next)

	// The Judge0 answers.
	results := make([]map[string]any, len(cases))
	for start := 0; start < len(cases); start += 20 {
		end := min(start+20, len(cases))
		for {
			var page map[string][]map[string]any
			getJSON(t, base+"/submissions/batch?base64_encoded=true&fields=token,status,stdout,stderr,compile_output,message,exit_code,language&tokens="+
				strings.Join(tokens[start:end], ","), &page)
			done := 0
			for k, m := range page["submissions"] {
				results[start+k] = m
				if statusID(m) >= 3 {
					done++
				}
			}
			if done == end-start {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("submissions %d-%d unfinished", start, end)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	unb64 := func(m map[string]any, key string) string {
		s, _ := m[key].(string)
		b, _ := base64.StdEncoding.DecodeString(s)
		return string(b)
	}
	for i, c := range cases {
		m := results[i]
		id := statusID(m)
		stdout, compileOut := unb64(m, "stdout"), unb64(m, "compile_output")
		var ok bool
		switch c.kind {
		case "hello":
			want := "Hello, World!"
			if c.language == "plaintext" {
				want = c.code // the source is the output
			}
			ok = id == 3 && strings.Contains(stdout, want)
		case "sum":
			ok = id == 3 && strings.TrimSpace(stdout) == sumOutput
		case "compile_error":
			ok = id == 6 && compileOut != ""
		case "runtime_error":
			ok = id >= 7 && id <= 12
		}
		if !ok {
			t.Errorf("judge0 %s %s (language %v): status %v\nstdout %q\nstderr %q\ncompile_output %q\nmessage %q", c.language, c.kind, m["language"], m["status"],
				stdout, unb64(m, "stderr"), compileOut, unb64(m, "message"))
		}
	}
	wg.Wait()
	for _, e := range pistonErrs {
		t.Error(e)
	}

	var listedIDs []int
	for id := range ids {
		listedIDs = append(listedIDs, int(id))
	}
	t.Run("judge0 IDE", func(t *testing.T) { testJudge0IDE(t, base, listedIDs) })
}

// pistonCase runs c through Piston's execute: hello world and the
// compile error by the language's name, the sum and the runtime error by
// its first alias (the name where it has none); the compile error in
// Piston's shape (a compile stage, no run key).
func pistonCase(ctx context.Context, base string, l lang.Language, c langCase) string {
	name := l.Piston.Language
	if (c.kind == "sum" || c.kind == "runtime_error") && len(l.Piston.Aliases) > 0 {
		name = l.Piston.Aliases[0]
	}
	file := map[string]any{"content": c.code}
	if l.CodeBase64 {
		file = map[string]any{"content": base64.StdEncoding.EncodeToString([]byte(c.code)), "encoding": "base64"}
	}
	req := map[string]any{"language": name, "version": "*", "files": []any{file}}
	if c.kind == "sum" {
		req["stdin"] = sumInput
	}
	var code int
	var m map[string]any
	var err error
	for ctx.Err() == nil {
		// Piston answers when the job ends; a 503 (the queue full) is retried.
		if code, m, err = jsonRequest("POST", base+"/api/v2/execute", req); err == nil && code != http.StatusServiceUnavailable {
			break
		}
		time.Sleep(time.Second)
	}
	run, _ := m["run"].(map[string]any)
	compile, _ := m["compile"].(map[string]any)
	stdout, _ := run["stdout"].(string)
	var ok bool
	switch c.kind {
	case "hello":
		ok = code == 200 && strings.Contains(stdout, "Hello, World!") && run["code"] == 0.0
	case "sum":
		ok = code == 200 && strings.TrimSpace(stdout) == sumOutput && run["code"] == 0.0
	case "compile_error":
		_, hasRun := m["run"]
		ok = code == 200 && compile != nil && compile["code"] != 0.0 && !hasRun
	case "runtime_error":
		ok = code == 200 && run != nil && (run["code"] != 0.0 || run["signal"] != nil) && run["status"] != nil
	}
	if !ok {
		return fmt.Sprintf("piston %s (as %q) %s: %d %v %v", c.language, name, c.kind, code, m, err)
	}
	return ""
}

// TestLanguagesQEMUSample: a sample of the full profile in a QEMU microVM
// (TCG here, every instruction emulated): a compiled language, two
// interpreted ones, and the runtimes that need more memory than a C
// program (Mono, the JVM), each with its hello world and, for the first
// three, the sum, a compile error and a runtime error. One VM runs them
// all, one after another (the worker would give each its own).
func TestLanguagesQEMUSample(t *testing.T) {
	t.Setenv("CODEBENCH_LANGUAGES", lang.ProfileAll)
	vm := testenv.NeedVM(t)
	if !slices.Contains(vm.Image.LanguageNames(), "kotlin") {
		t.Fatalf("the VM's image is not the full profile's: %v", vm.Image.LanguageNames())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	inst, err := sandbox.Boot(ctx, vm.Driver, vm.Spec)
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Stop(context.WithoutCancel(ctx))
	policy := policyFor(vm.Config, vm.Image)
	table := lang.Builtin()
	var cases []langCase
	for _, c := range langCases(t, table, []string{"pascal", "ruby", "sql", "csharp", "kotlin"}) {
		if c.kind == "hello" || c.language == "pascal" || c.language == "ruby" || c.language == "sql" {
			cases = append(cases, c)
		}
	}
	for i, c := range cases {
		j := &job.Job{ID: fmt.Sprintf("qemu-%d", i), Language: c.language, Code: c.code, Files: c.files}
		if c.kind == "sum" {
			j.Stdin = sumInput
		}
		if err := j.Validate(policy); err != nil {
			t.Fatalf("%s %s: %v", c.language, c.kind, err)
		}
		start := time.Now()
		st := execute.Job(ctx, policy, inst, j, nil)
		var ok bool
		switch c.kind {
		case "hello":
			ok = st.Verdict == job.VerdictOK && strings.Contains(st.Stdout, "Hello, World!")
		case "sum":
			ok = st.Verdict == job.VerdictOK && strings.TrimSpace(st.Stdout) == sumOutput
		case "compile_error":
			ok = st.Verdict == job.VerdictCompileError && st.CompileOutput != ""
		case "runtime_error":
			ok = st.Verdict == job.VerdictRuntimeError
		}
		t.Logf("%s %s: %s in %v", c.language, c.kind, st.Verdict, time.Since(start).Round(time.Millisecond))
		if !ok {
			b, _ := json.Marshal(st)
			t.Errorf("qemu %s %s: %s", c.language, c.kind, b)
		}
	}
}

// getJSON GETs url into v.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %d: %v", url, resp.StatusCode, err)
	}
}

// postJSON POSTs body to url and decodes the answer into v.
func postJSON(t *testing.T, url string, body, v any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(v)
	return resp.StatusCode
}

// lastOf is the last n bytes of s.
func lastOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
