// Package envd is the data plane of a long-lived sandbox, served inside the
// guest: the E2B SDK's process and filesystem services (proto/process.proto,
// proto/filesystem.proto; the Connect protocol with the JSON codec) and its
// /health and /files routes. It runs as the sandbox's own unprivileged user,
// under the job seccomp filter, so that every process it starts and every
// path it touches has that user's rights and no more; the host reaches it
// through internal/sandboxlink and has already checked who is calling.
package envd

import (
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"unsafe"
)

// Config is the sandbox user's world.
type Config struct {
	User string // the account name ("user")
	Home string // its home, where relative paths resolve
	// Env is every process's base environment (PATH, HOME, the
	// sandbox's envVars), as KEY=VALUE.
	Env []string
	Log *slog.Logger
}

// resolve makes p absolute: relative to the home, cleaned.
func (c *Config) resolve(p string) string {
	if p == "" {
		return c.Home
	}
	if strings.HasPrefix(p, "~/") || p == "~" {
		p = strings.TrimPrefix(strings.TrimPrefix(p, "~"), "/")
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(c.Home, p)
	}
	return filepath.Clean(p)
}

// environ is the base environment with extra set over it.
func (c *Config) environ(extra map[string]string) []string {
	env := map[string]string{}
	for _, kv := range c.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	for k, v := range extra {
		if k != "" && !strings.ContainsAny(k, "=\x00") && !strings.Contains(v, "\x00") {
			env[k] = v
		}
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// Handler serves the data plane.
func Handler(cfg Config) http.Handler {
	ps := &processes{cfg: &cfg, byPid: map[uint32]*process{}}
	fsys := &filesystem{cfg: &cfg, names: map[string]string{}}
	files := &fileRoutes{cfg: &cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("GET /files", files.get)
	mux.HandleFunc("POST /files", files.post)

	mux.Handle("/process.Process/Start", serverStream(ps.Start))
	mux.Handle("/process.Process/Connect", serverStream(ps.Connect))
	mux.Handle("/process.Process/List", unary(ps.List))
	mux.Handle("/process.Process/SendInput", unary(ps.SendInput))
	mux.Handle("/process.Process/SendSignal", unary(ps.SendSignal))
	mux.Handle("/process.Process/CloseStdin", unary(ps.CloseStdin))
	mux.Handle("/process.Process/Update", unary(ps.Update))
	mux.Handle("/process.Process/StreamInput", unimplemented("StreamInput is a client stream; the SDK sends SendInput"))

	mux.Handle("/filesystem.Filesystem/Stat", unary(fsys.Stat))
	mux.Handle("/filesystem.Filesystem/MakeDir", unary(fsys.MakeDir))
	mux.Handle("/filesystem.Filesystem/Move", unary(fsys.Move))
	mux.Handle("/filesystem.Filesystem/Remove", unary(fsys.Remove))
	mux.Handle("/filesystem.Filesystem/ListDir", unary(fsys.ListDir))
	mux.Handle("/filesystem.Filesystem/WatchDir", serverStream(fsys.WatchDir))
	for _, m := range []string{"CreateWatcher", "GetWatcherEvents", "RemoveWatcher"} {
		mux.Handle("/filesystem.Filesystem/"+m, unimplemented("polled watchers are not served; use WatchDir"))
	}
	return onlyUser(cfg.User, mux)
}

// onlyUser refuses a call for another account than the sandbox's (the SDK
// names one with Basic auth, or ?username= on /files): envd runs as that
// user and cannot act as another, root included.
func onlyUser(name string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked := r.URL.Query().Get("username")
		if u, _, ok := r.BasicAuth(); ok {
			asked = u
		}
		if asked != "" && asked != name {
			msg := fmt.Sprintf("user %q: this sandbox serves its own user %q only (no root)", asked, name)
			if strings.HasPrefix(r.URL.Path, "/files") {
				httpError(w, http.StatusForbidden, "%s", msg)
			} else {
				writeUnaryError(w, errorf(codePermission, "%s", msg))
			}
			return
		}
		next.ServeHTTP(w, r)
	})
}

func unimplemented(why string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { writeUnaryError(w, errorf(codeUnimplemented, "%s", why)) }
}

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }
