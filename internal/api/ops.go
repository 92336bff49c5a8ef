package api

import (
	"io"
	"net/http"
)

// opsRoutes are the operator's: Prometheus metrics (loopback only),
// Judge0's /workers and /system_info.
func (s *Server) opsRoutes(mux *http.ServeMux) {
	mux.Handle("GET /metrics", s.operator(s.metrics.handler()))
	mux.Handle("GET /system_info", s.operator(http.HandlerFunc(s.systemInfo)))
	mux.Handle("GET /workers", s.operator(http.HandlerFunc(s.workers)))
}

// healthz is 200 while the process serves.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") }

// readyz is 200 when the API can take submissions: its store answers and
// the broker is connected; else 503 saying which (the error itself, which
// may name a host, a user or a database, goes to the log only).
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	why := ""
	if err := s.store.Ping(r.Context()); err != nil {
		s.log.Warn("api: not ready: the store", "err", err)
		why = "the store is unavailable"
	} else if s.ready != nil {
		if err := s.ready(); err != nil {
			s.log.Warn("api: not ready: the broker", "err", err)
			why = "not connected to the broker"
		}
	}
	if why != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, why+"\n")
		return
	}
	io.WriteString(w, "ready\n")
}
