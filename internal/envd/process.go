package envd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds on what a client may hold open in one sandbox.
const (
	maxProcesses  = 256     // processes envd tracks at once
	maxInputChunk = 1 << 20 // one SendInput
	chunkSize     = 32 << 10
	subBuffer     = 64 // events a stream may lag before the process's output waits for it
)

// processes are the processes started through envd, by pid.
type processes struct {
	cfg *Config

	mu    sync.Mutex
	byPid map[uint32]*process
	wg    sync.WaitGroup // each process's waiter
}

// process is one started process: its output goes to whichever streams
// (Start's, Connect's) are subscribed, and is dropped when there are none,
// as envd does.
type process struct {
	pid  uint32
	tag  *string
	conf processConfig
	cmd  *exec.Cmd

	inMu  sync.Mutex
	stdin io.WriteCloser // nil: no stdin (or closed)
	pty   *os.File       // the master, for a pty

	subMu sync.Mutex
	subs  map[*subscriber]struct{}

	done chan struct{} // closed when the process ended and its output is out
	end  endEvent      // set before done
}

type subscriber struct {
	ch   chan processEvent
	gone chan struct{}
}

func (p *process) subscribe() *subscriber {
	s := &subscriber{ch: make(chan processEvent, subBuffer), gone: make(chan struct{})}
	p.subMu.Lock()
	p.subs[s] = struct{}{}
	p.subMu.Unlock()
	return s
}

func (p *process) unsubscribe(s *subscriber) {
	p.subMu.Lock()
	delete(p.subs, s)
	p.subMu.Unlock()
	close(s.gone)
}

// publish hands ev to every subscriber, waiting for a slow one (the
// process's output then waits, as a full pipe makes it) unless it leaves.
func (p *process) publish(ev processEvent) {
	p.subMu.Lock()
	subs := make([]*subscriber, 0, len(p.subs))
	for s := range p.subs {
		subs = append(subs, s)
	}
	p.subMu.Unlock()
	for _, s := range subs {
		select {
		case s.ch <- ev:
		case <-s.gone:
		}
	}
}

// pump reads one of the process's outputs into events until it ends.
func (p *process) pump(r io.Reader, wrap func([]byte) *dataEvent, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		buf := make([]byte, chunkSize)
		n, err := r.Read(buf)
		if n > 0 {
			p.publish(processEvent{Data: wrap(buf[:n])})
		}
		if err != nil {
			return // EOF, or EIO from a pty whose last process is gone
		}
	}
}

func (ps *processes) find(sel *processSelector) (*process, error) {
	if sel == nil {
		return nil, errorf(codeInvalidArgument, "no process selector")
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if sel.Pid != nil {
		if p, ok := ps.byPid[*sel.Pid]; ok {
			return p, nil
		}
		return nil, errorf(codeNotFound, "process with pid %d not found", *sel.Pid)
	}
	if sel.Tag != nil {
		for _, p := range ps.byPid {
			if p.tag != nil && *p.tag == *sel.Tag {
				return p, nil
			}
		}
		return nil, errorf(codeNotFound, "process with tag %q not found", *sel.Tag)
	}
	return nil, errorf(codeInvalidArgument, "a process is selected by pid or tag")
}

// start starts req's process. lifetime, when set, is how long it may run
// (the Start call's Connect-Timeout-Ms, as envd takes it).
func (ps *processes) start(req *startRequest, lifetime time.Duration) (*process, *subscriber, error) {
	if req.Process == nil || req.Process.Cmd == "" {
		return nil, nil, errorf(codeInvalidArgument, "no command")
	}
	ps.mu.Lock()
	n := len(ps.byPid)
	ps.mu.Unlock()
	if n >= maxProcesses {
		return nil, nil, errorf(codeResource, "%d processes are running: the most a sandbox may have through this API", n)
	}
	cwd := ps.cfg.Home
	if req.Process.Cwd != nil && *req.Process.Cwd != "" {
		cwd = ps.cfg.resolve(*req.Process.Cwd)
		if fi, err := os.Stat(cwd); err != nil || !fi.IsDir() {
			return nil, nil, errorf(codeInvalidArgument, "cwd %s is not a directory", cwd)
		}
	}
	cmd := exec.Command(req.Process.Cmd, req.Process.Args...)
	cmd.Dir = cwd
	cmd.Env = ps.cfg.environ(req.Process.Envs)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &process{tag: req.Tag, conf: *req.Process, cmd: cmd, subs: map[*subscriber]struct{}{}, done: make(chan struct{})}
	var pumps []func(*sync.WaitGroup)
	var closeAfterStart []io.Closer
	if req.Pty != nil {
		master, slave, err := openPty(req.Pty.Size)
		if err != nil {
			return nil, nil, errorf(codeInternal, "pty: %v", err)
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		p.pty, p.stdin = master, master
		closeAfterStart = append(closeAfterStart, slave)
		pumps = append(pumps, func(wg *sync.WaitGroup) { p.pump(master, func(b []byte) *dataEvent { return &dataEvent{Pty: b} }, wg) })
	} else {
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return nil, nil, errorf(codeInternal, "%v", err)
		}
		stderr, err := cmd.StderrPipe()
		if err != nil {
			return nil, nil, errorf(codeInternal, "%v", err)
		}
		if req.Stdin != nil && *req.Stdin {
			if p.stdin, err = cmd.StdinPipe(); err != nil {
				return nil, nil, errorf(codeInternal, "%v", err)
			}
		}
		pumps = append(pumps,
			func(wg *sync.WaitGroup) {
				p.pump(stdout, func(b []byte) *dataEvent { return &dataEvent{Stdout: b} }, wg)
			},
			func(wg *sync.WaitGroup) {
				p.pump(stderr, func(b []byte) *dataEvent { return &dataEvent{Stderr: b} }, wg)
			})
	}
	sub := p.subscribe() // before it runs: no output is lost
	err := cmd.Start()
	for _, c := range closeAfterStart {
		_ = c.Close()
	}
	if err != nil {
		if p.pty != nil {
			_ = p.pty.Close()
		}
		return nil, nil, errorf(codeInvalidArgument, "start %s: %v", req.Process.Cmd, err)
	}
	p.pid = uint32(cmd.Process.Pid)
	ps.mu.Lock()
	ps.byPid[p.pid] = p
	ps.mu.Unlock()
	ps.wg.Add(1)
	go ps.wait(p, pumps, lifetime)
	return p, sub, nil
}

// wait is the process's owner: it pumps its output, kills it at its
// lifetime's end, reaps it, and publishes its end.
func (ps *processes) wait(p *process, pumps []func(*sync.WaitGroup), lifetime time.Duration) {
	defer ps.wg.Done()
	var out sync.WaitGroup
	for _, pump := range pumps {
		out.Add(1)
		go pump(&out)
	}
	if lifetime > 0 {
		t := time.AfterFunc(lifetime, func() { _ = killGroup(p.cmd) })
		defer t.Stop()
	}
	var err error
	if p.pty != nil {
		// A pty's master reads EIO only when every holder of the slave is
		// gone; the leader's exit is the end.
		err = p.cmd.Wait()
		_ = killGroup(p.cmd)
		// What the leader wrote last is read, then the reader stops.
		if p.pty.SetReadDeadline(time.Now().Add(200*time.Millisecond)) != nil {
			_ = p.pty.Close()
		}
		out.Wait()
		_ = p.pty.Close()
	} else {
		out.Wait() // the pipes' end: every writer exited
		err = p.cmd.Wait()
	}
	p.end = endOf(p.cmd, err)
	ps.mu.Lock()
	delete(ps.byPid, p.pid)
	ps.mu.Unlock()
	p.inMu.Lock()
	if p.stdin != nil && p.pty == nil {
		_ = p.stdin.Close()
	}
	p.stdin = nil
	p.inMu.Unlock()
	close(p.done)
}

func endOf(cmd *exec.Cmd, err error) endEvent {
	st := cmd.ProcessState
	if st == nil {
		msg := fmt.Sprint(err)
		return endEvent{ExitCode: -1, Status: msg, Error: &msg}
	}
	e := endEvent{ExitCode: int32(st.ExitCode()), Exited: st.Exited(), Status: st.String()}
	if !st.Success() {
		msg := st.String()
		e.Error = &msg
	}
	return e
}

func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

// follow streams a subscribed process's events until its end (sent), the
// client leaving, or ctx's end.
func follow(ctx context.Context, p *process, sub *subscriber, s *streamCall) error {
	defer p.unsubscribe(sub)
	if err := s.send(startResponse{Event: processEvent{Start: &startEvent{Pid: p.pid}}}); err != nil {
		return err
	}
	tick, stop := s.keepalives()
	defer stop()
	for {
		select {
		case ev := <-sub.ch:
			if err := s.send(startResponse{Event: ev}); err != nil {
				return err
			}
		case <-p.done:
			for { // what was published before the end
				select {
				case ev := <-sub.ch:
					if err := s.send(startResponse{Event: ev}); err != nil {
						return err
					}
					continue
				default:
				}
				break
			}
			end := p.end
			return s.send(startResponse{Event: processEvent{End: &end}})
		case <-tick:
			if err := s.send(startResponse{Event: processEvent{Keepalive: &struct{}{}}}); err != nil {
				return err
			}
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return errorf(codeDeadline, "the call's deadline passed")
			}
			return ctx.Err()
		}
	}
}

func (ps *processes) Start(r *http.Request, req *startRequest, s *streamCall) error {
	p, sub, err := ps.start(req, s.timeout)
	if err != nil {
		return err
	}
	ctx := r.Context()
	if s.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	return follow(ctx, p, sub, s)
}

func (ps *processes) Connect(r *http.Request, req *connectRequest, s *streamCall) error {
	p, err := ps.find(req.Process)
	if err != nil {
		return err
	}
	sub := p.subscribe()
	ctx := r.Context()
	if s.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	return follow(ctx, p, sub, s)
}

func (ps *processes) List(_ *http.Request, _ *empty) (*listResponse, error) {
	ps.mu.Lock()
	out := &listResponse{Processes: []processInfo{}}
	for _, p := range ps.byPid {
		out.Processes = append(out.Processes, processInfo{Config: p.conf, Pid: p.pid, Tag: p.tag})
	}
	ps.mu.Unlock()
	sort.Slice(out.Processes, func(i, j int) bool { return out.Processes[i].Pid < out.Processes[j].Pid })
	return out, nil
}

func (ps *processes) SendInput(_ *http.Request, req *sendInputRequest) (*empty, error) {
	p, err := ps.find(req.Process)
	if err != nil {
		return nil, err
	}
	if req.Input == nil {
		return nil, errorf(codeInvalidArgument, "no input")
	}
	data := req.Input.Stdin
	if req.Input.Pty != nil {
		data = req.Input.Pty
	}
	if len(data) > maxInputChunk {
		return nil, errorf(codeResource, "input above %d bytes", maxInputChunk)
	}
	p.inMu.Lock()
	defer p.inMu.Unlock()
	if p.stdin == nil {
		return nil, errorf(codeFailedPrecond, "process %d has no open stdin (start it with stdin: true)", p.pid)
	}
	if _, err := p.stdin.Write(data); err != nil {
		return nil, errorf(codeInternal, "write stdin: %v", err)
	}
	return &empty{}, nil
}

func (ps *processes) SendSignal(_ *http.Request, req *sendSignalRequest) (*empty, error) {
	p, err := ps.find(req.Process)
	if err != nil {
		return nil, err
	}
	sig := syscall.SIGKILL
	switch req.Signal {
	case "SIGNAL_SIGKILL":
	case "SIGNAL_SIGTERM":
		sig = syscall.SIGTERM
	default:
		return nil, errorf(codeInvalidArgument, "signal %q is not served (SIGNAL_SIGKILL, SIGNAL_SIGTERM)", req.Signal)
	}
	// The whole process group: what the command started goes with it.
	if err := syscall.Kill(-int(p.pid), sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return nil, errorf(codeInternal, "signal: %v", err)
	}
	return &empty{}, nil
}

func (ps *processes) CloseStdin(_ *http.Request, req *closeStdinRequest) (*empty, error) {
	p, err := ps.find(req.Process)
	if err != nil {
		return nil, err
	}
	p.inMu.Lock()
	defer p.inMu.Unlock()
	if p.pty != nil {
		return nil, errorf(codeFailedPrecond, "a pty's input cannot be closed; send Ctrl-D")
	}
	if p.stdin != nil {
		_ = p.stdin.Close()
		p.stdin = nil
	}
	return &empty{}, nil
}

func (ps *processes) Update(_ *http.Request, req *updateRequest) (*empty, error) {
	p, err := ps.find(req.Process)
	if err != nil {
		return nil, err
	}
	if req.Pty == nil || req.Pty.Size == nil {
		return &empty{}, nil
	}
	if p.pty == nil {
		return nil, errorf(codeFailedPrecond, "process %d has no pty", p.pid)
	}
	if err := setSize(p.pty, req.Pty.Size); err != nil {
		return nil, errorf(codeInternal, "resize: %v", err)
	}
	return &empty{}, nil
}

// openPty opens a pseudo-terminal pair of the given size.
func openPty(size *ptySize) (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("unlock: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	slave, err = os.OpenFile(filepath.Join("/dev/pts", fmt.Sprint(n)), os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	if size != nil {
		if err := setSize(master, size); err != nil {
			master.Close()
			slave.Close()
			return nil, nil, err
		}
	}
	return master, slave, nil
}

func setSize(f *os.File, size *ptySize) error {
	return unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(min(size.Rows, 1000)), Col: uint16(min(size.Cols, 1000))})
}
