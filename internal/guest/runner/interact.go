package runner

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/lang"
)

// interactorFiles are the interactor's arguments, testlib's order: the
// test's input (read), its message (written), the answer (read, only when
// the test has an expected output).
var interactorFiles = [3]string{"input.txt", "output.txt", "answer.txt"}

// interactorKill is how long a program may run on after its interactor
// ended with a verdict other than acceptance: its answer no longer matters.
const interactorKill = 100 * time.Millisecond

// interactFiles makes a fresh directory for one test under the check root
// (root's, the checker's group, which the program is not in) and the
// interactor's files in it, each created new without following links: the
// input and the answer root's and readable by the group, the message file
// the checker user's own, the only one it may write.
func (r *Runner) interactFiles(c *checkerDir, test int, input string, answer *string) ([]string, error) {
	name := "interact" + c.n + "-" + strconv.Itoa(test)
	dirFD, err := r.freshDir(c, name)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dirFD)
	gid := int(r.CheckerGID)
	type file struct {
		name, body string
		uid        int
		mode       uint32
	}
	files := []file{{interactorFiles[0], input, 0, 0o640}, {interactorFiles[1], "", int(r.CheckerUID), 0o600}}
	if answer != nil {
		files = append(files, file{interactorFiles[2], *answer, 0, 0o640})
	}
	var paths []string
	for _, f := range files {
		if err := createIn(dirFD, f.name, f.body, f.uid, gid, f.mode); err != nil {
			return nil, err
		}
		paths = append(paths, filepath.Join(c.root, name, f.name))
	}
	return paths, nil
}

// interact1 runs one test with the interactor: the program with the job's
// limits and the interactor (the checker's user, in its own directory, with
// the program's limits plus agentproto.InteractorMarginMS of wall and CPU
// time) at once, joined by two pipes: the program's stdout is the
// interactor's stdin and the interactor's stdout the program's stdin (the
// agent holds no end of them once both started: a question and its answer
// cross gVisor's pipes as they would between two processes anywhere). The
// program's stdin is never the test's input: the interactor reads that from
// its first argument. It returns the program's run, the interactor's, the
// interactor's message (its second argument's file, then its stderr, within
// agentproto.MaxCheckerMessage), and which of the two ended first.
func (r *Runner) interact1(ctx context.Context, i int, l, inter lang.Language, dir string, c *checkerDir, tc agentproto.TestCase,
	lim agentproto.Limits, progOut *output) (*agentproto.Phase, *agentproto.Phase, string, *agentproto.Interaction) {
	failed := func(why string) (*agentproto.Phase, *agentproto.Phase, string, *agentproto.Interaction) {
		return &agentproto.Phase{}, &agentproto.Phase{ExitCode: 127}, "codebench: " + why, &agentproto.Interaction{}
	}
	files, err := r.interactFiles(c, i, tc.Stdin, tc.ExpectedOutput)
	if err != nil {
		return failed("cannot write the interactor's files: " + err.Error())
	}
	interR, progW, err := os.Pipe() // the program writes, the interactor reads
	if err != nil {
		return failed("pipes: " + err.Error())
	}
	progR, interW, err := os.Pipe() // the interactor writes, the program reads
	if err != nil {
		interR.Close()
		progW.Close()
		return failed("pipes: " + err.Error())
	}
	// Each process's ends are closed here once it started (or could not):
	// a side then sees the end of its input when the other side ends.
	ilim := lim
	ilim.WallMS += agentproto.InteractorMarginMS
	ilim.CPUMS += agentproto.InteractorMarginMS
	// Its stderr joins its message: the first bytes kept, the rest read
	// and dropped (never a reason to kill it).
	iout := &output{limit: 1 << 62, keep: agentproto.MaxCheckerMessage}
	iargv := append(append([]string{}, inter.Run...), files...)
	var mu sync.Mutex
	var progEnd, interEnd time.Time
	ispec := phaseSpec{dir: c.dir, name: "interact" + strconv.Itoa(i), argv: iargv, stdin: interR, lim: ilim, user: r.checkerUser(),
		tmp: c.dir, own: true, started: func() { interR.Close(); interW.Close() },
		exited: func() { mu.Lock(); interEnd = time.Now(); mu.Unlock() }}
	pargv := append(append([]string{}, l.Run...), tc.Args...)
	progCtx, stopProg := context.WithCancel(ctx)
	defer stopProg()
	pspec := phaseSpec{dir: dir, name: "test" + strconv.Itoa(i), argv: pargv, stdin: progR, lim: lim, user: r.jobUser(), own: true,
		started: func() { progR.Close(); progW.Close() },
		exited:  func() { mu.Lock(); progEnd = time.Now(); mu.Unlock() }}

	var prog, ip *agentproto.Phase
	var phases sync.WaitGroup
	phases.Add(2)
	go func() {
		defer phases.Done()
		ip = r.phase(ctx, ispec, iout, interW, iout.writer(stderrStream))
		if ip.ExitCode != 0 || ip.Signal != "" {
			// The interactor has judged (or failed): the program's
			// answer no longer counts; do not wait for its limit.
			time.AfterFunc(interactorKill, stopProg)
		}
	}()
	// The program's wall limit runs from just after this: a program killed
	// for it ended no later than its deadline.
	progDeadline := time.Now().Add(time.Duration(lim.WallMS) * time.Millisecond)
	go func() {
		defer phases.Done()
		prog = r.phase(progCtx, pspec, progOut, progW, progOut.writer(stderrStream))
	}()
	phases.Wait()
	if r.AfterPhase != nil {
		r.AfterPhase()
	}
	// A program killed at its wall limit ended then, before the interactor
	// saw the end of its input because of it.
	if prog.TimedOut && progDeadline.Before(progEnd) {
		progEnd = progDeadline
	}
	in := &agentproto.Interaction{InteractorFirst: !interEnd.IsZero() && !progEnd.IsZero() && interEnd.Before(progEnd)}
	msg := r.interactorMessage(files[1]) + iout.text(stderrStream)
	return prog, ip, cutUTF8(msg, agentproto.MaxCheckerMessage), in
}

// interactorMessage reads what the interactor wrote to its message file, at
// most agentproto.MaxCheckerMessage, without following a link it may have
// put in its place.
func (r *Runner) interactorMessage(path string) string {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return ""
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, agentproto.MaxCheckerMessage))
	return string(b)
}
