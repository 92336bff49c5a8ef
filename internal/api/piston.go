package api

import (
	"net/http"
	"strings"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/piston"
	"github.com/codebench/codebench/internal/untrusted"
)

// pistonRoutes are Piston v2's.
func (s *Server) pistonRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v2/runtimes", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.piston) })
	mux.HandleFunc("POST /api/v2/execute", s.execute)
}

// pistonError is Piston's error shape: {"message": msg}.
func pistonError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, piston.Error{Message: msg})
}

// execute is Piston's POST /api/v2/execute: JSON only (415), Piston's
// validation (400 {message}), the job run and awaited, then its stages.
func (s *Server) execute(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		pistonError(w, http.StatusUnsupportedMediaType, "requests must be of type application/json")
		return
	}
	body, release, ok := s.readBody(w, r, pistonError)
	defer release()
	if !ok {
		return
	}
	// Counted before decoding: every file (three fields) and argument the
	// workers take, and room for the other fields.
	if n, limit := untrusted.JSONValues(body), 4*job.MaxFiles+job.MaxArgs+64; n > limit {
		pistonError(w, http.StatusBadRequest, tooMany("the request body", n, limit))
		return
	}
	j, rt, err := piston.Decode(body, s.piston, s.bounds)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, err)
		return
	}
	rec, err := s.subs.prepare(newToken(), piston.Door, s.ownerOf(r), *j, piston.Options{Language: rt.Language, Version: rt.Version})
	if err != nil {
		pistonError(w, http.StatusBadRequest, invalidReason(err))
		return
	}
	done, err := s.subs.submit(r.Context(), rec, true)
	release()
	if err != nil {
		submitError(w, err, pistonError)
		return
	}
	got, ok := s.subs.await(r.Context(), rec, done)
	if !ok {
		return
	}
	if got == nil || !got.Finished() {
		pistonError(w, http.StatusInternalServerError, "the job did not finish in time")
		return
	}
	writeJSON(w, http.StatusOK, piston.ResultOf(got, rt))
}
