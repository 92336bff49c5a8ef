package api

import (
	"crypto/subtle"
	"net/http"
	"sync"

	"github.com/codebench/codebench/internal/job"
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

// liveOutputs are the streamed outputs by token.
type liveOutputs struct {
	mu   sync.Mutex // guards outs
	outs map[string]*liveOutput
}

// liveOutput is one submission's output so far.
type liveOutput struct {
	seq            int
	stdout, stderr []byte
	truncated      bool
	// secret is the job's reply secret: an output status without it is
	// not this job's.
	secret string
}

func newLiveOutputs() *liveOutputs { return &liveOutputs{outs: map[string]*liveOutput{}} }

// start makes room for token's streamed output, whose statuses carry
// secret: false when there is none (it runs without streaming).
func (l *liveOutputs) start(token, secret string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.outs) >= maxLive {
		return false
	}
	l.outs[token] = &liveOutput{secret: secret}
	return true
}

// add appends an output status to its submission's (in seq order; a
// repeated or older one is dropped).
func (l *liveOutputs) add(st *job.Status) {
	l.mu.Lock()
	defer l.mu.Unlock()
	o := l.outs[st.ID]
	if o == nil || st.Seq <= o.seq || subtle.ConstantTimeCompare([]byte(st.ReplySecret), []byte(o.secret)) != 1 {
		return
	}
	o.seq = st.Seq
	for _, p := range []struct {
		to   *[]byte
		from string
	}{{&o.stdout, st.Stdout}, {&o.stderr, st.Stderr}} {
		room := maxLiveBytes - len(o.stdout) - len(o.stderr)
		if len(p.from) > room {
			o.truncated = true
			p.from = p.from[:max(room, 0)]
		}
		*p.to = append(*p.to, p.from...)
	}
}

func (l *liveOutputs) end(token string) {
	l.mu.Lock()
	delete(l.outs, token)
	l.mu.Unlock()
}

// snapshot is token's output so far, or nil.
func (l *liveOutputs) snapshot(token string) map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	o := l.outs[token]
	if o == nil {
		return nil
	}
	return map[string]any{"seq": o.seq, "stdout": string(o.stdout), "stderr": string(o.stderr), "truncated": o.truncated}
}

// playgroundOutput is the output streamed so far of a submission the
// playground made: {"seq", "stdout", "stderr", "truncated"} (404 when
// nothing is streamed for it: not the playground's, or finished).
func (s *Server) playgroundOutput(w http.ResponseWriter, r *http.Request) {
	out := s.live.snapshot(r.PathValue("token"))
	if out == nil {
		errorJSON(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, out)
}
