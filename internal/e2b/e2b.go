// Package e2b speaks E2B's API over internal/sandboxes, for the unmodified
// E2B SDK (../docs/SANDBOXES.md): the control plane (REST with X-API-KEY)
// and the data plane (envd's routes, proxied into the sandbox named by the
// E2b-Sandbox-Id header, after its access token is checked), on one
// listener.
package e2b

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/sandboxes"
)

// EnvdVersion is the envd this server claims: CloseStdin and octet-stream
// uploads are served; file metadata (0.6.2) is not.
const EnvdVersion = "0.5.7"

// envdPort is the port the SDK names for envd; nothing else in a sandbox
// is reachable.
const envdPort = "49983"

// Bounds on what a client sends.
const (
	maxControlBody = 256 << 10
	maxUpload      = 1 << 30
	maxListLimit   = 100
)

// Manager is what the server drives (sandboxes.Manager).
type Manager interface {
	Create(ctx context.Context, key string, req sandboxes.CreateRequest) (sandboxes.Info, error)
	Get(key, id string) (sandboxes.Info, error)
	List(key string, f sandboxes.Filter) []sandboxes.Info
	Kill(ctx context.Context, key, id string) error
	Pause(ctx context.Context, key, id string) error
	Connect(ctx context.Context, key, id string, timeout time.Duration) (sandboxes.Info, bool, error)
	SetTimeout(key, id string, d time.Duration) error
	Metrics(key, id string) ([]sandboxes.Metric, error)
	Transport(id, token string) (http.RoundTripper, error)
	Token(id string) (string, bool)
	Find(match func(token string) bool) (string, bool)
}

var _ Manager = (*sandboxes.Manager)(nil)

// Server is the E2B API.
type Server struct {
	m    Manager
	keys [][]byte // empty: any non-empty key (loopback only; config checks)
	log  *slog.Logger
	ctrl http.Handler
}

// New makes the server; keys are the accepted API keys.
func New(m Manager, keys []string, log *slog.Logger) *Server {
	s := &Server{m: m, log: log}
	for _, k := range keys {
		if k = strings.TrimSpace(k); k != "" {
			s.keys = append(s.keys, []byte(k))
		}
	}
	mux := http.NewServeMux()
	for _, p := range []string{"POST /sandboxes", "POST /v2/sandboxes"} {
		mux.HandleFunc(p, s.create)
	}
	for _, p := range []string{"POST /sandboxes/{id}/connect", "POST /v2/sandboxes/{id}/connect"} {
		mux.HandleFunc(p, s.connect)
	}
	mux.HandleFunc("GET /v2/sandboxes", s.list)
	mux.HandleFunc("GET /sandboxes", s.list)
	mux.HandleFunc("GET /sandboxes/{id}", s.get)
	mux.HandleFunc("DELETE /sandboxes/{id}", s.kill)
	mux.HandleFunc("POST /sandboxes/{id}/timeout", s.timeout)
	mux.HandleFunc("POST /sandboxes/{id}/pause", s.pause)
	mux.HandleFunc("GET /sandboxes/{id}/metrics", s.metrics)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "%s %s is not part of the E2B API served here", r.Method, r.URL.Path)
	})
	s.ctrl = mux
	return s
}

// ServeHTTP dispatches: a request naming a sandbox goes to its envd, every
// other is the control plane's.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(s.keys) == 0 && !loopbackHost(r.Host) {
		// Without keys any key is taken, so only a loopback name may be
		// asked for: a web page that rebinds its own name to 127.0.0.1
		// is refused.
		apiError(w, http.StatusForbidden, "host %q: without API keys this server answers loopback names only", r.Host)
		return
	}
	if id := r.Header.Get("E2b-Sandbox-Id"); id != "" {
		s.dataPlane(w, r, id)
		return
	}
	if r.URL.Path == "/files" && r.URL.Query().Get("signature") != "" {
		// A presigned URL (the SDK's uploadUrl and downloadUrl): no
		// sandbox id, but a signature only one sandbox's token makes.
		id, ok := s.m.Find(func(token string) bool { return s.signedWith(r, token) })
		if !ok {
			apiError(w, http.StatusUnauthorized, "no sandbox signed this URL (or its signature expired)")
			return
		}
		s.dataPlane(w, r, id)
		return
	}
	if !s.keyOK(r.Header.Get("X-API-KEY")) {
		apiError(w, http.StatusUnauthorized, "invalid API key")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxControlBody)
	s.ctrl.ServeHTTP(w, r)
}

func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

func (s *Server) keyOK(key string) bool {
	if key == "" {
		return false
	}
	if len(s.keys) == 0 {
		return true
	}
	ok := 0
	for _, k := range s.keys {
		ok |= subtle.ConstantTimeCompare(k, []byte(key))
	}
	return ok == 1
}

// apiError is the control plane's error: the SDK reads the body's code.
func apiError(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": status, "message": fmt.Sprintf(format, args...)})
}

func (s *Server) fail(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, sandboxes.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, sandboxes.ErrAlreadyPaused):
		status = http.StatusConflict
	case errors.Is(err, sandboxes.ErrQuota):
		status = http.StatusTooManyRequests
	case errors.Is(err, sandboxes.ErrFull):
		status = http.StatusServiceUnavailable
	case errors.Is(err, sandboxes.ErrBadRequest):
		status = http.StatusBadRequest
	}
	if status == http.StatusInternalServerError {
		s.log.Warn("e2b: request failed", "err", err)
	}
	apiError(w, status, "%v", err)
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		apiError(w, http.StatusRequestEntityTooLarge, "request body: %v", err)
		return false
	}
	if len(b) == 0 {
		return true
	}
	if err := json.Unmarshal(b, v); err != nil {
		apiError(w, http.StatusBadRequest, "request body: %v", err)
		return false
	}
	return true
}

// seconds is a client's timeout in seconds as a duration, bounded so that
// it cannot overflow (the manager clamps it to its maximum).
func seconds(n int64) time.Duration { return time.Duration(min(n, 1<<31)) * time.Second }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// sandboxJSON is the create and connect answer (E2B's Sandbox).
type sandboxJSON struct {
	TemplateID      string  `json:"templateID"`
	SandboxID       string  `json:"sandboxID"`
	ClientID        string  `json:"clientID"`
	EnvdVersion     string  `json:"envdVersion"`
	EnvdAccessToken string  `json:"envdAccessToken"`
	Domain          *string `json:"domain"`
}

func sandboxOf(i sandboxes.Info) sandboxJSON {
	return sandboxJSON{TemplateID: i.TemplateID, SandboxID: i.ID, ClientID: "codebench", EnvdVersion: EnvdVersion, EnvdAccessToken: i.Token}
}

// detailJSON is E2B's SandboxDetail and ListedSandbox.
type detailJSON struct {
	TemplateID  string            `json:"templateID"`
	SandboxID   string            `json:"sandboxID"`
	ClientID    string            `json:"clientID"`
	StartedAt   string            `json:"startedAt"`
	EndAt       string            `json:"endAt"`
	State       string            `json:"state"`
	CPUCount    int               `json:"cpuCount"`
	MemoryMB    int               `json:"memoryMB"`
	DiskSizeMB  int               `json:"diskSizeMB"`
	EnvdVersion string            `json:"envdVersion"`
	Metadata    map[string]string `json:"metadata"`
}

func (s *Server) detailOf(i sandboxes.Info) detailJSON {
	md := i.Metadata
	if md == nil {
		md = map[string]string{}
	}
	return detailJSON{TemplateID: i.TemplateID, SandboxID: i.ID, ClientID: "codebench", StartedAt: i.StartedAt.UTC().Format(time.RFC3339Nano),
		EndAt: i.EndAt.UTC().Format(time.RFC3339Nano), State: i.State, CPUCount: i.VCPUs, MemoryMB: i.MemoryMB, EnvdVersion: EnvdVersion, Metadata: md}
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	var req struct {
		TemplateID          string            `json:"templateID"`
		Timeout             *int64            `json:"timeout"`
		Metadata            map[string]string `json:"metadata"`
		EnvVars             map[string]string `json:"envVars"`
		AutoPause           bool              `json:"autoPause"`
		AllowInternetAccess *bool             `json:"allow_internet_access"`
		AutoResume          *struct {
			Enabled bool `json:"enabled"`
		} `json:"autoResume"`
		// Not served: refused when asked for, never silently dropped.
		Network      json.RawMessage `json:"network"`
		IAM          json.RawMessage `json:"iam"`
		MCP          json.RawMessage `json:"mcp"`
		VolumeMounts json.RawMessage `json:"volumeMounts"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.AllowInternetAccess != nil && *req.AllowInternetAccess {
		apiError(w, http.StatusBadRequest, "allow_internet_access: sandboxes on this host have no network (docs/SANDBOXES.md)")
		return
	}
	if req.AutoResume != nil && req.AutoResume.Enabled {
		apiError(w, http.StatusBadRequest, "autoResume: a paused sandbox resumes on connect only here (docs/SANDBOXES.md)")
		return
	}
	for name, v := range map[string]json.RawMessage{"network": req.Network, "iam": req.IAM, "mcp": req.MCP, "volumeMounts": req.VolumeMounts} {
		if len(v) > 0 && string(v) != "null" {
			apiError(w, http.StatusBadRequest, "%s: not served by this sandbox host (docs/SANDBOXES.md)", name)
			return
		}
	}
	if req.TemplateID == "" {
		req.TemplateID = "base"
	}
	if strings.HasPrefix(req.TemplateID, "code-interpreter") {
		apiError(w, http.StatusBadRequest, "template %q: the code interpreter is not served here; every template is the guest image with its languages (docs/SANDBOXES.md)", req.TemplateID)
		return
	}
	var timeout time.Duration
	if req.Timeout != nil {
		if *req.Timeout < 0 {
			apiError(w, http.StatusBadRequest, "timeout: %d seconds", *req.Timeout)
			return
		}
		timeout = seconds(*req.Timeout)
	}
	info, err := s.m.Create(r.Context(), r.Header.Get("X-API-KEY"), sandboxes.CreateRequest{TemplateID: req.TemplateID,
		Metadata: req.Metadata, Envs: req.EnvVars, Timeout: timeout, AutoPause: req.AutoPause})
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, sandboxOf(info))
}

func (s *Server) connect(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Timeout *int64 `json:"timeout"`
	}
	if !decode(w, r, &req) {
		return
	}
	var timeout time.Duration
	if req.Timeout != nil && *req.Timeout > 0 {
		timeout = seconds(*req.Timeout)
	}
	info, resumed, err := s.m.Connect(r.Context(), r.Header.Get("X-API-KEY"), r.PathValue("id"), timeout)
	if err != nil {
		s.fail(w, err)
		return
	}
	status := http.StatusOK
	if resumed {
		status = http.StatusCreated
	}
	writeJSON(w, status, sandboxOf(info))
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	info, err := s.m.Get(r.Header.Get("X-API-KEY"), r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.detailOf(info))
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f sandboxes.Filter
	if md := q.Get("metadata"); md != "" {
		vals, err := url.ParseQuery(md)
		if err != nil {
			apiError(w, http.StatusBadRequest, "metadata: %v", err)
			return
		}
		// The SDK escapes each key and value, then the pairs: one more
		// unescape each.
		f.Metadata = map[string]string{}
		for k := range vals {
			uk, err1 := url.QueryUnescape(k)
			uv, err2 := url.QueryUnescape(vals.Get(k))
			if err1 != nil || err2 != nil {
				apiError(w, http.StatusBadRequest, "metadata: bad escape in %q", md)
				return
			}
			f.Metadata[uk] = uv
		}
	}
	for _, st := range q["state"] {
		for _, one := range strings.Split(st, ",") {
			if one = strings.TrimSpace(one); one != "" {
				f.States = append(f.States, one)
			}
		}
	}
	all := s.m.List(r.Header.Get("X-API-KEY"), f)
	out := []detailJSON{}
	if r.URL.Path == "/sandboxes" { // v1: everything running, no paging
		for _, i := range all {
			if i.State == sandboxes.StateRunning {
				out = append(out, s.detailOf(i))
			}
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	limit := maxListLimit
	if l, err := strconv.Atoi(q.Get("limit")); err == nil && l > 0 {
		limit = min(l, maxListLimit)
	}
	start := 0
	if tok := q.Get("nextToken"); tok != "" {
		start = len(all)
		for i, info := range all {
			if info.ID == tok {
				start = i
				break
			}
		}
	}
	end := min(start+limit, len(all))
	for _, i := range all[start:end] {
		out = append(out, s.detailOf(i))
	}
	if end < len(all) {
		w.Header().Set("X-Next-Token", all[end].ID)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) kill(w http.ResponseWriter, r *http.Request) {
	if err := s.m.Kill(r.Context(), r.Header.Get("X-API-KEY"), r.PathValue("id")); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) timeout(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Timeout int64 `json:"timeout"`
	}
	if !decode(w, r, &req) {
		return
	}
	if req.Timeout < 0 {
		apiError(w, http.StatusBadRequest, "timeout: %d seconds", req.Timeout)
		return
	}
	if err := s.m.SetTimeout(r.Header.Get("X-API-KEY"), r.PathValue("id"), seconds(req.Timeout)); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) pause(w http.ResponseWriter, r *http.Request) {
	if err := s.m.Pause(r.Context(), r.Header.Get("X-API-KEY"), r.PathValue("id")); err != nil {
		s.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// metricJSON is E2B's SandboxMetric; the disk fields are left out (the
// host does not see inside the sandbox's home).
type metricJSON struct {
	Timestamp     string  `json:"timestamp"`
	TimestampUnix int64   `json:"timestampUnix"`
	CPUCount      int     `json:"cpuCount"`
	CPUUsedPct    float64 `json:"cpuUsedPct"`
	MemUsed       int64   `json:"memUsed"`
	MemTotal      int64   `json:"memTotal"`
}

// metrics answers with one reading, now (a running sandbox), or none: no
// series is kept.
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	ms, err := s.m.Metrics(r.Header.Get("X-API-KEY"), r.PathValue("id"))
	if err != nil {
		s.fail(w, err)
		return
	}
	out := []metricJSON{}
	for _, m := range ms {
		out = append(out, metricJSON{Timestamp: m.Time.UTC().Format(time.RFC3339Nano), TimestampUnix: m.Time.Unix(),
			CPUCount: m.CPUCount, CPUUsedPct: m.CPUPct, MemUsed: m.MemUsed, MemTotal: m.MemTotal})
	}
	writeJSON(w, http.StatusOK, out)
}

// dataPlane checks the caller's right to the sandbox and proxies the
// request to its envd. A sandbox that is unknown, killed or paused answers
// 502, as E2B's proxy does (the SDK reads it as "not running").
func (s *Server) dataPlane(w http.ResponseWriter, r *http.Request, id string) {
	if port := r.Header.Get("E2b-Sandbox-Port"); port != "" && port != envdPort {
		apiError(w, http.StatusBadGateway, "port %s of sandbox %s: only envd's port %s is served (no port forwarding)", port, id, envdPort)
		return
	}
	token := r.Header.Get("X-Access-Token")
	if token == "" && (r.URL.Path == "/health" || (r.URL.Path == "/files" && s.signed(r, id))) {
		token, _ = s.m.Token(id)
	}
	tr, err := s.m.Transport(id, token)
	switch {
	case errors.Is(err, sandboxes.ErrBadToken):
		if strings.HasPrefix(r.URL.Path, "/files") {
			apiError(w, http.StatusUnauthorized, "invalid access token")
		} else {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"code":"unauthenticated","message":"invalid access token"}`)
		}
		return
	case err != nil:
		apiError(w, http.StatusBadGateway, "sandbox %s is not running: %v", id, err)
		return
	}
	if r.ContentLength > maxUpload {
		apiError(w, http.StatusRequestEntityTooLarge, "a request of %d bytes: at most %d", r.ContentLength, int64(maxUpload))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxUpload)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", "envd"
			pr.Out.Host = "envd"
			pr.Out.Header.Del("X-Access-Token")
			pr.Out.Header.Del("X-Api-Key")
		},
		Transport:     tr,
		FlushInterval: -1, // streams flow as they come
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			apiError(w, http.StatusBadGateway, "sandbox %s: %v", id, err)
		},
	}
	proxy.ServeHTTP(w, r)
}

// signed checks a presigned /files URL: signature = "v1_" + base64 of
// sha256("path:operation:user:token[:expiration]"), unpadded, as the SDK
// makes it, and an expiration in the future if there is one.
func (s *Server) signed(r *http.Request, id string) bool {
	token, ok := s.m.Token(id)
	return ok && s.signedWith(r, token)
}

// signedWith checks the URL's signature against one token.
func (s *Server) signedWith(r *http.Request, token string) bool {
	q := r.URL.Query()
	sig := q.Get("signature")
	if sig == "" || token == "" {
		return false
	}
	op := "read"
	if r.Method == http.MethodPost {
		op = "write"
	}
	raw := q.Get("path") + ":" + op + ":" + q.Get("username") + ":" + token
	if exp := q.Get("signature_expiration"); exp != "" {
		sec, err := strconv.ParseInt(exp, 10, 64)
		if err != nil || time.Now().Unix() > sec {
			return false
		}
		raw += ":" + exp
	}
	sum := sha256.Sum256([]byte(raw))
	want := "v1_" + strings.TrimRight(base64.StdEncoding.EncodeToString(sum[:]), "=")
	return subtle.ConstantTimeCompare([]byte(want), []byte(sig)) == 1
}
