package api

import (
	"embed"
	"io/fs"
	"net/http"

	"github.com/codebench/codebench/internal/judge0"
)

// playgroundDoor is the name the playground's submissions carry: Judge0 requests
// whose output is streamed.
const playgroundDoor = "playground"

// playgroundRoutes are the playground's page and its calls.
func (s *Server) playgroundRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", s.playground)
	mux.Handle("GET /playground/", pageHeaders(http.StripPrefix("/playground/", http.FileServerFS(playgroundFiles))))
	// The languages with a hello world each.
	mux.HandleFunc("GET /playground/languages", s.languageList(func(l judge0.Language, m map[string]any) { m["hello"] = l.Hello }))
	mux.HandleFunc("POST /playground/submissions", s.playgroundSubmit)
	mux.HandleFunc("GET /playground/output/{token}", s.playgroundOutput)
}

// playgroundFiles are the playground page's files: no build step, nothing
// from elsewhere.
//
//go:embed playground/*
var playgroundRoot embed.FS

var playgroundFiles = mustSub(playgroundRoot, "playground")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// playground serves the page at /, with a policy that lets it load only
// from here.
func (s *Server) playground(w http.ResponseWriter, _ *http.Request) {
	b, err := fs.ReadFile(playgroundFiles, "index.html")
	if err != nil {
		http.Error(w, "no playground", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	setPageHeaders(w)
	_, _ = w.Write(b)
}

// setPageHeaders are every playground path's: it loads only from here, is
// framed by no page (frame-ancestors, X-Frame-Options) and is never
// sniffed into another type.
func setPageHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("X-Content-Type-Options", "nosniff")
}

// pageHeaders sets setPageHeaders' headers on every answer of next.
func pageHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setPageHeaders(w)
		next.ServeHTTP(w, r)
	})
}

// playgroundSubmit is the playground's POST: a Judge0 submission (base64,
// no wait) that streams its output when there is room (else it runs
// without streaming).
func (s *Server) playgroundSubmit(w http.ResponseWriter, r *http.Request) {
	rec, release, ok := s.readJudge0(w, r, playgroundDoor, true)
	defer release()
	if !ok {
		return
	}
	rec.Job.Stream = s.live.start(rec.Token, rec.Job.ReplySecret)
	if _, err := s.subs.submit(r.Context(), rec, false); err != nil {
		s.live.end(rec.Token)
		submitError(w, err, errorJSON)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"token": rec.Token})
}
