package runner

import (
	"context"
	"errors"
	"fmt"
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
	rootFD, err := unix.Open(c.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open checker root: %w", err)
	}
	defer unix.Close(rootFD)
	name := "interact" + c.n + "-" + strconv.Itoa(test)
	if err := unix.Mkdirat(rootFD, name, 0o750); err != nil {
		return nil, fmt.Errorf("make %s: %w", name, err)
	}
	dirFD, err := unix.Openat(rootFD, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	defer unix.Close(dirFD)
	gid := int(r.CheckerGID)
	if err := unix.Fchown(dirFD, 0, gid); err != nil {
		return nil, fmt.Errorf("chown %s: %w", name, err)
	}
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
		fd, err := unix.Openat(dirFD, f.name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, f.mode)
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", f.name, err)
		}
		fh := os.NewFile(uintptr(fd), f.name)
		_, werr := io.WriteString(fh, f.body)
		cerr := fh.Chown(f.uid, gid)
		merr := fh.Chmod(os.FileMode(f.mode))
		if err := errors.Join(werr, cerr, merr, fh.Close()); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.name, err)
		}
		paths = append(paths, filepath.Join(c.root, name, f.name))
	}
	return paths, nil
}

// relay is the agent between a program and its interactor: each direction
// copied by a goroutine, counted, and who spoke last remembered.
type relay struct {
	mu    sync.Mutex
	in    agentproto.Interaction
	shown []byte // the first bytes the program wrote (the test's stdout)
	keep  int
	// silent is when each side's output ended (its process died or closed
	// it), by speaker: observed before the other side's input is closed,
	// so a side that ended because the other did ends later.
	silent map[string]time.Time
}

// ended notes when from stopped speaking, the first time.
func (rl *relay) ended(from string, at time.Time) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if _, ok := rl.silent[from]; !ok {
		rl.silent[from] = at
	}
}

// endOf is when from ended: its output's end or its process's, the
// earlier.
func (rl *relay) endOf(from string, exited time.Time) time.Time {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if t, ok := rl.silent[from]; ok && t.Before(exited) {
		return t
	}
	return exited
}

func (rl *relay) spoke(from string, n int, p []byte) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.in.LastFrom != from {
		rl.in.Turns++
		rl.in.LastFrom = from
	}
	if from == agentproto.FromProgram {
		rl.in.ToInteractor += int64(n)
		if room := rl.keep - len(rl.shown); room > 0 {
			rl.shown = append(rl.shown, p[:min(room, n)]...)
		}
	} else {
		rl.in.ToProgram += int64(n)
	}
}

// pump copies src to dst until src ends or dst is gone, then closes both:
// the reader of dst sees the end of its input, the writer of src a broken
// pipe.
func (rl *relay) pump(from string, src, dst *os.File, done *sync.WaitGroup) {
	defer done.Done()
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			rl.spoke(from, n, buf[:n])
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			rl.ended(from, time.Now())
			return
		}
	}
}

// pipes are a test's four pipes: the program's and the interactor's ends,
// and the agent's.
type pipes struct {
	progIn, progOut, intIn, intOut *os.File // the processes' ends
	toProg, fromProg, toInt, fromInt *os.File // the agent's
}

func newPipes() (*pipes, error) {
	var p pipes
	var err error
	closeAll := func() {
		for _, f := range []*os.File{p.progIn, p.progOut, p.intIn, p.intOut, p.toProg, p.fromProg, p.toInt, p.fromInt} {
			if f != nil {
				f.Close()
			}
		}
	}
	if p.progIn, p.toProg, err = os.Pipe(); err != nil {
		return nil, err
	}
	if p.fromProg, p.progOut, err = os.Pipe(); err != nil {
		closeAll()
		return nil, err
	}
	if p.intIn, p.toInt, err = os.Pipe(); err != nil {
		closeAll()
		return nil, err
	}
	if p.fromInt, p.intOut, err = os.Pipe(); err != nil {
		closeAll()
		return nil, err
	}
	return &p, nil
}

// interact1 runs one test with the interactor: the program with the job's
// limits and the interactor (the checker's user, in its own directory, with
// the program's limits plus agentproto.InteractorMarginMS of wall and CPU
// time) at once, the program's stdout relayed to the interactor's stdin and
// the interactor's stdout to the program's stdin by the agent: neither holds
// a pipe of the other. The program's stdin is never the test's input: the
// interactor reads that from its first argument. It returns the program's
// run, the interactor's, the interactor's message (its second argument's
// file, then its stderr, within agentproto.MaxCheckerMessage), and the
// interaction.
func (r *Runner) interact1(ctx context.Context, i int, l, inter lang.Language, dir string, c *checkerDir, tc agentproto.TestCase,
	lim agentproto.Limits, progOut *output) (*agentproto.Phase, *agentproto.Phase, string, *agentproto.Interaction) {
	failed := func(why string) (*agentproto.Phase, *agentproto.Phase, string, *agentproto.Interaction) {
		return &agentproto.Phase{}, &agentproto.Phase{ExitCode: 127}, "codebench: " + why, &agentproto.Interaction{}
	}
	files, err := r.interactFiles(c, i, tc.Stdin, tc.ExpectedOutput)
	if err != nil {
		return failed("cannot write the interactor's files: " + err.Error())
	}
	p, err := newPipes()
	if err != nil {
		return failed("pipes: " + err.Error())
	}
	rl := &relay{keep: int(lim.OutputBytes), silent: map[string]time.Time{}}
	var pumps sync.WaitGroup
	pumps.Add(2)
	go rl.pump(agentproto.FromProgram, p.fromProg, p.toInt, &pumps)
	go rl.pump(agentproto.FromInteractor, p.fromInt, p.toProg, &pumps)

	ilim := lim
	ilim.WallMS += agentproto.InteractorMarginMS
	ilim.CPUMS += agentproto.InteractorMarginMS
	// Its stderr joins its message: the first bytes kept, the rest read
	// and dropped (never a reason to kill it).
	iout := &output{limit: 1 << 62, keep: agentproto.MaxCheckerMessage}
	iargv := append(append([]string{}, inter.Run...), files...)
	ispec := phaseSpec{dir: c.dir, name: "interact" + strconv.Itoa(i), argv: iargv, stdin: p.intIn, lim: ilim, user: r.checkerUser(),
		tmp: c.dir, started: func() { p.intIn.Close(); p.intOut.Close() }, own: true}
	pargv := append(append([]string{}, l.Run...), tc.Args...)
	progCtx, stopProg := context.WithCancel(ctx)
	defer stopProg()
	pspec := phaseSpec{dir: dir, name: "test" + strconv.Itoa(i), argv: pargv, stdin: p.progIn, lim: lim, user: r.jobUser(),
		started: func() { p.progIn.Close(); p.progOut.Close() }, own: true}

	var prog, ip *agentproto.Phase
	var progEnd, interEnd time.Time
	var phases sync.WaitGroup
	phases.Add(2)
	go func() {
		defer phases.Done()
		ip = r.phase(ctx, ispec, iout, p.intOut, iout.writer(stderrStream))
		interEnd = time.Now()
		if ip.ExitCode != 0 || ip.Signal != "" {
			// The interactor has judged (or failed): the program's
			// answer no longer counts; do not wait for its limit.
			time.AfterFunc(interactorKill, stopProg)
		}
	}()
	go func() {
		defer phases.Done()
		prog = r.phase(progCtx, pspec, progOut, p.progOut, progOut.writer(stderrStream))
		progEnd = time.Now()
	}()
	phases.Wait()
	pumps.Wait()
	// Which ended first: a side that ended because the other did (its
	// input closed by the relay) ends after the other's output did.
	interFirst := rl.endOf(agentproto.FromInteractor, interEnd).Before(rl.endOf(agentproto.FromProgram, progEnd))
	if r.AfterPhase != nil {
		r.AfterPhase()
	}
	msg := r.interactorMessage(files[1]) + iout.text(stderrStream)
	rl.mu.Lock()
	in := rl.in
	shown := string(rl.shown)
	rl.mu.Unlock()
	in.InteractorFirst = interFirst
	progOut.mu.Lock()
	progOut.bufs[stdoutStream].Reset()
	progOut.bufs[stdoutStream].WriteString(shown)
	progOut.mu.Unlock()
	return prog, ip, cutUTF8(msg, agentproto.MaxCheckerMessage), &in
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
