package sandboxtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
)

// The program of testCheckerWalledOff attacks its checker: in test 1 it
// plants links where the checker's files used to go (/proc's hostname as
// the target: root writing the program's output there would rename the
// guest), tries to list and rewrite every checker file, and prints the
// right answer; in test 2 it searches /job and /tmp for the checker's
// source and test 1's expected output, reads the hostname, and prints a
// wrong answer, which only a rewritten checker would accept. The markers
// are built at run time, so the program's own source does not hold them.
const checkerAttack = `import os, sys
M1 = "alpha" + "-omega-7"
M2 = "checker-" + "source-9"
HOST = "/proc/sys/kernel/hostname"
test = sys.stdin.read().strip()
if test == "1":
    print("HOST", open(HOST).read().strip(), file=sys.stderr)
    for d in ["/job", "/tmp", os.getcwd(), "/job/check", "/job/check/checker2"]:
        for f in ["input.txt", "expected.txt", "output.txt", "test2-0", "test2-1", "checker2"]:
            try:
                os.symlink(HOST, os.path.join(d, f))
            except OSError:
                pass
    try:
        print("LISTED", os.listdir("/job/check"))
    except OSError:
        pass
    for root, dirs, files in os.walk("/job"):
        for f in files:
            p = os.path.join(root, f)
            if p.startswith(os.getcwd()):
                continue
            try:
                with open(p, "w") as w:
                    w.write("import sys\nsys.exit(0)\n")
                print("REWROTE", p)
            except OSError:
                pass
    print(M1)
else:
    found = []
    for top in ["/job", "/tmp"]:
        for root, dirs, files in os.walk(top):
            for f in files:
                p = os.path.join(root, f)
                try:
                    data = open(p, errors="replace").read()
                except OSError:
                    continue
                if M1 in data or M2 in data:
                    found.append(p)
    print("FOUND", found)
    print("HOST", open(HOST).read().strip())
    print("a wrong answer")
`

// checkerSource accepts the same words as expected; its comment is the
// marker the program looks for.
const checkerSource = `# checker-source-9
import sys
got, want = open(sys.argv[3]).read(), open(sys.argv[2]).read()
sys.exit(0 if got.split() == want.split() else 1)
`

// testCheckerWalledOff: the checker runs apart from the program. The
// program cannot find the checker's source or an expected output, cannot
// rewrite the checker (its wrong answer is rejected), and links it plants
// make root write nothing outside its own directory (the hostname is
// unchanged).
func testCheckerWalledOff(t *testing.T, h Harness) {
	inst := launch(t, h)
	defer inst.Stop(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	want1, want2 := "alpha-omega-7\n", "the right answer\n"
	res, err := inst.Agent.Run(ctx, &agentproto.RunRequest{
		Language: "python", Code: checkerAttack,
		Tests:   []agentproto.TestCase{{Stdin: "1", ExpectedOutput: &want1}, {Stdin: "2", ExpectedOutput: &want2}},
		Checker: &agentproto.Checker{Language: "python", Code: checkerSource},
		Limits:  agentproto.Limits{WallMS: 30000, CPUMS: 30000},
	}, nil)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if !res.CheckerCompiled || len(res.Tests) != 2 {
		t.Fatalf("checker compiled %v, %d tests: %+v", res.CheckerCompiled, len(res.Tests), res)
	}
	t1, t2 := res.Tests[0], res.Tests[1]
	t.Logf("test 1 stdout %q stderr %q; test 2 stdout %q", t1.Stdout, t1.Stderr, t2.Stdout)
	if t1.Checker == nil || t1.Checker.ExitCode != 0 {
		t.Fatalf("test 1: the checker did not accept the right answer: %+v %q", t1.Checker, t1.CheckerMessage)
	}
	for _, bad := range []string{"LISTED", "REWROTE"} {
		if strings.Contains(t1.Stdout, bad) {
			t.Errorf("test 1: the program reached the checker's files: %q", t1.Stdout)
		}
	}
	if t2.Checker == nil || t2.Checker.ExitCode != 1 {
		t.Errorf("test 2: a wrong answer was not rejected (the checker was rewritten?): %+v %q", t2.Checker, t2.CheckerMessage)
	}
	if !strings.Contains(t2.Stdout, "FOUND []\n") {
		t.Errorf("test 2: the program found the checker's source or an expected output: %q", t2.Stdout)
	}
	before := strings.TrimPrefix(strings.TrimSpace(t1.Stderr), "HOST ")
	if before == "" || !strings.Contains(t2.Stdout, "HOST "+before+"\n") {
		t.Errorf("the hostname changed between the tests (root followed a planted link?): before %q, test 2 %q", before, t2.Stdout)
	}
}
