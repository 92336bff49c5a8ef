package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/provision"
)

// LanguageRow is one language's hello world: compiled and run in sandboxes
// (the guest's own compile and run times, from the job's timings) and
// natively on the host with the same commands, where the host has them.
type LanguageRow struct {
	Language string `json:"language"`
	// Sandbox: n jobs, one sandbox each, one at a time.
	Compile Summary `json:"compile"`
	Run     Summary `json:"run"`
	Job     Summary `json:"job"` // end to end through the pool
	// Native: the same commands in a directory on the host; Native is
	// false when the host lacks the toolchain.
	Native        bool    `json:"native"`
	NativeCompile Summary `json:"native_compile"`
	NativeRun     Summary `json:"native_run"`
	Err           string  `json:"error,omitempty"`
}

// MeasureLanguages runs each language's hello world n times through a warm
// pool of prov's sandboxes, and natively where the host can.
func MeasureLanguages(ctx context.Context, prov *provision.Provisioner, policy job.Policy, table lang.Table, names []string, n int,
	progress func(string, ...any)) []LanguageRow {
	var rows []LanguageRow
	for _, name := range names {
		l, ok := table[name]
		if !ok {
			continue
		}
		row := LanguageRow{Language: name}
		mk := func(i int) *job.Job {
			return &job.Job{ID: fmt.Sprintf("bench-%s-%d", name, i), Language: name, Code: l.Hello}
		}
		rep, err := LoadLocalJobs(ctx, prov, policy, 1, n, 1, mk, func(st *job.Status) bool { return strings.Contains(st.Stdout, "Hello, World!") })
		if err != nil {
			row.Err = err.Error()
		} else {
			row.Compile, row.Run, row.Job = rep.Compile, rep.Run, rep.EndToEnd
		}
		row.NativeCompile, row.NativeRun, err = nativeLanguage(ctx, l, n)
		switch {
		case errors.Is(err, errNoToolchain):
		case err != nil:
			row.Err = strings.TrimSpace(row.Err + "; native: " + err.Error())
		default:
			row.Native = true
		}
		if progress != nil {
			progress("%s: sandbox compile p50 %v run p50 %v; native compile p50 %v run p50 %v %s", name,
				row.Compile.P50, row.Run.P50, row.NativeCompile.P50, row.NativeRun.P50, row.Err)
		}
		rows = append(rows, row)
	}
	return rows
}

// errNoToolchain: the host lacks a command the language needs.
var errNoToolchain = errors.New("the host lacks the toolchain")

// nativePath is where the native baseline finds its commands: Debian's
// own, as in the guest (the agent's PATH less /usr/local/bin, which on a
// host may hold another toolchain: /usr/local/go, pyenv, rustup shims).
var nativePath = []string{"/usr/bin", "/bin"}

// nativeCommand is argv[0] as the baseline runs it: a path under
// nativePath, or "" when none has it.
func nativeCommand(name string) string {
	if strings.Contains(name, "/") {
		if _, err := os.Stat(name); err != nil {
			return ""
		}
		return name
	}
	for _, dir := range nativePath {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// nativeLanguage compiles and runs l's hello world n times on the host,
// in a fresh directory each time, with the guest's commands and
// environment and Debian's toolchains (the same packages as the image).
func nativeLanguage(ctx context.Context, l lang.Language, n int) (compile, run Summary, err error) {
	l = l.For(l.Hello)
	for _, argv := range [][]string{l.Compile, l.Run} {
		if len(argv) == 0 || strings.HasPrefix(argv[0], "./") {
			continue
		}
		if nativeCommand(argv[0]) == "" {
			return Summary{}, Summary{}, errNoToolchain
		}
	}
	var cs, rs []time.Duration
	for i := 0; i < n; i++ {
		dir, err := os.MkdirTemp("", "codebench-native-")
		if err != nil {
			return Summary{}, Summary{}, err
		}
		c, r, err := nativeOnce(ctx, dir, l)
		os.RemoveAll(dir)
		if err != nil {
			return Summary{}, Summary{}, err
		}
		if c > 0 {
			cs = append(cs, c)
		}
		rs = append(rs, r)
	}
	return Summarize("native compile", cs), Summarize("native run", rs), nil
}

func nativeOnce(ctx context.Context, dir string, l lang.Language) (compile, run time.Duration, err error) {
	if err := os.WriteFile(filepath.Join(dir, l.Source), []byte(l.Hello), 0o644); err != nil {
		return 0, 0, err
	}
	do := func(argv []string) (time.Duration, string, error) {
		name := argv[0]
		if !strings.HasPrefix(name, "./") {
			name = nativeCommand(name)
		}
		cmd := exec.CommandContext(ctx, name, argv[1:]...)
		cmd.Dir = dir
		// The guest's environment (internal/guest/runner), not the host's.
		cmd.Env = []string{"PATH=" + strings.Join(nativePath, ":"), "HOME=" + dir, "LANG=C.UTF-8", "TMPDIR=" + dir}
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			return 0, "", fmt.Errorf("%s: %w: %s", argv[0], err, tailOf(string(out), 300))
		}
		return time.Since(start), string(out), nil
	}
	if len(l.Compile) > 0 {
		if compile, _, err = do(l.Compile); err != nil {
			return 0, 0, err
		}
	}
	run, out, err := do(l.Run)
	if err != nil {
		return 0, 0, err
	}
	if !strings.Contains(out, "Hello, World!") {
		return 0, 0, fmt.Errorf("printed %q", tailOf(out, 200))
	}
	return compile, run, nil
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// LanguagesTable renders rows as a Markdown table: medians in ms and the
// sandbox-to-native ratio of compile plus run.
func LanguagesTable(rows []LanguageRow) string {
	var b strings.Builder
	ms := func(d time.Duration) string {
		if d == 0 {
			return "-"
		}
		if ms := float64(d) / float64(time.Millisecond); ms < 10 {
			return fmt.Sprintf("%.1f", ms)
		}
		return fmt.Sprintf("%.0f", float64(d)/float64(time.Millisecond))
	}
	fmt.Fprintln(&b, "| language | gVisor compile p50 | gVisor run p50 | job p50 (pool) | native compile p50 | native run p50 | ratio (compile+run) |")
	fmt.Fprintln(&b, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rows {
		ratio := "-"
		if r.Native && r.NativeCompile.P50+r.NativeRun.P50 > 0 && r.Err == "" {
			ratio = fmt.Sprintf("%.1f", float64(r.Compile.P50+r.Run.P50)/float64(r.NativeCompile.P50+r.NativeRun.P50))
		}
		native := func(s Summary) string {
			if !r.Native {
				return "no toolchain"
			}
			return ms(s.P50)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |", r.Language, ms(r.Compile.P50), ms(r.Run.P50), ms(r.Job.P50),
			native(r.NativeCompile), native(r.NativeRun), ratio)
		if r.Err != "" {
			fmt.Fprintf(&b, " %s", strings.ReplaceAll(tailOf(r.Err, 200), "\n", " "))
		}
		fmt.Fprintln(&b)
	}
	return b.String()
}
