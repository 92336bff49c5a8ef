package bench

import (
	"bufio"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

//go:embed sandboxes.mjs
var sandboxesScript []byte

// SandboxesScripts are the scripts bench --sandboxes runs with the E2B SDK
// (internal/e2bsdk installs them beside it).
func SandboxesScripts() map[string][]byte {
	return map[string][]byte{"sandboxes.mjs": sandboxesScript}
}

// SandboxesOptions are bench --sandboxes's.
type SandboxesOptions struct {
	N      int // creates a second apart, pause and resume cycles (and at least 20 commands)
	Idle   int // running sandboxes held at once for their memory
	Paused int // paused sandboxes held at once for their disk
	Addr   string
	Pool   int // the host's warm pool, for the report
	SDKDir string
	// Processes are each running sandbox's host processes
	// (sandboxes.Manager.Processes); StateDir holds their checkpoints.
	Processes func() map[string][]int
	StateDir  string
	// The floor: bash -l -c 'echo hi' in a sandbox of the driver's own
	// runtime on the image's root tree, under the same CPU bound.
	RootDir    string
	OCIRuntime func(stateDir string) ([]string, error)
	CPUs       int
	Progress   func(format string, a ...any)
}

// SandboxesReport is bench --sandboxes's answer.
type SandboxesReport struct {
	Driver  string `json:"driver"`
	Machine string `json:"machine"`
	Pool    int    `json:"pool"`
	// SDK calls, start to resolved promise.
	Create Summary `json:"create"`
	Burst  Summary `json:"burst_of_10"`
	Run    Summary `json:"run_echo_hi"`
	Pause  Summary `json:"pause"`
	Resume Summary `json:"resume"`
	// The same shell command, timed inside a sandbox of gVisor's own
	// runtime (no agent, no filter) and natively.
	FloorLogin  Summary `json:"floor_bash_login"`
	NativeLogin Summary `json:"native_bash_login"`
	// Idle running sandboxes: PSS of their host processes, per sandbox.
	Idle         int   `json:"idle"`
	IdlePSSKBP50 int64 `json:"idle_pss_kb_p50"`
	IdlePSSKBMax int64 `json:"idle_pss_kb_max"`
	IdlePSSKBAll int64 `json:"idle_pss_kb_total"`
	// Paused sandboxes: their checkpoints' disk, per sandbox.
	Paused        int      `json:"paused"`
	PausedKBP50   int64    `json:"paused_disk_kb_p50"`
	PausedKBMax   int64    `json:"paused_disk_kb_max"`
	PausedKBTotal int64    `json:"paused_disk_kb_total"`
	Targets       []Target `json:"targets"`
}

// E2B's published figures as issue 31 quotes them, printed beside ours
// for scale (not measured here): a create's median, pause per GiB of
// memory, resume.
const (
	e2bCreate      = 440 * time.Millisecond
	e2bPausePerGiB = 4 * time.Second
	e2bResume      = time.Second
)

// MeasureSandboxes runs the SDK's timings, then holds Idle running and
// Paused paused sandboxes for their memory and disk.
func MeasureSandboxes(ctx context.Context, o SandboxesOptions) (*SandboxesReport, error) {
	progress := o.Progress
	if progress == nil {
		progress = func(string, ...any) {}
	}
	rep := &SandboxesReport{Machine: machine(), Pool: o.Pool}
	script := "for ((i = 0; i < 50; i++)); do t=$EPOCHREALTIME; bash -l -c 'echo hi' > /dev/null; u=$EPOCHREALTIME; echo \"login $t $u\"; done"
	if o.OCIRuntime != nil {
		progress("gVisor's own: bash -l -c 'echo hi' 50 times in one sandbox of the runtime, same CPU bound")
		bound, release, err := floorCgroup(max(o.CPUs, 1))
		if err != nil {
			return nil, err
		}
		out, err := runOCIScript(ctx, o.OCIRuntime, o.RootDir, bound, script, nil)
		release()
		if err != nil {
			return nil, fmt.Errorf("floor: %w", err)
		}
		s := map[string][]time.Duration{}
		if err := parseFloor(out, s); err != nil {
			return nil, err
		}
		rep.FloorLogin = Summarize("gVisor's own bash -l -c 'echo hi'", s["login"])
	}
	if nativeCommand("bash") != "" {
		out, err := runNativeScript(ctx, script, nil)
		if err != nil {
			return nil, fmt.Errorf("native: %w", err)
		}
		s := map[string][]time.Duration{}
		if err := parseFloor(out, s); err != nil {
			return nil, err
		}
		rep.NativeLogin = Summarize("native bash -l -c 'echo hi'", s["login"])
	}

	progress("the SDK: %d creates a second apart, a burst of 10, commands, %d pause and resume cycles", o.N, o.N)
	out, err := runSDKScript(ctx, o, "timings", o.N, nil)
	if err != nil {
		return nil, err
	}
	var raw map[string][]float64
	if err := json.Unmarshal(lastLine(out), &raw); err != nil {
		return nil, fmt.Errorf("the SDK's timings: %w: %s", err, out)
	}
	rep.Create = Summarize("create", msDurations(raw["create_ms"]))
	rep.Burst = Summarize("create, 10 at once", msDurations(raw["burst_ms"]))
	rep.Run = Summarize("commands.run('echo hi')", msDurations(raw["run_ms"]))
	rep.Pause = Summarize("pause", msDurations(raw["pause_ms"]))
	rep.Resume = Summarize("resume (connect)", msDurations(raw["resume_ms"]))

	if o.Idle > 0 {
		progress("%d idle running sandboxes", o.Idle)
		_, err := runSDKScript(ctx, o, "idle", o.Idle, func() error {
			time.Sleep(3 * time.Second) // settle: what the creates touched is freed
			var pss []int64
			for _, pids := range o.Processes() {
				kb, err := PSSOf(pids)
				if err != nil {
					continue // one ended meanwhile
				}
				pss = append(pss, kb)
			}
			if len(pss) == 0 {
				return errors.New("no running sandbox to measure")
			}
			rep.Idle = len(pss)
			rep.IdlePSSKBP50, rep.IdlePSSKBMax, rep.IdlePSSKBAll = spread(pss)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if o.Paused > 0 {
		progress("%d paused sandboxes", o.Paused)
		_, err := runSDKScript(ctx, o, "paused", o.Paused, func() error {
			dirs, _ := filepath.Glob(filepath.Join(o.StateDir, "*", "checkpoint"))
			var kbs []int64
			for _, d := range dirs {
				kbs = append(kbs, diskKB(d))
			}
			if len(kbs) == 0 {
				return errors.New("no paused sandbox to measure")
			}
			rep.Paused = len(kbs)
			rep.PausedKBP50, rep.PausedKBMax, rep.PausedKBTotal = spread(kbs)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	rep.Targets = []Target{
		{Name: "create p50, from a warm pool, creates a second apart", Value: ms(rep.Create.P50), Limit: 50, Met: rep.Create.P50 <= 50*time.Millisecond, Unit: "ms"},
		{Name: "commands.run('echo hi') p50", Value: ms(rep.Run.P50), Limit: 30, Met: rep.Run.P50 <= 30*time.Millisecond, Unit: "ms"},
		{Name: "pause p50 (idle: a shell and a sleeping process)", Value: ms(rep.Pause.P50), Limit: 300, Met: rep.Pause.P50 <= 300*time.Millisecond, Unit: "ms"},
		{Name: "resume p50", Value: ms(rep.Resume.P50), Limit: 300, Met: rep.Resume.P50 <= 300*time.Millisecond, Unit: "ms"},
	}
	if rep.Idle > 0 {
		mib := float64(rep.IdlePSSKBAll) / float64(rep.Idle) / 1024
		rep.Targets = append(rep.Targets, Target{Name: fmt.Sprintf("memory per idle running sandbox (%d at once), mean PSS", rep.Idle), Value: mib, Limit: 40, Met: mib <= 40, Unit: "MiB"})
	}
	return rep, nil
}

// spread is the median, the largest and the sum of non-empty values.
func spread(v []int64) (p50, most, total int64) {
	slices.Sort(v)
	for _, x := range v {
		total += x
	}
	return v[len(v)/2], v[len(v)-1], total
}

func msDurations(ms []float64) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, v := range ms {
		out[i] = time.Duration(v * 1e6)
	}
	return out
}

func lastLine(b []byte) []byte {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return []byte(lines[len(lines)-1])
}

// diskKB is what a directory's files take on disk.
func diskKB(dir string) int64 {
	var blocks int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				blocks += st.Blocks
			}
		}
		return nil
	})
	return blocks * 512 / 1024
}

// runSDKScript runs the SDK script's phase against the host. With held,
// the phase says "ready" once its sandboxes stand; held measures them, and
// the script then kills them (its stdin ends).
func runSDKScript(ctx context.Context, o SandboxesOptions, phase string, n int, held func() error) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "node", "sandboxes.mjs", phase, fmt.Sprint(n))
	cmd.Dir = o.SDKDir
	cmd.Env = append(os.Environ(), "E2B_API_URL=http://"+o.Addr, "E2B_SANDBOX_URL=http://"+o.Addr, "E2B_API_KEY=bench")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var heldErr error
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if held != nil && strings.HasPrefix(line, "ready ") {
			heldErr = held()
			_ = stdin.Close()
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("the SDK's %s: %w\n%s%s", phase, err, out.String(), stderr.String())
	}
	return []byte(out.String()), heldErr
}

func machine() string {
	return fmt.Sprintf("%s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
}

// Text is the report for people: each figure beside the floor and E2B's.
func (r *SandboxesReport) Text() string {
	var b strings.Builder
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
	fmt.Fprintf(&b, "# Long-lived sandboxes through the unmodified E2B SDK: %s\n\n", r.Driver)
	fmt.Fprintf(&b, "machine: %s; warm pool: %d\n\n", r.Machine, r.Pool)
	fmt.Fprintf(&b, "| SDK call, start to resolved promise | n | p50 | p90 | max | E2B's published |\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
	row := func(s Summary, e2b string) {
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s |\n", s.Name, s.N, ms(s.P50), ms(s.P90), ms(s.Max), e2b)
	}
	row(r.Create, "~"+ms(e2bCreate)+" median")
	row(r.Burst, "")
	row(r.Run, "")
	row(r.Pause, fmt.Sprintf("~%s per GiB of memory", e2bPausePerGiB))
	row(r.Resume, "~"+ms(e2bResume))
	b.WriteString("\n")
	if r.FloorLogin.N > 0 {
		fmt.Fprintf(&b, "the command alone: %s p50 %s inside gVisor's own sandbox (same CPU bound)", r.FloorLogin.Name, ms(r.FloorLogin.P50))
		if r.NativeLogin.N > 0 {
			fmt.Fprintf(&b, ", %s natively", ms(r.NativeLogin.P50))
		}
		fmt.Fprintf(&b, "; the round trip is %.2fx gVisor's own\n", float64(r.Run.P50)/float64(max(r.FloorLogin.P50, 1)))
	}
	if r.Idle > 0 {
		fmt.Fprintf(&b, "%d idle running sandboxes: PSS of their host processes p50 %.1f MiB, max %.1f MiB, all %.0f MiB\n",
			r.Idle, float64(r.IdlePSSKBP50)/1024, float64(r.IdlePSSKBMax)/1024, float64(r.IdlePSSKBAll)/1024)
	}
	if r.Paused > 0 {
		fmt.Fprintf(&b, "%d paused sandboxes: checkpoint on disk p50 %.2f MiB, max %.2f MiB, all %.0f MiB\n",
			r.Paused, float64(r.PausedKBP50)/1024, float64(r.PausedKBMax)/1024, float64(r.PausedKBTotal)/1024)
	}
	b.WriteString("\n")
	for _, t := range r.Targets {
		met := "MISSED"
		if t.Met {
			met = "MET"
		}
		fmt.Fprintf(&b, "target: %s: %.1f %s (<= %.0f %s): %s\n", t.Name, t.Value, t.Unit, t.Limit, t.Unit, met)
	}
	return b.String()
}
