// Package runner compiles and runs one program inside the guest, as an
// unprivileged user, in its own process group, under rlimits, with a wall-clock
// timeout and an output cap. It reports raw facts; the host derives verdicts.
package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/lang"
)

// Defaults applied when a request leaves a limit at zero. The host always
// sends explicit limits; these protect the agent from a request that does not.
var Defaults = agentproto.Limits{
	WallMS:        agentproto.DefaultWallMS,
	CPUMS:         5_000,
	MemoryKB:      256 * 1024,
	StackKB:       8 * 1024,
	Processes:     64,
	OutputBytes:   agentproto.DefaultOutputBytes,
	FileSizeKB:    1024,
	CompileWallMS: 30_000,
}

// Runner runs programs. The zero UID means "do not switch user" (tests on a
// host); in the guest it is the unprivileged job user.
type Runner struct {
	Languages lang.Table
	// JobRoot holds one fresh directory per run.
	JobRoot  string
	UID, GID uint32
	// CheckerUID, CheckerGID are the checker's own unprivileged user,
	// apart from the job's: the program can neither read nor change the
	// checker's files, and the checker's files are made where the program
	// cannot plant anything (see prepareChecker). Zero: no switch (tests
	// on a host).
	CheckerUID, CheckerGID uint32
	// Exec is the trampoline: argv prefix that applies rlimits and execs the
	// program (the agent binary's "exec" subcommand).
	Exec []string
	// AfterPhase, when set, runs after each compile or run; the PID-1 agent
	// uses it to kill leftovers of the job user and reap orphans.
	AfterPhase func()
	// Limiter, when set, limits each phase's process tree by memory and
	// process count and reports memory kills: cgroup v2 (Cgroups) in a VM,
	// cgroup v1 with a watchdog (CgroupsV1) in gVisor. Without one, memory
	// is limited per process by RLIMIT_AS.
	Limiter Limiter
	// MaxRuns bounds RunRequest.Runs.
	MaxRuns int
	// Restrict starts every phase with no_new_privs and the job seccomp
	// filter (the agent sets it; tests on a host may not).
	Restrict bool

	mu     sync.Mutex // guards seq, launch
	seq    int
	launch *launcher // with Restrict: where phases start (see start)
}

// ErrBadRequest marks requests the runner refuses before running anything.
var ErrBadRequest = errors.New("bad request")

// Progress receives a running program's new output (streaming); nil when
// the request does not stream.
type Progress func(agentproto.Output)

// Run writes, compiles and runs req: its runs, or its tests (each judged by
// the expected output or the checker, stopping at the first failure when
// asked). progress, when the request streams, gets the output as it comes.
func (r *Runner) Run(ctx context.Context, req *agentproto.RunRequest, progress Progress) (*agentproto.RunResult, error) {
	l, checker, err := r.check(req)
	if err != nil {
		return nil, err
	}
	if !req.Stream {
		progress = nil
	}
	ctx, prof := withProfiler(ctx, req.Profile)
	lim := withDefaults(req.Limits)
	if lim.JobWallMS > 0 {
		// The whole request's budget: what is left when it is spent is
		// stopped (each phase's own wall limit still applies).
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(lim.JobWallMS)*time.Millisecond)
		defer cancel()
	}
	job := r.jobUser()
	t := time.Now()
	dir, err := r.prepare(l, filepath.Join(r.JobRoot, "run"+r.next()), req.Code, req.Files, job)
	if err != nil {
		return nil, err
	}
	prof.step("job directory made", t)
	res := &agentproto.RunResult{Compiled: true}
	defer func() { res.Profile = prof.result() }()
	res.Compile, res.CompileOutput, res.Compiled = r.compile(ctx, dir, l, req.CompileFlags, lim, job)
	if !res.Compiled {
		return res, nil
	}
	var chk *checkerDir
	if checker != nil {
		judge := req.Checker
		if req.Interactor != nil {
			judge = req.Interactor
		}
		if chk, err = r.prepareChecker(*checker, judge.Code); err != nil {
			return nil, err
		}
		var ok bool
		_, res.CheckerCompileOutput, ok = r.compile(ctx, chk.dir, *checker, nil, lim, r.checkerUser())
		if !ok {
			return res, nil // CheckerCompiled stays false
		}
		res.CheckerCompiled = true
	}
	s := &streamer{progress: progress}
	if len(req.Tests) > 0 {
		r.runTests(ctx, req, l, checker, dir, chk, lim, s, res)
		return res, nil
	}
	runs := max(req.Runs, 1)
	argv := append(append([]string{}, l.Run...), req.Args...)
	for i := 0; i < runs; i++ {
		// stdout and stderr share one budget: the output limit is for both.
		out := newOutput(lim.OutputBytes)
		spec := phaseSpec{dir: dir, name: "run" + strconv.Itoa(i), argv: argv, stdin: strings.NewReader(req.Stdin), lim: lim, user: job}
		ph := s.phase(i, out, func() *agentproto.Phase {
			return r.phase(ctx, spec, out, out.writer(stdoutStream), out.writer(errStream(req)))
		})
		if i == 0 {
			res.Run = ph
			res.Stdout, res.Stderr = out.text(stdoutStream), out.text(stderrStream)
		}
		if runs > 1 {
			res.Runs = append(res.Runs, *ph)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return res, nil
}

// check refuses what cannot run before anything runs, and resolves the
// languages of the program and of the checker for their sources.
func (r *Runner) check(req *agentproto.RunRequest) (lang.Language, *lang.Language, error) {
	bad := func(err error) (lang.Language, *lang.Language, error) {
		return lang.Language{}, nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	l, ok := r.Languages[req.Language]
	if !ok {
		return bad(fmt.Errorf("unknown language %q (have %s)", req.Language, strings.Join(r.Languages.Names(), ", ")))
	}
	l = l.For(req.Code)
	if err := l.CheckCompileFlags(req.CompileFlags); err != nil {
		return bad(err)
	}
	if err := agentproto.CheckFiles(req.Files, l.Source); err != nil {
		return bad(err)
	}
	if err := agentproto.CheckArgs(req.Args); err != nil {
		return bad(err)
	}
	if runs := max(req.Runs, 1); r.MaxRuns > 0 && runs > r.MaxRuns {
		return bad(fmt.Errorf("%d runs asked, at most %d", runs, r.MaxRuns))
	}
	if len(req.Tests) > agentproto.MaxTests {
		return bad(fmt.Errorf("%d tests, at most %d", len(req.Tests), agentproto.MaxTests))
	}
	for i, t := range req.Tests {
		if err := agentproto.CheckArgs(t.Args); err != nil {
			return bad(fmt.Errorf("test %d: %v", i+1, err))
		}
	}
	judge, what := req.Checker, "checker"
	switch {
	case req.Interactor != nil && req.Checker != nil:
		return bad(errors.New("a checker and an interactor: at most one judges"))
	case req.Interactor != nil && len(req.Tests) == 0:
		return bad(errors.New("an interactor needs tests"))
	case req.Interactor != nil:
		judge, what = req.Interactor, "interactor"
	}
	if judge == nil {
		return l, nil, nil
	}
	c, ok := r.Languages[judge.Language]
	if !ok {
		return bad(fmt.Errorf("unknown %s language %q", what, judge.Language))
	}
	c = c.For(judge.Code)
	return l, &c, nil
}

// compile compiles the source in dir, if the language compiles: its phase,
// its diagnostics, and whether it succeeded.
func (r *Runner) compile(ctx context.Context, dir string, l lang.Language, flags []string, lim agentproto.Limits, as user) (*agentproto.Phase, string, bool) {
	if len(l.Compile) == 0 {
		return nil, "", true
	}
	out := newOutput(agentproto.MaxCompileOutput)
	clim := lim
	clim.WallMS = lim.CompileWallMS
	clim.CPUMS = lim.CompileWallMS
	if lim.CompileCPUMS > 0 {
		clim.CPUMS = min(lim.CompileCPUMS, lim.CompileWallMS)
	}
	clim.MemoryKB = max(lim.MemoryKB, agentproto.CompileMemoryKB)
	if lim.CompileMemoryKB > 0 {
		clim.MemoryKB = lim.CompileMemoryKB
	}
	clim.FileSizeKB = max(lim.FileSizeKB, 256*1024)
	clim.Processes = max(lim.Processes, 128)
	clim.OutputBytes = agentproto.MaxCompileOutput
	// Appended last: gcc, g++ and rustc take the last of repeated options,
	// so a job's -std=... or -O... wins over our defaults.
	argv := append(append([]string{}, l.Compile...), flags...)
	// Compiler diagnostics: both streams into one, in order.
	w := out.writer(stdoutStream)
	ph := r.phase(ctx, phaseSpec{dir: dir, name: "compile", argv: argv, lim: clim, user: as}, out, w, w)
	return ph, out.text(stdoutStream), ph.ExitCode == 0 && ph.Signal == "" && !ph.TimedOut
}

// runTests runs the program once per test, in order, each with the job's
// limits, and judges it: by the checker when there is one, else by the
// expected output when there is one, else by its exit alone. Each test is
// judged on its whole output (up to the output limit); what the result
// keeps of all tests together is bounded by agentproto.MaxTotalOutput, and
// a test whose output was cut for it says so (OutputKept false).
func (r *Runner) runTests(ctx context.Context, req *agentproto.RunRequest, l lang.Language, checker *lang.Language, dir string, chk *checkerDir,
	lim agentproto.Limits, s *streamer, res *agentproto.RunResult) {
	var kept int64
	prof := profilerOf(ctx)
	for i, tc := range req.Tests {
		prof.testStarts()
		t0 := time.Now()
		out := newOutput(lim.OutputBytes)
		argv := append(append([]string{}, l.Run...), tc.Args...)
		spec := phaseSpec{dir: dir, name: "test" + strconv.Itoa(i), argv: argv, stdin: strings.NewReader(tc.Stdin), lim: lim, user: r.jobUser()}
		ts := s
		if kept >= agentproto.MaxTotalOutput {
			ts = &streamer{} // the job's streamed output has its budget too
		}
		var tr agentproto.TestResult
		var ph *agentproto.Phase
		prof.step("test: set-up", t0)
		if req.Interactor != nil {
			var iph *agentproto.Phase
			ph, iph, tr.CheckerMessage, tr.Interaction = r.interact1(ctx, i, l, *checker, dir, chk, tc, lim, out)
			tr.Checker = iph
		} else {
			ph = ts.phase(i, out, func() *agentproto.Phase {
				return r.phase(ctx, spec, out, out.writer(stdoutStream), out.writer(errStream(req)))
			})
		}
		t1 := time.Now()
		stdout, stderr := out.text(stdoutStream), out.text(stderrStream)
		tr.Phase, tr.OutputKept = *ph, true
		clean := ph.ExitCode == 0 && ph.Signal == "" && !ph.TimedOut && !ph.OutputLimited && !ph.MemoryLimited
		passed := clean
		switch {
		case req.Interactor != nil:
			passed = clean && tr.Checker.ExitCode == 0 && tr.Checker.Signal == "" && !tr.Checker.TimedOut
		case !clean:
		case checker != nil:
			tr.Checker, tr.CheckerMessage = r.check1(ctx, i, *checker, chk, tc, stdout, lim)
			t1 = time.Now() // the checker's steps are its own
			passed = tr.Checker.ExitCode == 0 && tr.Checker.Signal == "" && !tr.Checker.TimedOut
		case tc.ExpectedOutput != nil:
			m := agentproto.OutputMatches(stdout, *tc.ExpectedOutput, req.Compare)
			tr.Matched = &m
			passed = m
		}
		t1 = prof.step("test: judge", t1)
		room := max(agentproto.MaxTotalOutput-kept, 0)
		tr.Stdout, tr.Stderr = cutUTF8(stdout, room), cutUTF8(stderr, max(room-int64(len(stdout)), 0))
		tr.OutputKept = len(tr.Stdout) == len(stdout) && len(tr.Stderr) == len(stderr)
		kept += int64(len(tr.Stdout) + len(tr.Stderr))
		res.Tests = append(res.Tests, tr)
		prof.step("test: keep", t1)
		if (!passed && req.StopOnFailure) || ctx.Err() != nil {
			break
		}
	}
}

// cutUTF8 is s cut to at most n bytes, at a character boundary.
func cutUTF8(s string, n int64) string {
	if int64(len(s)) <= n {
		return s
	}
	end := int(n)
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[:end]
}

// checkDir is the directory under JobRoot that holds every checker's
// files: root's, entered by root and the checker's group only. The job
// user cannot list, read or write it, and cannot plant anything in it (the
// job root itself is root's and not writable by the job).
const checkDir = "check"

// checkerDir is where one checker lives: its own directory (owned by the
// checker's user, in which it compiles) and the test files root makes for
// it.
type checkerDir struct {
	root string // JobRoot/check: root's, mode 0750, the checker's group
	dir  string // root/checker<N>: the checker's source and binary
	n    string
}

// prepareChecker makes the checker's directory under the check root and
// writes its source there, before anything of the checker has run.
func (r *Runner) prepareChecker(l lang.Language, code string) (*checkerDir, error) {
	root := filepath.Join(r.JobRoot, checkDir)
	if err := os.Mkdir(root, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("make checker root: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(root, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != uint32(os.Geteuid()) {
		return nil, fmt.Errorf("checker root %s is not a directory of ours (%v)", root, err)
	}
	if r.CheckerUID != 0 {
		if err := os.Chown(root, 0, int(r.CheckerGID)); err != nil {
			return nil, fmt.Errorf("chown checker root: %w", err)
		}
	}
	if err := os.Chmod(root, 0o750); err != nil {
		return nil, fmt.Errorf("chmod checker root: %w", err)
	}
	n := r.next()
	dir, err := r.prepare(l, filepath.Join(root, "checker"+n), code, nil, r.checkerUser())
	if err != nil {
		return nil, err
	}
	return &checkerDir{root: root, dir: dir, n: n}, nil
}

// checkerFiles are the checker's three arguments, in order.
var checkerFiles = [3]string{"input.txt", "expected.txt", "output.txt"}

// testFiles makes a fresh directory for one test under the check root and
// the checker's three files in it, each created new (O_EXCL|O_NOFOLLOW,
// relative to a directory opened without following links), root's, readable
// by the checker's group. It returns their paths.
func (r *Runner) testFiles(c *checkerDir, test int, bodies [3]string) ([]string, error) {
	name := "test" + c.n + "-" + strconv.Itoa(test)
	dirFD, err := r.freshDir(c, name)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dirFD)
	gid := int(r.CheckerGID)
	paths := make([]string, len(checkerFiles))
	for k, file := range checkerFiles {
		if err := createIn(dirFD, file, bodies[k], 0, gid, 0o640); err != nil {
			return nil, err
		}
		paths[k] = filepath.Join(c.root, name, file)
	}
	return paths, nil
}

// createIn creates name in the directory dirFD, new (O_EXCL, never
// through a link), with body, owned by uid:gid with mode.
func createIn(dirFD int, name, body string, uid, gid int, mode uint32) error {
	fd, err := unix.Openat(dirFD, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	_, werr := io.WriteString(f, body)
	cerr := f.Chown(uid, gid)
	merr := f.Chmod(os.FileMode(mode)) // the mode as meant, whatever the umask
	if err := errors.Join(werr, cerr, merr, f.Close()); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// freshDir makes name, a new directory under the check root (root's, the
// checker's group, mode 0750), without following links, and returns it
// open: the caller creates files relative to it, and closes it.
func (r *Runner) freshDir(c *checkerDir, name string) (int, error) {
	rootFD, err := unix.Open(c.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open checker root: %w", err)
	}
	defer unix.Close(rootFD)
	if err := unix.Mkdirat(rootFD, name, 0o750); err != nil {
		return -1, fmt.Errorf("make %s: %w", name, err)
	}
	dirFD, err := unix.Openat(rootFD, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", name, err)
	}
	if err := unix.Fchown(dirFD, 0, int(r.CheckerGID)); err != nil {
		unix.Close(dirFD)
		return -1, fmt.Errorf("chown %s: %w", name, err)
	}
	return dirFD, nil
}

// check1 runs the checker on one test, as the checker's user in its own
// directory, with the test's input, the expected output and the program's
// output as three files it may read and nobody else may write.
func (r *Runner) check1(ctx context.Context, i int, checker lang.Language, c *checkerDir, tc agentproto.TestCase, got string, lim agentproto.Limits) (*agentproto.Phase, string) {
	want := ""
	if tc.ExpectedOutput != nil {
		want = *tc.ExpectedOutput
	}
	t := time.Now()
	files, err := r.testFiles(c, i, [3]string{tc.Stdin, want, got})
	profilerOf(ctx).step("check: files written", t)
	if err != nil {
		return &agentproto.Phase{ExitCode: 127}, "codebench: cannot write the checker's files: " + err.Error()
	}
	out := newOutput(agentproto.MaxCheckerMessage)
	argv := append(append([]string{}, checker.Run...), files...)
	spec := phaseSpec{dir: c.dir, name: "check" + strconv.Itoa(i), argv: argv, lim: lim, user: r.checkerUser(), tmp: c.dir}
	ph := r.phase(ctx, spec, out, out.writer(stdoutStream), io.Discard)
	return ph, out.text(stdoutStream)
}

func withDefaults(l agentproto.Limits) agentproto.Limits {
	set := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&l.WallMS, Defaults.WallMS)
	set(&l.CPUMS, Defaults.CPUMS)
	set(&l.MemoryKB, Defaults.MemoryKB)
	set(&l.StackKB, Defaults.StackKB)
	set(&l.Processes, Defaults.Processes)
	set(&l.OutputBytes, Defaults.OutputBytes)
	set(&l.FileSizeKB, Defaults.FileSizeKB)
	set(&l.CompileWallMS, Defaults.CompileWallMS)
	return l
}

// user is who a phase runs as (zero: no switch).
type user struct{ uid, gid uint32 }

func (r *Runner) jobUser() user     { return user{r.UID, r.GID} }
func (r *Runner) checkerUser() user { return user{r.CheckerUID, r.CheckerGID} }

// next is the next number of the runner's directories.
func (r *Runner) next() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	return strconv.Itoa(r.seq)
}

// prepare makes dir, a fresh directory owned by as, and writes the source
// and extra files into it. Nothing of as has run yet, so nothing in it can
// be a link planted for root to follow.
func (r *Runner) prepare(l lang.Language, dir, code string, extra map[string]string, as user) (string, error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("make job dir: %w", err)
	}
	files := map[string]string{l.Source: code}
	for name, body := range extra { // checked by check
		files[name] = body
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			return "", fmt.Errorf("write %s: %w", name, err)
		}
		if err := chown(p, as); err != nil {
			return "", err
		}
	}
	return dir, chown(dir, as)
}

func chown(p string, as user) error {
	if as.uid == 0 {
		return nil
	}
	if err := os.Chown(p, int(as.uid), int(as.gid)); err != nil {
		return fmt.Errorf("chown %s: %w", p, err)
	}
	return nil
}

// phaseSpec is one compile or run: what to execute, where, and its limits.
type phaseSpec struct {
	dir, name string
	argv      []string
	stdin     io.Reader // nil: /dev/null
	lim       agentproto.Limits
	user      user
	tmp       string // TMPDIR; empty: /tmp
	// started, when set, is called once the process started or could
	// not be (the caller closes its copies of the process's pipe ends).
	started func()
	// own: the caller runs the runner's AfterPhase itself (two phases at
	// once: one must not clean up after the other while it runs).
	own bool
	// exited, when set, is called as soon as the process was waited for.
	exited func()
}

// phase runs spec with its output captured in out and reports what happened.
// It never returns an error: a process that cannot be started is reported as
// exit code 127 with the reason on stderr, as a shell would.
func (r *Runner) phase(ctx context.Context, spec phaseSpec, out *output, stdout, stderr io.Writer) *agentproto.Phase {
	prof, kind := profilerOf(ctx), phaseKind(spec.name)
	if r.AfterPhase != nil && !spec.own {
		defer func() {
			t := time.Now()
			r.AfterPhase()
			prof.step(kind+": after phase (sweep the users' processes)", t)
		}()
	}
	if spec.started != nil {
		once := sync.OnceFunc(spec.started)
		defer once() // when the process never started
		spec.started = once
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(spec.lim.WallMS)*time.Millisecond)
	defer cancel()
	var pl PhaseLimits
	t := time.Now()
	if r.Limiter != nil {
		var err error
		pl, err = r.Limiter.Create(filepath.Base(spec.dir)+"-"+spec.name, spec.lim.MemoryKB, spec.lim.Processes)
		if err != nil {
			fmt.Fprintf(stderr, "codebench: cgroup: %v\n", err)
			return &agentproto.Phase{ExitCode: 127}
		}
		defer func() {
			t := time.Now()
			pl.Destroy()
			prof.step(kind+": limits released (cgroup: watchdog stopped, killed, removed)", t)
		}()
		t = prof.step(kind+": limits made (cgroup)", t)
	}
	cmd, err := r.command(ctx, spec, pl, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", spec.argv[0], err)
		return &agentproto.Phase{ExitCode: 127}
	}
	out.onOverflow = func() { _ = killGroup(cmd) }

	t = prof.step(kind+": command built", t)
	start := time.Now()
	err = r.start(cmd, pl)
	if spec.started != nil {
		spec.started()
	}
	if err != nil {
		fmt.Fprintf(stderr, "start %s: %v\n", spec.argv[0], err)
		return &agentproto.Phase{ExitCode: 127, WallUS: time.Since(start).Microseconds()}
	}
	t = prof.step(kind+": started (fork and exec from the launcher)", start)
	if pl != nil {
		if err := pl.Started(cmd.Process.Pid, spec.lim); err != nil {
			_ = killGroup(cmd)
			fmt.Fprintf(stderr, "codebench: limits: %v\n", err)
		}
		t = prof.step(kind+": limits after start (prlimit)", t)
	}
	err = cmd.Wait()
	wall := time.Since(start)
	t = prof.step(kind+": ran (to exit and the pipes' end)", t)
	if spec.exited != nil {
		spec.exited()
	}
	_ = killGroup(cmd) // leftovers in the group after the leader exited
	defer prof.step(kind+": result read", t)
	ph := result(cmd, err, stderr)
	ph.WallUS = wall.Microseconds()
	ph.TimedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
	ph.OutputLimited = out.overflowed()
	if pl != nil {
		ph.MemoryLimited = pl.MemoryLimited()
		// The cgroup's peak is the program's own: ru_maxrss carries the
		// parent's resident size across exec (exec_mmap keeps the old mm's
		// high-water mark), so it is used only where the peak is unknown.
		if peak := pl.PeakKB(); peak > 0 {
			ph.MaxRSSKB = peak
		}
		if cc, ok := pl.(cpuCounter); ok {
			if user, sys, ok := cc.CPUUS(); ok {
				ph.CPUUserUS, ph.CPUSysUS = user, sys
			}
		}
	}
	return ph
}

// phaseKind is a phase's kind for its profile: its name without the
// number ("test3": "test").
func phaseKind(name string) string {
	return strings.TrimRight(name, "0123456789")
}

// selfPlacer is a PhaseLimits the program enters through the trampoline:
// the trampoline, already under the job's filter, user and rlimits, writes
// itself into the cgroup.procs file it gets as fd 3 (opened by the agent,
// whose rights the kernel checks) right before execve. The job's filter can
// then refuse clone3, which CLONE_INTO_CGROUP would need.
type selfPlacer interface {
	// ProcsFile is the phase cgroup's cgroup.procs, open for writing.
	ProcsFile() *os.File
}

// cpuCounter is a PhaseLimits that counts the phase's CPU time itself:
// every process that ran in it, and none of the trampoline's start-up.
type cpuCounter interface {
	CPUUS() (user, sys int64, ok bool)
}

// start starts cmd: with Restrict from the runner's launcher thread, which
// has no_new_privs and the job seccomp filter, so that the child inherits
// both from the fork on; the limiter places it (or the child). The thread
// outlives every child it forks (the child's parent-death signal follows
// the thread that forked it): it ends with Close.
func (r *Runner) start(cmd *exec.Cmd, pl PhaseLimits) error {
	startIn := cmd.Start
	if pl != nil {
		startIn = func() error { return pl.Start(cmd) }
	}
	if !r.Restrict {
		return startIn()
	}
	l, err := r.launcherOnce()
	if err != nil {
		return err
	}
	err = l.do(startIn)
	if errors.Is(err, errLauncherStopped) {
		// Retired by a concurrent start meanwhile: once more on the next.
		if l, err = r.launcherOnce(); err != nil {
			return err
		}
		err = l.do(startIn)
	}
	if errors.Is(err, errThreadPlaced) {
		// Its thread is stuck in a phase's cgroup: a new launcher for
		// the next phase, and this one's thread ends with it.
		r.retire(l)
	}
	return err
}

// StartRestricted starts cmd as a job's processes start: forked from the
// launcher thread, with no_new_privs and the job seccomp filter from its
// first instruction (a long-lived sandbox's envd, and through it everything
// the sandbox's user runs). cmd names its own user and limits.
func (r *Runner) StartRestricted(cmd *exec.Cmd) error { return r.start(cmd, nil) }

// errThreadPlaced: a start left the thread that forked in the phase's
// limits; that thread must not start anything else.
var errThreadPlaced = errors.New("the forking thread could not leave the phase's cgroups")

// retire stops l, if it is still the runner's launcher.
func (r *Runner) retire(l *launcher) {
	r.mu.Lock()
	if r.launch != l {
		r.mu.Unlock()
		return
	}
	r.launch = nil
	r.mu.Unlock()
	l.stop()
}

// Warm makes ahead of the first job what every job needs and a fresh
// runner would otherwise make on the job's path: the launcher thread and
// its seccomp filter (gVisor compiles a filter and builds its verdict
// cache when it is installed: ~7 ms here).
func (r *Runner) Warm() error {
	if !r.Restrict {
		return nil
	}
	_, err := r.launcherOnce()
	return err
}

// Close stops the launcher thread, if there is one; the runner makes a
// new one if it runs again.
func (r *Runner) Close() {
	r.mu.Lock()
	l := r.launch
	r.mu.Unlock()
	if l != nil {
		r.retire(l)
	}
}

// launcherOnce is the runner's launcher, started on first use.
func (r *Runner) launcherOnce() (*launcher, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.launch != nil {
		return r.launch, nil
	}
	l, err := startLauncher()
	if err != nil {
		return nil, fmt.Errorf("restrict the job: %w", err)
	}
	r.launch = l
	return l, nil
}

// launcher is a goroutine locked to an OS thread of its own that was
// restricted once (no_new_privs and the job filter) and then only runs
// the starts it is given: every process forked from it is restricted from
// its first instruction. Restricting a fresh thread per phase cost a
// filter install per phase, the largest part of a test's set-up under
// gVisor (docs/BENCHMARKS.md, "The cost of a test").
type launcher struct {
	work       chan func()
	quit, done chan struct{}
	stopOnce   sync.Once
}

// errLauncherStopped: a start came to a launcher that had been stopped.
var errLauncherStopped = errors.New("the launcher was stopped")

func startLauncher() (*launcher, error) {
	l := &launcher{work: make(chan func()), quit: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		defer close(l.done)
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := restrictThread(); err != nil {
			ready <- err
			return
		}
		ready <- nil
		for {
			select {
			case f := <-l.work:
				f()
			case <-l.quit:
				return
			}
		}
	}()
	if err := <-ready; err != nil {
		<-l.done
		return nil, err
	}
	return l, nil
}

// do runs f on the launcher's thread, or fails with errLauncherStopped.
func (l *launcher) do(f func() error) error {
	errc := make(chan error, 1)
	select {
	case l.work <- func() { errc <- f() }:
		return <-errc // f runs to its end once taken
	case <-l.done:
		return errLauncherStopped
	}
}

// stop ends the launcher and its thread, and waits for it.
func (l *launcher) stop() {
	l.stopOnce.Do(func() { close(l.quit) })
	<-l.done
}

// command builds the process of a phase: the job user, its own process
// group, and the program itself when a limiter places it (PhaseLimits.Start),
// else the rlimit trampoline (no limiter: RLIMIT_AS limits memory).
func (r *Runner) command(ctx context.Context, spec phaseSpec, pl PhaseLimits, stdout, stderr io.Writer) (*exec.Cmd, error) {
	tmp := spec.tmp
	if tmp == "" {
		tmp = "/tmp"
	}
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + spec.dir, "LANG=C.UTF-8", "TMPDIR=" + tmp}
	var full []string
	var extra []*os.File
	if sp, ok := pl.(selfPlacer); ok {
		// The trampoline enters the cgroup right before execve: its own
		// start-up is charged to the agent's cgroup, not to the program's
		// memory peak or CPU time. The cgroup limits memory, so no RLIMIT_AS.
		lim := spec.lim
		lim.MemoryKB = 0
		full = append(append(append([]string{}, r.Exec...), "--cgroup-procs-fd", "3"), rlimitArgs(lim)...)
		full = append(append(full, "--"), spec.argv...)
		extra = []*os.File{sp.ProcsFile()}
	} else if pl != nil {
		// No trampoline: its own start-up would be counted as the program's
		// CPU time and memory.
		path, err := lookPath(spec.argv[0], env[0])
		if err != nil {
			return nil, err
		}
		full = append([]string{path}, spec.argv[1:]...)
	} else {
		full = append(append(append([]string{}, r.Exec...), rlimitArgs(spec.lim)...), append([]string{"--"}, spec.argv...)...)
	}
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Dir = spec.dir
	cmd.Env = env
	cmd.ExtraFiles = extra
	if spec.stdin != nil {
		cmd.Stdin = spec.stdin
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if spec.user.uid != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: spec.user.uid, Gid: spec.user.gid, Groups: []uint32{}}
	}
	// Kill the whole process group, not just the leader: a fork bomb or a
	// background child must not outlive its phase.
	cmd.Cancel = func() error { return killGroup(cmd) }
	// A child that inherited stdout keeps the pipe open after the leader
	// exits; do not wait for it longer than this.
	cmd.WaitDelay = 500 * time.Millisecond
	return cmd, nil
}

// result reads the exit status and resource usage of a finished phase.
func result(cmd *exec.Cmd, waitErr error, stderr io.Writer) *agentproto.Phase {
	ph := &agentproto.Phase{}
	st := cmd.ProcessState
	if st == nil {
		fmt.Fprintf(stderr, "wait: %v\n", waitErr)
		ph.ExitCode = 127
		return ph
	}
	if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
		ph.CPUUserUS = ru.Utime.Sec*1e6 + int64(ru.Utime.Usec)
		ph.CPUSysUS = ru.Stime.Sec*1e6 + int64(ru.Stime.Usec)
		ph.MaxRSSKB = ru.Maxrss
	}
	ws, _ := st.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		ph.Signal = unix.SignalName(ws.Signal())
		ph.ExitCode = 128 + int(ws.Signal())
	} else {
		ph.ExitCode = ws.ExitStatus()
	}
	return ph
}

func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// rlimitArgs renders the limits for the trampoline (see ApplyRlimits).
func rlimitArgs(l agentproto.Limits) []string {
	cpuSec := (l.CPUMS + 999) / 1000
	return []string{
		"--cpu", strconv.FormatInt(cpuSec, 10),
		"--as-kb", strconv.FormatInt(l.MemoryKB, 10),
		"--stack-kb", strconv.FormatInt(l.StackKB, 10),
		"--nproc", strconv.FormatInt(l.Processes, 10),
		"--fsize-kb", strconv.FormatInt(l.FileSizeKB, 10),
	}
}

// errStream is where a run's stderr goes: its own stream, or with
// RedirectStderr stdout's. Equal writers give the process one pipe for
// both (os/exec), so the two interleave as the program wrote them.
func errStream(req *agentproto.RunRequest) int {
	if req.RedirectStderr {
		return stdoutStream
	}
	return stderrStream
}
