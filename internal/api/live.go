package api

import (
	"net/http"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/judge0"
)

// Streamed output for the playground: its submissions ask the worker to
// stream (job.Stream), and the output statuses that come back are kept
// here, in memory, until the final one; the page reads them while it
// polls. Judge0's own routes never stream (Judge0 has no such thing).
// Bounded: at most maxLive submissions streamed at once (beyond, one runs
// without streaming), at most maxLiveBytes kept of each.
const (
	maxLive      = 256
	maxLiveBytes = 16 << 10
)

// liveOutput is one submission's output so far.
type liveOutput struct {
	seq            int
	stdout, stderr []byte
	truncated      bool
}

// startLive makes room for token's streamed output: false when there is
// none (it runs without streaming).
func (s *Server) startLive(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.live) >= maxLive {
		return false
	}
	s.live[token] = &liveOutput{}
	return true
}

// addLive appends an output status to its submission's (in seq order; a
// repeated or older one is dropped).
func (s *Server) addLive(st *job.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.live[st.ID]
	if l == nil || st.Seq <= l.seq {
		return
	}
	l.seq = st.Seq
	for _, p := range []struct {
		to   *[]byte
		from string
	}{{&l.stdout, st.Stdout}, {&l.stderr, st.Stderr}} {
		room := maxLiveBytes - len(l.stdout) - len(l.stderr)
		if len(p.from) > room {
			l.truncated = true
			p.from = p.from[:max(room, 0)]
		}
		*p.to = append(*p.to, p.from...)
	}
}

func (s *Server) endLive(token string) {
	s.mu.Lock()
	delete(s.live, token)
	s.mu.Unlock()
}

// playgroundSubmit is the playground's POST: a Judge0 submission (base64,
// no wait) that streams its output when there is room.
func (s *Server) playgroundSubmit(w http.ResponseWriter, r *http.Request) {
	sub, ok := s.readSubmission(w, r, true)
	if !ok {
		return
	}
	sub.Stream = true
	rec, err := s.submitLive(r, sub)
	if err != nil {
		errorJSON(w, submitStatus(err), err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"token": rec.Token})
}

// submitLive submits sub with room for its streamed output (or without
// streaming when there is none).
func (s *Server) submitLive(r *http.Request, sub *judge0.Submission) (*judge0.Record, error) {
	token := newToken()
	if !s.startLive(token) {
		sub.Stream = false
	}
	rec, _, err := s.submitAs(r.Context(), token, sub, false)
	if err != nil {
		s.endLive(token)
	}
	return rec, err
}

// playgroundOutput is the output streamed so far of a submission the
// playground made: {"seq", "stdout", "stderr", "truncated"} (404 when
// nothing is streamed for it: not the playground's, or finished).
func (s *Server) playgroundOutput(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	l := s.live[r.PathValue("token")]
	var out map[string]any
	if l != nil {
		out = map[string]any{"seq": l.seq, "stdout": string(l.stdout), "stderr": string(l.stderr), "truncated": l.truncated}
	}
	s.mu.Unlock()
	if out == nil {
		errorJSON(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, out)
}
