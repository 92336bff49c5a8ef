package envd

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxEntries bounds one ListDir answer.
const maxEntries = 100_000

// filesystem serves filesystem.Filesystem. envd runs as the sandbox's user,
// so every path is reached with that user's rights and nothing else.
type filesystem struct {
	cfg *Config

	namesMu sync.Mutex
	names   map[string]string // "u1002" / "g1002" → name
}

func fsError(err error, path string) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errorf(codeNotFound, "%s: no such file or directory", path)
	case errors.Is(err, fs.ErrExist):
		return errorf(codeAlreadyExists, "%s already exists", path)
	case errors.Is(err, fs.ErrPermission):
		return errorf(codePermission, "%s: permission denied", path)
	case errors.Is(err, syscall.ENOSPC):
		return errorf(codeResource, "%s: no space left on the sandbox's disk", path)
	default:
		return errorf(codeInternal, "%s: %v", path, err)
	}
}

func (f *filesystem) name(kind string, id uint32) string {
	key := kind + strconv.FormatUint(uint64(id), 10)
	f.namesMu.Lock()
	defer f.namesMu.Unlock()
	if n, ok := f.names[key]; ok {
		return n
	}
	n := strconv.FormatUint(uint64(id), 10)
	if kind == "u" {
		if u, err := user.LookupId(n); err == nil {
			n = u.Username
		}
	} else if g, err := user.LookupGroupId(n); err == nil {
		n = g.Name
	}
	f.names[key] = n
	return n
}

func (f *filesystem) entry(path string, fi fs.FileInfo) entryInfo {
	e := entryInfo{Name: fi.Name(), Path: path, Size: strconv.FormatInt(fi.Size(), 10), Mode: uint32(fi.Mode().Perm()),
		Permissions: fi.Mode().String(), ModifiedTime: fi.ModTime().UTC().Format(time.RFC3339Nano)}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		e.Type = fileTypeSymlink
		if t, err := os.Readlink(path); err == nil {
			e.SymlinkTarget = &t
		}
	case fi.IsDir():
		e.Type = fileTypeDirectory
	default:
		e.Type = fileTypeFile
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.Owner, e.Group = f.name("u", st.Uid), f.name("g", st.Gid)
	}
	return e
}

func (f *filesystem) stat(path string) (*entryInfo, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fsError(err, path)
	}
	e := f.entry(path, fi)
	return &e, nil
}

func (f *filesystem) Stat(_ *http.Request, req *pathRequest) (*entryResponse, error) {
	e, err := f.stat(f.cfg.resolve(req.Path))
	if err != nil {
		return nil, err
	}
	return &entryResponse{Entry: e}, nil
}

func (f *filesystem) MakeDir(_ *http.Request, req *pathRequest) (*entryResponse, error) {
	p := f.cfg.resolve(req.Path)
	if fi, err := os.Stat(p); err == nil {
		if fi.IsDir() {
			return nil, errorf(codeAlreadyExists, "directory %s already exists", p)
		}
		return nil, errorf(codeInvalidArgument, "%s exists and is not a directory", p)
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return nil, fsError(err, p)
	}
	e, err := f.stat(p)
	if err != nil {
		return nil, err
	}
	return &entryResponse{Entry: e}, nil
}

func (f *filesystem) Move(_ *http.Request, req *moveRequest) (*entryResponse, error) {
	src, dst := f.cfg.resolve(req.Source), f.cfg.resolve(req.Destination)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return nil, fsError(err, filepath.Dir(dst))
	}
	if err := os.Rename(src, dst); err != nil {
		return nil, fsError(err, src)
	}
	e, err := f.stat(dst)
	if err != nil {
		return nil, err
	}
	return &entryResponse{Entry: e}, nil
}

func (f *filesystem) Remove(_ *http.Request, req *pathRequest) (*empty, error) {
	p := f.cfg.resolve(req.Path)
	if _, err := os.Lstat(p); err != nil {
		return nil, fsError(err, p)
	}
	if err := os.RemoveAll(p); err != nil {
		return nil, fsError(err, p)
	}
	return &empty{}, nil
}

func (f *filesystem) ListDir(_ *http.Request, req *listDirRequest) (*listDirResponse, error) {
	root := f.cfg.resolve(req.Path)
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fsError(err, root)
	}
	if !fi.IsDir() {
		return nil, errorf(codeInvalidArgument, "%s is not a directory", root)
	}
	depth := int(max(req.Depth, 1))
	out := &listDirResponse{Entries: []entryInfo{}}
	var walk func(dir string, level int) error
	walk = func(dir string, level int) error {
		des, err := os.ReadDir(dir)
		if err != nil {
			return fsError(err, dir)
		}
		for _, de := range des {
			if len(out.Entries) >= maxEntries {
				return errorf(codeResource, "more than %d entries under %s; list a smaller depth", maxEntries, root)
			}
			p := filepath.Join(dir, de.Name())
			info, err := de.Info()
			if err != nil {
				continue // removed meanwhile
			}
			out.Entries = append(out.Entries, f.entry(p, info))
			if de.IsDir() && level < depth { // symlinks are not followed
				if err := walk(p, level+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(root, 1); err != nil {
		return nil, err
	}
	return out, nil
}

// WatchDir streams the changes inside a directory (inotify), recursively if
// asked, until the client leaves or the call's deadline.
func (f *filesystem) WatchDir(r *http.Request, req *watchDirRequest, s *streamCall) error {
	root := f.cfg.resolve(req.Path)
	fi, err := os.Stat(root)
	if err != nil {
		return fsError(err, root)
	}
	if !fi.IsDir() {
		return errorf(codeInvalidArgument, "%s is not a directory", root)
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return errorf(codeInternal, "inotify: %v", err)
	}
	file := os.NewFile(uintptr(fd), "inotify") // non-blocking: Close ends a Read
	defer file.Close()
	dirs := map[int]string{}
	const mask = unix.IN_CREATE | unix.IN_MODIFY | unix.IN_CLOSE_WRITE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_ATTRIB
	add := func(dir string) {
		if len(dirs) >= 8192 {
			return
		}
		if wd, err := unix.InotifyAddWatch(fd, dir, mask); err == nil {
			dirs[wd] = dir
		}
	}
	add(root)
	if req.Recursive {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() && p != root {
				add(p)
			}
			return nil
		})
	}
	if err := s.send(watchDirResponse{Start: &struct{}{}}); err != nil {
		return err
	}
	ctx := r.Context()
	events := make(chan []filesystemEvent)
	readDone := make(chan struct{})
	go func() { // owned: ends when file is closed (deferred above), waited for below
		defer close(readDone)
		buf := make([]byte, 64<<10)
		for {
			n, err := file.Read(buf)
			if err != nil {
				return
			}
			var batch []filesystemEvent
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafePointer(buf[off:]))
				nameLen := int(ev.Len)
				name := ""
				if nameLen > 0 && off+unix.SizeofInotifyEvent+nameLen <= n {
					name = cString(buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+nameLen])
				}
				off += unix.SizeofInotifyEvent + nameLen
				dir, ok := dirs[int(ev.Wd)]
				if !ok || name == "" {
					continue
				}
				full := filepath.Join(dir, name)
				if req.Recursive && ev.Mask&unix.IN_ISDIR != 0 && ev.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0 {
					add(full)
				}
				rel, _ := filepath.Rel(root, full)
				if t := eventType(ev.Mask); t != "" {
					batch = append(batch, filesystemEvent{Name: rel, Type: t})
				}
			}
			select {
			case events <- batch:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() { file.Close(); <-readDone }()
	tick, stop := s.keepalives()
	defer stop()
	deadline := make(<-chan time.Time)
	if s.timeout > 0 {
		t := time.NewTimer(s.timeout)
		defer t.Stop()
		deadline = t.C
	}
	for {
		select {
		case batch := <-events:
			for _, ev := range batch {
				if err := s.send(watchDirResponse{Filesystem: &ev}); err != nil {
					return err
				}
			}
		case <-tick:
			if err := s.send(watchDirResponse{Keepalive: &struct{}{}}); err != nil {
				return err
			}
		case <-deadline:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func eventType(mask uint32) string {
	switch {
	case mask&unix.IN_CREATE != 0:
		return eventCreate
	case mask&(unix.IN_MODIFY|unix.IN_CLOSE_WRITE) != 0:
		return eventWrite
	case mask&unix.IN_DELETE != 0:
		return eventRemove
	case mask&(unix.IN_MOVED_FROM|unix.IN_MOVED_TO) != 0:
		return eventRename
	case mask&unix.IN_ATTRIB != 0:
		return eventChmod
	}
	return ""
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
