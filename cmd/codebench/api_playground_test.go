package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// testPlayground drives the playground page in a real headless Chromium
// (Debian's chromium): it loads, runs hello world in Python and in C, shows
// the output and the verdict, shows a compile error, and shows output
// streamed while a program runs.
func testPlayground(t *testing.T, base string) {
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("capability chromium: %v (scripts/install-deps.sh installs it)", err)
		}
		t.Skipf("capability chromium: %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitEnabled(chromedp.ID("run"))); err != nil {
		t.Fatalf("load: %v", err)
	}
	text := func(id string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("`+id+`").textContent`))
		if err != nil {
			t.Fatalf("read #%s: %v", id, err)
		}
		return v
	}
	if state := text("api-state"); !strings.Contains(state, "languages") {
		t.Fatalf("the page says %q", state)
	}
	// run picks a language (its hello world fills the editor) or sets
	// code, clicks Run, and waits for the verdict the page shows.
	run := func(langID, code string) (verdict, stdout, compile string) {
		t.Helper()
		js := `(() => { const s = document.getElementById("language"); s.value = "` + langID + `"; s.dispatchEvent(new Event("change")); return true })()`
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js)); err != nil {
			t.Fatal(err)
		}
		if code != "" {
			if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.ID("code"), code)); err != nil {
				t.Fatal(err)
			}
		}
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("run"))); err != nil {
			t.Fatal(err)
		}
		// The click clears the last verdict at once; the next one is this
		// run's.
		eventually(t, "the page's verdict", 2*time.Minute, func() bool { return text("verdict") != "" })
		eventually(t, "the Run button back", time.Minute, func() bool {
			on, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`!document.getElementById("run").disabled`))
			return on
		})
		return text("verdict"), text("stdout"), text("compile_output")
	}
	if v, out, _ := run("71", ""); v != "Accepted" || !strings.Contains(out, "Hello, World!") {
		t.Errorf("Python's hello world: %q %q", v, out)
	}
	if v, out, _ := run("50", ""); v != "Accepted" || !strings.Contains(out, "Hello, World!") {
		t.Errorf("C's hello world: %q %q", v, out)
	}
	if v, _, comp := run("50", "int main(void) { return nope; }"); v != "Compilation Error" || !strings.Contains(comp, "nope") {
		t.Errorf("a compile error: %q %q", v, comp)
	}
	if statuses := text("statuses"); !strings.Contains(statuses, "submitted") {
		t.Errorf("no statuses shown: %q", statuses)
	}
	// Streamed output: the first line is on the page while the program
	// still sleeps (no verdict yet), then the whole of it.
	js := `(() => { const s = document.getElementById("language"); s.value = "71"; s.dispatchEvent(new Event("change")); return true })()`
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.ID("code"), "import time\nprint('tick', flush=True)\ntime.sleep(6)\nprint('tock')"),
		chromedp.Click(chromedp.ID("run"))); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the streamed first line", 2*time.Minute, func() bool {
		return strings.Contains(text("stdout"), "tick") || text("verdict") != ""
	})
	if v := text("verdict"); v != "" || !strings.Contains(text("statuses"), "output streaming") {
		t.Errorf("the first line was not streamed: verdict %q, statuses %q, stdout %q", v, text("statuses"), text("stdout"))
	}
	eventually(t, "the page's verdict", 2*time.Minute, func() bool { return text("verdict") != "" })
	if v, out := text("verdict"), text("stdout"); v != "Accepted" || out != "tick\ntock\n" {
		t.Errorf("after streaming: %q %q", v, out)
	}
}
