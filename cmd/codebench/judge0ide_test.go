package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"
)

// ideHost is where the test serves the official Judge0 IDE's page from
// (testdata/judge0-ide); nothing the browser asks for leaves it: every
// request is answered by the test (Fetch interception), none by a network.
const ideHost = "ide.judge0.test"

// ideAPIHosts are the Judge0 hosts the IDE's code names: the CE ones are
// answered by the API under test, the extra-CE ones have no languages.
var ideAPIHosts = map[string]bool{"ce.judge0.com": true, "judge0-ce.p.sulu.sh": true}
var ideExtraHosts = map[string]bool{"extra-ce.judge0.com": true, "judge0-extra-ce.p.sulu.sh": true}

// ideNPM are the page's CDN scripts and Monaco, from npm at the versions
// the page names.
var ideNPM = []string{"jquery@3.7.1", "golden-layout@1.5.9", "semantic-ui-css@2.5.0", "monaco-editor@0.44.0"}

// ideDeps installs ideNPM once into a cache directory and returns its
// node_modules (npm reads its registry from its own configuration).
func ideDeps(t *testing.T) string {
	t.Helper()
	npm, err := exec.LookPath("npm")
	if err != nil {
		if os.Getenv("CI") != "" || os.Getenv("CODEBENCH_REQUIRE_VM") != "" {
			t.Fatalf("capability npm: %v", err)
		}
		t.Skipf("capability npm: %v", err)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(cache, "codebench-test", "judge0-ide-"+strings.Join(ideNPM, "+"))
	mods := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return mods
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(npm, append([]string{"install", "--no-save", "--no-package-lock", "--ignore-scripts", "--no-audit", "--no-fund", "--prefix", dir}, ideNPM...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install %v: %v\n%s", ideNPM, err, out)
	}
	if err := os.WriteFile(filepath.Join(dir, ".complete"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return mods
}

// ideFile maps a URL the IDE's page asks for to a file: its own, or
// npm's for its CDN scripts and Monaco ("" when there is none).
func ideFile(u *url.URL, mods string) string {
	p := path.Clean(u.Path)
	switch {
	case u.Host == ideHost && strings.HasPrefix(p, "/vendor/monaco-editor-0.44.0/"):
		return filepath.Join(mods, "monaco-editor", strings.TrimPrefix(p, "/vendor/monaco-editor-0.44.0/"))
	case u.Host == ideHost && p == "/":
		return filepath.Join("testdata", "judge0-ide", "index.html")
	case u.Host == ideHost:
		return filepath.Join("testdata", "judge0-ide", filepath.FromSlash(strings.TrimPrefix(p, "/")))
	case !strings.HasPrefix(p, "/ajax/libs/"): // the page's CDN, by its paths
		return ""
	}
	for prefix, dir := range map[string]string{
		"/ajax/libs/jquery/3.7.1/":            "jquery/dist",
		"/ajax/libs/golden-layout/1.5.9/css/": "golden-layout/src/css",
		"/ajax/libs/golden-layout/1.5.9/":     "golden-layout/dist",
		"/ajax/libs/semantic-ui/2.5.0/":       "semantic-ui-css",
	} {
		if rest, ok := strings.CutPrefix(p, prefix); ok && !strings.Contains(rest, "/css/") {
			return filepath.Join(mods, filepath.FromSlash(dir), filepath.FromSlash(rest))
		}
	}
	return ""
}

// ideAnswer is what the test answers one of the page's requests with.
func ideAnswer(ev *fetch.EventRequestPaused, base, mods string) (int, string, []byte) {
	u, err := url.Parse(ev.Request.URL)
	if err != nil {
		return 400, "text/plain", nil
	}
	switch {
	case ideAPIHosts[u.Host]:
		var body io.Reader
		if ev.Request.HasPostData {
			var b []byte
			for _, e := range ev.Request.PostDataEntries {
				b = append(b, e.Bytes...)
			}
			body = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(ev.Request.Method, base+u.RequestURI(), body)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 502, "text/plain", []byte(err.Error())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), b
	case ideExtraHosts[u.Host] && u.Path == "/languages":
		return 200, "application/json", []byte("[]")
	case u.Host == "js.puter.com":
		// Puter.js, a cloud SDK the page uses only when it runs as a Puter
		// app (puter.env === "app"): npm has no browser build of it.
		return 200, "text/javascript", []byte(`window.puter = {env: "web"};`)
	case u.Host == "fonts.googleapis.com":
		return 200, "text/css", nil
	}
	if f := ideFile(u, mods); f != "" {
		if b, err := os.ReadFile(f); err == nil {
			return 200, mime.TypeByExtension(path.Ext(f)), b
		}
	}
	return 404, "text/plain", []byte("not here")
}

// testJudge0IDE drives the official Judge0 IDE (judge0/ide, unchanged) in
// Debian's chromium, headless, against the API at base: its language list
// is the API's (less 89, which the IDE leaves out), and it runs a program
// in three languages the first release did not have, reading stdin.
func testJudge0IDE(t *testing.T, base string, listed []int) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" || os.Getenv("CODEBENCH_REQUIRE_VM") != "" {
			t.Fatalf("capability chromium: %v (scripts/install-deps.sh installs it)", err)
		}
		t.Skipf("capability chromium: %v", err)
	}
	mods := ideDeps(t)
	// The page's origin is the test's own host and the API's are others:
	// the IDE's cross-origin requests are answered here, so the browser's
	// CORS checks (the API's own are tested in internal/api) are off.
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-web-security", true))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTime := context.WithTimeout(ctx, 5*time.Minute)
	defer cancelTime()
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*"}}}); err != nil {
		t.Fatal(err)
	}
	paused := make(chan fetch.EventRequestPaused, 256)
	go func() {
		for ev, err := range chromedp.Events(ctx, fetch.RequestPaused) {
			if err != nil {
				return
			}
			paused <- ev
		}
	}()
	var mu sync.Mutex
	var missed []string
	go func() {
		for ev := range paused {
			go func(ev fetch.EventRequestPaused) {
				code, ctype, body := ideAnswer(&ev, base, mods)
				if os.Getenv("IDE_DEBUG") != "" && !strings.Contains(ev.Request.URL, "monaco") {
					t.Logf("%s %s %v -> %d %.200s", ev.Request.Method, ev.Request.URL, ev.Request.HasPostData, code, body)
				}
				if code == 404 {
					mu.Lock()
					missed = append(missed, ev.Request.URL)
					mu.Unlock()
				}
				headers := []*fetch.HeaderEntry{{Name: "Access-Control-Allow-Origin", Value: "*"}}
				if ctype != "" {
					headers = append(headers, &fetch.HeaderEntry{Name: "Content-Type", Value: ctype})
				}
				_, _ = chromedp.Call(ctx, fetch.FulfillRequest, fetch.FulfillRequestParams{RequestID: ev.RequestID, ResponseCode: int64(code),
					ResponseHeaders: headers, Body: body})
			}(ev)
		}
	}()
	if err := chromedp.Do(ctx, chromedp.Navigate("https://"+ideHost+"/")); err != nil {
		t.Fatalf("load the IDE: %v", err)
	}
	// The language list, once loaded and the editors made.
	var ids []int
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ready, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`typeof sourceEditor !== "undefined" && !!sourceEditor && typeof stdoutEditor !== "undefined" && !!stdoutEditor && document.querySelectorAll("#select-language option").length > 0`))
		if ready {
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("the IDE did not load its languages and editors; requests answered 404: %v", missed)
		}
		time.Sleep(200 * time.Millisecond)
	}
	ids, err = chromedp.Run(ctx, chromedp.Evaluate[[]int](`Array.from(document.querySelectorAll("#select-language option")).map(o => parseInt(o.value))`))
	if err != nil {
		t.Fatal(err)
	}
	want := slices.DeleteFunc(slices.Clone(listed), func(id int) bool { return id == 89 })
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("the IDE lists %v, the API %v (less 89)", ids, want)
	}
	for _, p := range []struct {
		id   int
		code string
	}{
		{61, "main :: IO ()\nmain = do\n    name <- getLine\n    putStrLn (\"Hello, \" ++ name ++ \" from Haskell\")\n"},
		{72, "name = gets.strip\nputs \"Hello, #{name} from Ruby\"\n"},
		{67, "program Hello;\nvar name: string;\nbegin\n    readln(name);\n    writeln('Hello, ', name, ' from Pascal');\nend.\n"},
	} {
		// As a user would: pick the language, clear the compiler options
		// the page fills in for C++ (Judge0 refuses them for Ruby and
		// GHC would refuse -Wuseless-cast), write the program and its
		// input, run.
		js := fmt.Sprintf(`(() => { try { $("#select-language").val("%d").trigger("change"); $("#compiler-options").val(""); sourceEditor.setValue(%q); stdinEditor.setValue("codebench"); run(); return "" } catch (e) { return String(e) + " " + e.stack } })()`, p.id, p.code)
		if msg, err := chromedp.Run(ctx, chromedp.Evaluate[string](js)); err != nil || msg != "" {
			t.Fatalf("language %d: %v %s", p.id, err, msg)
		}
		var status, out string
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			status, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`$("#status-line").text()`))
			out, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`stdoutEditor.getValue()`))
			if strings.Contains(status, "Accepted") || strings.Contains(status, "Error") || strings.Contains(out, "Error") {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !strings.Contains(status, "Accepted") || !strings.Contains(out, "Hello, codebench from") {
			modal, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`$("#site-modal .content").text()`))
			t.Errorf("language %d in the IDE: status %q, output %q, the page's error %q", p.id, status, out, modal)
		}
	}
}
