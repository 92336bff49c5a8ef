package worker_test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/testenv"
)

// TestHostilePrograms: each program attacks the sandbox; each ends with a
// verdict within its limit plus a margin, the next job succeeds, and the
// host's process count and memory come back to where they were.
func TestHostilePrograms(t *testing.T) {
	testenv.EachSandbox(t, testHostilePrograms)
}

func testHostilePrograms(t *testing.T, sb *testenv.Sandbox) {
	h := startWorkerOn(t, sb, "hostile", 2, 1, nil)
	// Let the pool settle, then take the host's baseline, and the time an
	// ordinary C job takes here now: the calibration for every time bound
	// below (a loaded 2-core machine under TCG compiles several times
	// slower than an idle one).
	warm := h.submit("warm", `{"id":"warm","language":"python","code":"print(1)"}`, 3*time.Minute)
	if warm[len(warm)-1].Status != job.StatusDone {
		t.Fatalf("warm-up: %+v", warm)
	}
	start := time.Now()
	calib := h.submit("calibrate", `{"id":"calibrate","language":"c","code":"#include <stdio.h>\nint main(){ puts(\"hi\"); return 0; }"}`, 3*time.Minute)
	baseline := time.Since(start)
	if calib[len(calib)-1].Status != job.StatusDone {
		t.Fatalf("calibration job: %+v", calib)
	}
	t.Logf("calibration: an ordinary C job takes %s here now", baseline.Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	procs0, rss0 := testenv.Footprint(sb.RunDir)

	// A file only the host has, and this test's own command line: the
	// sandbox must see neither.
	marker := fmt.Sprintf("/var/tmp/codebench-isolation-%d", time.Now().UnixNano())
	if err := os.WriteFile(marker, []byte("host secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(marker)
	py := func(code string) string { b, _ := json.Marshal(code); return string(b) }
	c := func(code string) string {
		b, _ := json.Marshal("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <unistd.h>\n#include <signal.h>\n#include <fcntl.h>\n" + code)
		return string(b)
	}
	tests := []struct {
		name, lang, code, limits string
		verdicts                 []string // any of these
		// within is the time the job may legitimately take (its wall
		// limit); the test allows it plus three calibration jobs and 5 s.
		within time.Duration
		check  func(t *testing.T, st job.Status)
	}{
		{name: "fork bomb", lang: "c", code: c(`int main(){ printf("start\n"); fflush(stdout); for(;;) fork(); }`), limits: `{"wall_ms":3000}`,
			verdicts: []string{job.VerdictTimeLimit}, within: 3 * time.Second},
		{name: "infinite loop", lang: "c", code: c(`int main(){ for(;;); }`), limits: `{"cpu_ms":1000,"wall_ms":5000}`,
			verdicts: []string{job.VerdictTimeLimit}, within: 5 * time.Second},
		{name: "allocate all memory", lang: "python", code: py("x = []\nwhile True: x.append(bytearray(1 << 20))"), limits: `{"memory_kb":65536}`,
			verdicts: []string{job.VerdictMemoryLimit}, within: 10 * time.Second},
		{name: "1 GiB to stdout", lang: "c", code: c(`int main(){ static char b[1<<20]; memset(b, 'x', sizeof b); for(int i = 0; i < 1024; i++) fwrite(b, 1, sizeof b, stdout); return 0; }`), limits: `{"output_bytes":65536}`,
			verdicts: []string{job.VerdictOutputLimit}, within: 10 * time.Second,
			check: func(t *testing.T, st job.Status) {
				if len(st.Stdout) != 65536 {
					t.Fatalf("kept %d bytes of output, want 65536", len(st.Stdout))
				}
			}},
		{name: "fill the disk", lang: "python", code: py("import os\nfor d in ('/job', '/tmp'):\n    i = 0\n    try:\n        while True:\n            open(f'{d}/f{os.getpid()}-{i}', 'wb').write(b'x' * (1 << 20)); i += 1\n    except OSError as e:\n        print(d, e.errno)\n"), limits: `{"file_size_kb":2048,"wall_ms":20000,"cpu_ms":15000}`,
			// Bounded is what matters: filling 192 MiB of tmpfs under TCG
			// may also run out of CPU time on a loaded machine.
			verdicts: []string{job.VerdictOK, job.VerdictRuntimeError, job.VerdictMemoryLimit, job.VerdictTimeLimit}, within: 20 * time.Second},
		// kill(-1) reaches every process the job user may signal except the
		// caller itself: the agent (root) and the host are out of reach.
		{name: "kill -9 -1", lang: "bash", code: py("echo start; sleep 100 & kill -9 -1; wait; echo survived"),
			verdicts: []string{job.VerdictOK}, within: 10 * time.Second,
			check: func(t *testing.T, st job.Status) {
				if st.Stdout != "start\nsurvived\n" {
					t.Fatalf("stdout %q", st.Stdout)
				}
			}},
		{name: "reboot and poweroff", lang: "c", code: c(`#include <sys/reboot.h>
int main(){ int a = reboot(RB_POWER_OFF); perror("reboot"); int b = reboot(RB_AUTOBOOT); perror("reboot"); printf("%d %d\n", a, b); return 0; }`),
			verdicts: []string{job.VerdictOK}, within: 10 * time.Second,
			check: func(t *testing.T, st job.Status) {
				if !strings.Contains(st.Stdout, "-1 -1") || !strings.Contains(st.Stderr, "Operation not permitted") {
					t.Fatalf("reboot was not refused: %q %q", st.Stdout, st.Stderr)
				}
			}},
		{name: "open network connections", lang: "python", code: py("import socket\nfor addr in [('10.0.2.2', 80), ('1.1.1.1', 53), ('127.0.0.1', 5672)]:\n    try:\n        socket.create_connection(addr, timeout=2); print('CONNECTED', addr)\n    except OSError as e:\n        print('refused', addr, e.errno)\n"),
			verdicts: []string{job.VerdictOK}, within: 20 * time.Second,
			check: func(t *testing.T, st job.Status) {
				if strings.Contains(st.Stdout, "CONNECTED") {
					t.Fatalf("a connection got out: %q", st.Stdout)
				}
			}},
		{name: "talk to the agent channel", lang: "python", code: py("import glob, os\nfor p in glob.glob('/dev/vport*') + glob.glob('/dev/vsock') + glob.glob('/sys/class/virtio-ports/*'):\n    try:\n        fd = os.open(p, os.O_RDWR); os.write(fd, b'\\x00\\x00\\x00\\x05hello'); print('OPENED', p)\n    except OSError as e:\n        print('denied', p, e.errno)\n"),
			verdicts: []string{job.VerdictOK}, within: 10 * time.Second,
			check: func(t *testing.T, st job.Status) {
				if strings.Contains(st.Stdout, "OPENED /dev/vport") {
					t.Fatalf("the job opened the agent's port: %q", st.Stdout)
				}
			}},
		{name: "read other jobs' files", lang: "bash", code: py("ls -la /job /tmp; cat /job/*/main.* 2>&1 | head -5; echo done"),
			verdicts: []string{job.VerdictOK}, within: 10 * time.Second,
			check: func(t *testing.T, st job.Status) {
				// A fresh VM: this job's own directory is the only one.
				if dirs := regexp.MustCompile(`\brun[0-9]+\b`).FindAllString(st.Stdout, -1); len(dirs) != 1 {
					t.Fatalf("another job's directory is visible: %q", st.Stdout)
				}
			}},
		{name: "see the host's files, processes and network", lang: "python", code: py(`import os
try:
    print("MARKER", open(` + fmt.Sprintf("%q", marker) + `).read())
except OSError as e:
    print("no marker", e.errno)
seen = []
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            seen.append(open(f"/proc/{p}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            pass
print("processes", len(seen))
for c in seen:
    if "worker.test" in c or "rabbitmq" in c or "codebench worker" in c:
        print("HOST PROCESS", c)
print("interfaces", sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]))
`),
			verdicts: []string{job.VerdictOK}, within: 10 * time.Second,
			check: func(t *testing.T, st job.Status) {
				if strings.Contains(st.Stdout, "MARKER") || strings.Contains(st.Stdout, "HOST PROCESS") ||
					!strings.Contains(st.Stdout, "interfaces ['lo']") || !strings.Contains(st.Stdout, "no marker") {
					t.Fatalf("the sandbox sees the host: %s", st.Stdout)
				}
			}},
		{name: "child sleeps forever after parent exits", lang: "bash", code: py("(sleep 1000 &) ; nohup sleep 1000 >/dev/null 2>&1 & setsid sleep 1000 >/dev/null 2>&1 < /dev/null & echo parent done"),
			verdicts: []string{job.VerdictOK}, within: 10 * time.Second},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("hostile-%d", i)
			limits := tt.limits
			if limits == "" {
				limits = "{}"
			}
			body := fmt.Sprintf(`{"id":%q,"language":%q,"code":%s,"limits":%s}`, id, tt.lang, tt.code, limits)
			start := time.Now()
			sts := h.submit(id, body, 3*time.Minute)
			took := time.Since(start)
			f := sts[len(sts)-1]
			t.Logf("%s: %s %q in %s (stdout %q)", tt.name, f.Verdict, f.Message, took.Round(time.Millisecond), trunc(f.Stdout, 120))
			ok := false
			for _, v := range tt.verdicts {
				ok = ok || f.Verdict == v
			}
			if !ok {
				t.Fatalf("verdict %s (%s), want one of %v; stderr %q", f.Verdict, f.Message, tt.verdicts, trunc(f.Stderr, 300))
			}
			if bound := tt.within + 3*baseline + 5*time.Second; took > bound {
				t.Fatalf("took %s, more than its limit %s plus three ordinary jobs (%s each here) and 5 s", took, tt.within, baseline.Round(time.Millisecond))
			}
			if tt.check != nil {
				tt.check(t, f)
			}
			next := h.submit(id+"-next", `{"id":"`+id+`-next","language":"python","code":"print('next')"}`, 2*time.Minute)
			if l := next[len(next)-1]; l.Status != job.StatusDone || l.Stdout != "next\n" {
				t.Fatalf("job after %s: %+v", tt.name, l)
			}
		})
	}
	// The host is back where it was: every sandbox of these jobs is gone
	// with its memory (the pool is refilled to the same size). Counted on
	// this worker's sandboxes, not the host's totals, which tests of other
	// packages running meanwhile move.
	time.Sleep(3 * time.Second)
	procs1, rss1 := testenv.Footprint(sb.RunDir)
	t.Logf("sandbox processes on the host %d -> %d, their RSS %d -> %d MiB", procs0, procs1, rss0>>10, rss1>>10)
	if procs1 > procs0 {
		t.Errorf("the sandboxes hold %d more host processes than before", procs1-procs0)
	}
	if rss1 > rss0+256<<10 {
		t.Errorf("the sandboxes hold %d MiB more than before", (rss1-rss0)>>10)
	}
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
