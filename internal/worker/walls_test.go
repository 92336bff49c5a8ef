package worker_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/testenv"
)

// wallsProgram reports, from inside a job, each guest wall docs/SECURITY.md
// lists: the seccomp filter (bpf, perf_event_open, user namespaces), no
// new privileges, a nosuid root, the namespace sysctl, and a setuid-root
// binary (passwd, which blocks reading a password) whose credentials the
// program reads from /proc while it runs.
const wallsProgram = `#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <sys/prctl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/msg.h>
#include <linux/sched.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(void) {
	printf("bpf %s\n", syscall(SYS_bpf, 0, 0, 0) < 0 ? strerror(errno) : "allowed");
	printf("perf %s\n", syscall(SYS_perf_event_open, 0, 0, -1, -1, 0) < 0 ? strerror(errno) : "allowed");
	printf("userns %s\n", unshare(CLONE_NEWUSER) < 0 ? strerror(errno) : "allowed");
	int s;
	printf("vsock %s\n", (s = socket(40, SOCK_STREAM, 0)) < 0 ? strerror(errno) : "allowed");
	printf("netlink %s\n", (s = socket(AF_NETLINK, SOCK_RAW, 0)) < 0 ? strerror(errno) : "allowed");
	printf("alg %s\n", (s = socket(38, SOCK_SEQPACKET, 0)) < 0 ? strerror(errno) : "allowed");
	printf("inet %s\n", (s = socket(AF_INET, SOCK_STREAM, 0)) < 0 ? strerror(errno) : "allowed");
	struct clone_args ca; memset(&ca, 0, sizeof ca); ca.flags = CLONE_NEWUSER; ca.exit_signal = SIGCHLD;
	long c3 = syscall(SYS_clone3, &ca, sizeof ca);
	if (c3 == 0) _exit(0);
	printf("clone3 newuser %s\n", c3 < 0 ? strerror(errno) : "allowed");
	printf("personality %s\n", personality(0x0040000) < 0 ? strerror(errno) : "allowed");
	printf("modify_ldt %s\n", syscall(SYS_modify_ldt, 0, 0, 0) < 0 ? strerror(errno) : "allowed");
	printf("msgget %s\n", msgget(IPC_PRIVATE, 0600) < 0 ? strerror(errno) : "allowed");
	struct stat rs; printf("resolv.conf %lld\n", stat("/etc/resolv.conf", &rs) == 0 ? (long long)rs.st_size : -1LL);
	struct statvfs v; statvfs("/", &v); printf("root nosuid %d\n", (v.f_flag & ST_NOSUID) != 0);
	printf("no_new_privs %d\n", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
	FILE *f = fopen("/proc/sys/user/max_user_namespaces", "r"); int n = -1;
	if (f) { fscanf(f, "%d", &n); fclose(f); }
	printf("max_user_namespaces %d\n", n);
	struct stat st; stat("/usr/bin/passwd", &st);
	printf("passwd setuid root %d\n", (st.st_mode & S_ISUID) && st.st_uid == 0);
	int p[2]; pipe(p);
	pid_t c = fork();
	if (c == 0) { dup2(p[0], 0); execl("/usr/bin/passwd", "passwd", (char *)0); _exit(127); }
	char path[64], buf[4096]; snprintf(path, sizeof path, "/proc/%d/status", c);
	struct timespec ms = {0, 1000000};
	for (int i = 0; i < 10000; i++) {
		FILE *s = fopen(path, "r"); if (!s) break;
		size_t k = fread(buf, 1, sizeof buf - 1, s); fclose(s); buf[k] = 0;
		char *uid = strstr(buf, "\nUid:");
		if (!strncmp(buf, "Name:\tpasswd", 12) && uid) { *strchr(uid + 1, '\n') = 0; printf("passwd%s\n", uid + 1); break; }
		nanosleep(&ms, 0);
	}
	kill(c, SIGKILL); waitpid(c, 0, 0);
	return 0;
}`

// TestGuestWalls runs wallsProgram as a job on each driver.
func TestGuestWalls(t *testing.T) {
	testenv.EachSandbox(t, func(t *testing.T, sb *testenv.Sandbox) {
		h := startWorkerOn(t, sb, "walls", 1, 1, nil)
		body, _ := json.Marshal(map[string]any{"id": "walls", "language": "c", "code": wallsProgram})
		sts := h.submit("walls", string(body), 5*time.Minute)
		final := sts[len(sts)-1]
		if final.Status != job.StatusDone {
			t.Fatalf("final %+v", final)
		}
		out := final.Stdout
		want := []string{"bpf Operation not permitted", "perf Operation not permitted", "userns Operation not permitted",
			"root nosuid 1", "no_new_privs 1", "passwd setuid root 1", "inet allowed", "resolv.conf 0\n",
			"clone3 newuser Function not implemented"} // the filter's ENOSYS, on both drivers
		// Refused, whatever the reason each driver gives.
		for _, call := range []string{"vsock", "netlink", "alg", "clone3 newuser", "personality", "modify_ldt", "msgget"} {
			if !regexp.MustCompile(`(?m)^`+call+` [A-Z]`).MatchString(out) || strings.Contains(out, call+" allowed") {
				t.Errorf("%s is not refused in the guest:\n%s", call, out)
			}
		}
		if sb.Name == "qemu" {
			// gVisor's kernel has no such sysctl; its sandbox itself
			// offers no user namespaces to the job (and seccomp denies them).
			want = append(want, "max_user_namespaces 0")
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("guest wall missing: %q not in\n%s", w, out)
			}
		}
		// The setuid binary ran with the job's own credentials: real,
		// effective, saved and filesystem uid all the same, not root.
		m := regexp.MustCompile(`passwdUid:\t(\d+)\t(\d+)\t(\d+)\t(\d+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("passwd's credentials were not read:\n%s", out)
		}
		for _, u := range m[2:] {
			if u != m[1] || u == "0" {
				t.Errorf("setuid passwd ran as %v (job uid %s): it gained privileges", m[1:], m[1])
			}
		}
	})
}
