package api

import (
	"io"
	"net/http"
)

// opsRoutes are the operator's: Prometheus metrics (loopback only),
// Judge0's /workers and /system_info.
func (s *Server) opsRoutes(mux *http.ServeMux) {
	mux.Handle("GET /metrics", loopbackOnly(s.metrics.handler()))
	mux.HandleFunc("GET /system_info", s.systemInfo)
	mux.HandleFunc("GET /workers", s.workers)
}

// healthz is 200 while the process serves.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") }

// readyz is 200 when the API can take submissions: its store answers and
// the broker is connected; else 503 with why.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	err := s.store.Ping(r.Context())
	if err == nil && s.ready != nil {
		err = s.ready()
	}
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, err.Error()+"\n")
		return
	}
	io.WriteString(w, "ready\n")
}
