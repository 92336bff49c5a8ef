package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/codebench/codebench/internal/untrusted"
)

func text(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, body)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// errorJSON is every door's error but Piston's: {"error": msg}.
func errorJSON(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// maxBodies is how many bodies at the limit are read and handled at once.
const maxBodies = 8

// tooMany is the error of a body of too many JSON values.
func tooMany(what string, n, limit int) string {
	return untrusted.TooManyJSONValues(what, n, limit).Error()
}

// errorShape writes an error in a door's own shape.
type errorShape func(w http.ResponseWriter, code int, msg string)

// submitError answers a submit error in the door's shape: 500 for the
// store's failure, 429 with Retry-After for a client over its quota, else
// 503.
func submitError(w http.ResponseWriter, err error, fail errorShape) {
	var quota *quotaError
	switch {
	case errors.Is(err, errStore):
		fail(w, http.StatusInternalServerError, err.Error())
	case errors.As(err, &quota):
		w.Header().Set("Retry-After", strconv.Itoa(int(quota.retry.Seconds())))
		fail(w, http.StatusTooManyRequests, err.Error())
	default:
		fail(w, http.StatusServiceUnavailable, err.Error())
	}
}

// ownerOf is who a request is from, for its quotas: its auth token
// (hashed: the store never holds it), else its address.
func (s *Server) ownerOf(r *http.Request) string {
	tok := r.Header.Get(s.cfg.AuthHeader)
	if tok == "" {
		tok = r.URL.Query().Get(s.cfg.AuthHeader)
	}
	if tok != "" {
		sum := sha256.Sum256([]byte(tok))
		return "token:" + hex.EncodeToString(sum[:8])
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "addr:" + host
}

// readBody reads a bounded request body; false: answered (413, 400, or
// 503 when the client went away waiting for room) in the door's error
// shape. The bodies read and handled at once take at most maxBodies times
// the body limit, each counted at its Content-Length (the limit when it
// gives none): a request holds a few times its body in memory while it is
// decoded, validated, stored and published, and a crowd of 8 MiB bodies
// must not add up to more than the API's memory, while small ones go
// through side by side. done gives the room back (once the submission is
// published: a wait=true request waits without it); it is idempotent, and
// the caller defers it too.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, fail errorShape) (body []byte, done func(), ok bool) {
	weight := r.ContentLength
	if weight <= 0 || weight > s.cfg.MaxBody {
		weight = s.cfg.MaxBody
	}
	if err := s.bodies.Acquire(r.Context(), weight); err != nil {
		fail(w, http.StatusServiceUnavailable, "too many requests at once")
		return nil, func() {}, false
	}
	done = sync.OnceFunc(func() { s.bodies.Release(weight) })
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if err != nil {
		done()
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is over %d bytes", s.cfg.MaxBody))
			return nil, done, false
		}
		fail(w, http.StatusBadRequest, "cannot read the request body")
		return nil, done, false
	}
	return b, done, true
}

// cors answers the origins configured (none by default: no page of another
// origin reads an answer), preflights too.
func (s *Server) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		anyOrigin := slices.Contains(s.cfg.CORSOrigins, "*")
		if origin != "" && (anyOrigin || slices.Contains(s.cfg.CORSOrigins, origin)) {
			if anyOrigin {
				w.Header().Set("Access-Control-Allow-Origin", "*")
			} else {
				w.Header().Set("Access-Control-Allow-Origin", origin)
				w.Header().Add("Vary", "Origin")
			}
			w.Header().Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS, HEAD")
			w.Header().Set("Access-Control-Allow-Headers", "*")
			w.Header().Set("Access-Control-Max-Age", "7200")
		}
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackHosts are the names a request may give by default.
var loopbackHosts = []string{"localhost", "127.0.0.1", "::1"}

// allowedHost refuses (421) a request whose Host is not one of the API's
// names: a page that rebound its own name to this address (DNS
// rebinding) sends its own name.
func (s *Server) allowedHost(next http.Handler) http.Handler {
	hosts := s.cfg.Hosts
	if len(hosts) == 0 {
		hosts = loopbackHosts
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.TrimPrefix(strings.ToLower(host), "["), "]")
		if !slices.Contains(hosts, host) {
			errorJSON(w, http.StatusMisdirectedRequest, "this API does not answer to the host "+untrusted.Quote(host)+" (api_hosts)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// jsonBodies refuses (415) a request with a body that is not JSON: a
// form or text/plain POST is a "simple" request a browser sends from any
// page without asking, and must not create a job.
func jsonBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodDelete && r.Method != http.MethodOptions &&
			(r.ContentLength != 0 || len(r.TransferEncoding) > 0) {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				if strings.HasPrefix(r.URL.Path, "/api/v2/") {
					pistonError(w, http.StatusUnsupportedMediaType, "requests must be of type application/json")
				} else {
					errorJSON(w, http.StatusUnsupportedMediaType, "requests must be of type application/json")
				}
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// operator allows the operator's endpoints (metrics, the host's and the
// queue's facts, statistics) to a client with an authz token, or on this
// machine (its Host already one of the API's: allowedHost).
func (s *Server) operator(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		loopback := err == nil && net.ParseIP(host) != nil && net.ParseIP(host).IsLoopback()
		if !loopback && (len(s.cfg.AuthzTokens) == 0 || !hasToken(r, s.cfg.AuthzHeader, s.cfg.AuthzTokens)) {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authenticated requires one of the auth tokens, where there are any, in
// the header or the query parameter of that name (401, empty body).
func (s *Server) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(s.cfg.AuthTokens) > 0 && !hasToken(r, s.cfg.AuthHeader, s.cfg.AuthTokens) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorized requires one of the authz tokens (403 when none is given or
// none is configured).
func (s *Server) authorized(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if len(s.cfg.AuthzTokens) == 0 || !hasToken(r, s.cfg.AuthzHeader, s.cfg.AuthzTokens) {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		next(w, r)
	}
}

// hasToken says whether r carries one of tokens in the header or query
// parameter name: every token compared in constant time, none skipped, so
// the answer's timing tells nothing of how much of one matched.
func hasToken(r *http.Request, name string, tokens []string) bool {
	got := r.Header.Get(name)
	if got == "" {
		got = r.URL.Query().Get(name)
	}
	if got == "" {
		return false
	}
	match := 0
	for _, t := range tokens {
		match |= subtle.ConstantTimeCompare([]byte(got), []byte(t))
	}
	return match == 1
}
