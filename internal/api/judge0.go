package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/codebench/codebench/internal/judge0"
	"github.com/codebench/codebench/internal/submission"
	"github.com/codebench/codebench/internal/untrusted"
)

// judge0Routes are Judge0 CE 1.13.1's.
func (s *Server) judge0Routes(mux *http.ServeMux) {
	mux.HandleFunc("POST /submissions", s.create)
	mux.HandleFunc("GET /submissions/{token}", s.show)
	mux.HandleFunc("GET /submissions", s.authorized(s.index))
	mux.HandleFunc("POST /submissions/batch", s.batchCreate)
	mux.HandleFunc("GET /submissions/batch", s.batchShow)
	mux.HandleFunc("DELETE /submissions/{token}", s.authorized(s.destroy))
	mux.HandleFunc("GET /languages", s.languageList(nil))
	mux.HandleFunc("GET /languages/all", s.languageList(func(l judge0.Language, m map[string]any) { m["is_archived"] = l.IsArchived }))
	mux.HandleFunc("GET /languages/{id}", s.language)
	mux.HandleFunc("GET /statuses", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, judge0.Statuses) })
	mux.HandleFunc("GET /about", s.about)
	mux.HandleFunc("GET /version", text("1.13.1"))
	mux.HandleFunc("GET /license", text("GPL-3.0 (Judge0's API), served by codebench\n"))
	mux.HandleFunc("GET /isolate", text("codebench runs submissions in gVisor or a microVM, not isolate\n"))
	mux.HandleFunc("GET /config_info", s.configInfo)
	mux.Handle("GET /statistics", s.operator(http.HandlerFunc(s.statistics)))
	mux.HandleFunc("POST /authenticate", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("POST /authorize", s.authorized(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
}

// judge0Request is one Judge0 request made a record; door names it (the
// playground's are Judge0 requests too). Its errors are Judge0's 422.
func (s *Server) judge0Request(door, owner string, req *judge0.Request, b64 bool) (*submission.Record, judge0.Errors) {
	v, errs := s.judge0.Validate(req, b64)
	if errs != nil {
		return nil, errs
	}
	if v.Callback != "" {
		if err := s.calls.check(v.Callback); err != nil {
			return nil, judge0.Errors{"callback_url": {err.Error()}}
		}
	}
	rec, err := s.subs.prepare(newToken(), door, owner, v.Job, v.Options)
	if err != nil {
		return nil, judge0.Errors{"base": {invalidReason(err)}}
	}
	rec.Callback = v.Callback
	return rec, nil
}

// judge0Values bounds the JSON values of one Judge0 request: its fields
// (about 20), each one value, and room for a client's extra keys. Counted
// before anything is decoded: a body of many small values (an object of
// thousands of unknown keys, an array in a field) would allocate far more
// than its size.
const judge0Values = 256

// readJudge0 reads, decodes and validates one submission from the request
// body; false: answered (413, 400 or 422). done gives the body's place
// back (readBody).
func (s *Server) readJudge0(w http.ResponseWriter, r *http.Request, door string, b64 bool) (*submission.Record, func(), bool) {
	body, done, ok := s.readBody(w, r, errorJSON)
	if !ok {
		return nil, done, false
	}
	if n := untrusted.JSONValues(body); n > judge0Values {
		errorJSON(w, http.StatusBadRequest, tooMany("the request body", n, judge0Values))
		return nil, done, false
	}
	req, err := judge0.Decode(body)
	if err != nil {
		errorJSON(w, http.StatusBadRequest, "the request body is not valid JSON: "+err.Error())
		return nil, done, false
	}
	rec, errs := s.judge0Request(door, s.ownerOf(r), req, b64)
	if errs != nil {
		writeJSON(w, http.StatusUnprocessableEntity, errs)
		return nil, done, false
	}
	return rec, done, true
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	b64, wait := q.Get("base64_encoded") == "true", q.Get("wait") == "true"
	fields, err := judge0.ParseFields(q.Get("fields"))
	if err != nil {
		errorJSON(w, http.StatusBadRequest, err.Error())
		return
	}
	rec, release, ok := s.readJudge0(w, r, judge0.Door, b64)
	defer release()
	if !ok {
		return
	}
	done, err := s.subs.submit(r.Context(), rec, wait)
	release()
	if err != nil {
		submitError(w, err, errorJSON)
		return
	}
	if !wait {
		writeJSON(w, http.StatusCreated, map[string]string{"token": rec.Token})
		return
	}
	final, ok := s.subs.await(r.Context(), rec, done)
	switch {
	case !ok:
	case final != nil:
		s.writeJudge0(w, http.StatusCreated, final, fields, b64) // as stored: no read back
	default:
		s.render(w, r.Context(), http.StatusCreated, rec.Token, fields, b64)
	}
}

// render answers one submission with fields.
func (s *Server) render(w http.ResponseWriter, ctx context.Context, code int, token string, fields []string, b64 bool) {
	if rec, ok := s.lookup(w, ctx, token); ok {
		s.writeJudge0(w, code, rec, fields, b64)
	}
}

// lookup reads token's record; false: answered (404, or 500).
func (s *Server) lookup(w http.ResponseWriter, ctx context.Context, token string) (*submission.Record, bool) {
	rec, err := s.subs.lookup(ctx, token)
	if errors.Is(err, submission.ErrNotFound) {
		errorJSON(w, http.StatusNotFound, "Not Found")
		return nil, false
	}
	if err != nil {
		errorJSON(w, http.StatusInternalServerError, "cannot read the submission")
		return nil, false
	}
	return rec, true
}

// writeJudge0 answers rec with fields (400 for text that is not UTF-8
// without base64, as Judge0).
func (s *Server) writeJudge0(w http.ResponseWriter, code int, rec *submission.Record, fields []string, b64 bool) {
	out, err := s.judge0.Render(rec, fields, b64)
	if err != nil {
		errorJSON(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, code, out)
}

func (s *Server) show(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fields, err := judge0.ParseFields(q.Get("fields"))
	if err != nil {
		errorJSON(w, http.StatusBadRequest, err.Error())
		return
	}
	s.render(w, r.Context(), http.StatusOK, r.PathValue("token"), fields, q.Get("base64_encoded") == "true")
}

// destroy is Judge0's: when deletion is enabled, a finished submission is
// deleted and answered with its fields, base64 whatever was asked (so that
// what was deleted can always be shown); one in queue or processing is a
// 400.
func (s *Server) destroy(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.EnableDelete {
		errorJSON(w, http.StatusBadRequest, "delete not allowed")
		return
	}
	fields, err := judge0.ParseFields(r.URL.Query().Get("fields"))
	if err != nil {
		errorJSON(w, http.StatusBadRequest, err.Error())
		return
	}
	rec, ok := s.lookup(w, r.Context(), r.PathValue("token"))
	if !ok {
		return
	}
	if !rec.Finished() {
		id := judge0.StatusID(rec)
		errorJSON(w, http.StatusBadRequest, fmt.Sprintf("submission cannot be deleted because its status is %d (%s)", id, judge0.StatusByID(id).Description))
		return
	}
	out, err := s.judge0.Render(rec, fields, true)
	if err != nil {
		errorJSON(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.store.Delete(r.Context(), rec.Token); err != nil {
		errorJSON(w, http.StatusInternalServerError, "cannot delete the submission")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	page, perPage := 1, 20
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			errorJSON(w, http.StatusBadRequest, "invalid page: "+v)
			return
		}
		page = n
	}
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			errorJSON(w, http.StatusBadRequest, "invalid per_page: "+v)
			return
		}
		perPage = n
	}
	fields, err := judge0.ParseFields(q.Get("fields"))
	if err != nil {
		errorJSON(w, http.StatusBadRequest, err.Error())
		return
	}
	b64 := q.Get("base64_encoded") == "true"
	recs, total, err := s.store.List(r.Context(), page, perPage)
	if err != nil {
		errorJSON(w, http.StatusInternalServerError, "cannot list submissions")
		return
	}
	subs, err := s.renderAll(recs, fields, b64)
	if err != nil {
		errorJSON(w, http.StatusBadRequest, err.Error())
		return
	}
	pages := (total + perPage - 1) / perPage
	var next, prev any
	if page < pages {
		next = page + 1
	}
	if page > 1 {
		prev = page - 1
	}
	writeJSON(w, http.StatusOK, map[string]any{"submissions": subs, "meta": map[string]any{
		"current_page": page, "next_page": next, "prev_page": prev, "total_pages": pages, "total_count": total}})
}

// maxBatch is Judge0's max_submission_batch_size.
const maxBatch = 20

func (s *Server) batchCreate(w http.ResponseWriter, r *http.Request) {
	b64 := r.URL.Query().Get("base64_encoded") == "true"
	body, release, ok := s.readBody(w, r, errorJSON)
	defer release()
	if !ok {
		return
	}
	if n, limit := untrusted.JSONValues(body), maxBatch*judge0Values+16; n > limit {
		errorJSON(w, http.StatusBadRequest, tooMany("the request body", n, limit))
		return
	}
	var batch struct {
		Submissions []json.RawMessage `json:"submissions"`
	}
	if err := json.Unmarshal(body, &batch); err != nil {
		errorJSON(w, http.StatusBadRequest, "the request body is not valid JSON: "+err.Error())
		return
	}
	switch n := len(batch.Submissions); {
	case n == 0:
		errorJSON(w, http.StatusBadRequest, "there should be at least one submission in a batch")
		return
	case n > maxBatch:
		errorJSON(w, http.StatusBadRequest, fmt.Sprintf("number of submissions in a batch should be less than or equal to %d", maxBatch))
		return
	}
	out := make([]any, len(batch.Submissions))
	anyValid := false
	for i, raw := range batch.Submissions {
		req, err := judge0.Decode(raw)
		if err != nil {
			out[i] = map[string][]string{"submission": {"is not a JSON object"}}
			continue
		}
		rec, errs := s.judge0Request(judge0.Door, s.ownerOf(r), req, b64)
		if errs != nil {
			out[i] = errs
			continue
		}
		if _, err := s.subs.submit(r.Context(), rec, false); err != nil {
			out[i] = map[string]string{"error": err.Error()}
			continue
		}
		anyValid = true
		out[i] = map[string]string{"token": rec.Token}
	}
	code := http.StatusCreated
	if !anyValid {
		code = http.StatusUnprocessableEntity
	}
	writeJSON(w, code, out)
}

func (s *Server) batchShow(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fields, err := judge0.ParseFields(q.Get("fields"))
	if err != nil {
		errorJSON(w, http.StatusBadRequest, err.Error())
		return
	}
	raw := q.Get("tokens")
	if raw == "" {
		errorJSON(w, http.StatusBadRequest, "there should be at least one submission token")
		return
	}
	if n := strings.Count(raw, ",") + 1; n > maxBatch {
		errorJSON(w, http.StatusBadRequest, fmt.Sprintf("number of submissions in a batch should be less than or equal to %d", maxBatch))
		return
	}
	tokens := strings.Split(raw, ",")
	seen := map[string]bool{}
	for i, t := range tokens {
		tokens[i] = strings.TrimSpace(t)
		if seen[tokens[i]] {
			errorJSON(w, http.StatusBadRequest, fmt.Sprintf("token %s is asked for twice", untrusted.Quote(tokens[i])))
			return
		}
		seen[tokens[i]] = true
	}
	recs := make([]*submission.Record, len(tokens))
	for i, t := range tokens {
		if rec, err := s.store.Get(r.Context(), t); err == nil {
			recs[i] = rec
		} // else null, as Judge0
	}
	out, err := s.renderAll(recs, fields, q.Get("base64_encoded") == "true")
	if err != nil {
		errorJSON(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"submissions": out})
}

// renderAll renders recs (a nil one as null), each once into its JSON,
// and refuses an answer over maxAnswer bytes in all: what one GET may
// make the API hold is bounded, whatever the submissions hold.
func (s *Server) renderAll(recs []*submission.Record, fields []string, b64 bool) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, len(recs))
	total := 0
	for i, rec := range recs {
		if rec == nil {
			out[i] = json.RawMessage("null")
			continue
		}
		m, err := s.judge0.Render(rec, fields, b64)
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(m); err != nil {
			return nil, err
		}
		if total += buf.Len(); total > s.maxAnswer() {
			return nil, fmt.Errorf("the answer would be over %d bytes: ask for fewer submissions or fewer fields", s.maxAnswer())
		}
		out[i] = bytes.TrimRight(buf.Bytes(), "\n")
	}
	return out, nil
}

// maxAnswer bounds what one answer of several submissions may hold:
// twice what one request may carry.
func (s *Server) maxAnswer() int { return int(2 * s.cfg.MaxBody) }

// languageList answers the languages, each its id, its name and what more
// adds.
func (s *Server) languageList(more func(l judge0.Language, m map[string]any)) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		list := s.judge0.Languages()
		out := make([]map[string]any, 0, len(list))
		for _, l := range list {
			m := map[string]any{"id": l.ID, "name": l.Name}
			if more != nil {
				more(l, m)
			}
			out = append(out, m)
		}
		writeJSON(w, http.StatusOK, out)
	}
}

func (s *Server) language(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	l, ok := s.judge0.Language(id)
	if err != nil || !ok {
		errorJSON(w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) about(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{
		"version": "1.13.1", "homepage": "https://judge0.com", "source_code": "https://github.com/judge0/judge0",
		"maintainer": "codebench (a Judge0 CE 1.13.1 compatible API)",
	})
}

func (s *Server) configInfo(w http.ResponseWriter, _ *http.Request) {
	l := s.judge0.Limits()
	writeJSON(w, http.StatusOK, map[string]any{
		"maintenance_mode": false, "enable_wait_result": true, "enable_compiler_options": l.EnableCompilerOptions,
		"allowed_languages_for_compile_options": []string{}, "enable_command_line_arguments": l.EnableArgs,
		"enable_submission_delete": s.cfg.EnableDelete, "enable_callbacks": l.EnableCallbacks, "callbacks_max_tries": s.cfg.CallbackTries,
		"callbacks_timeout": s.cfg.CallbackTimeout.Seconds(), "enable_additional_files": l.EnableAddFiles, "max_queue_size": s.cfg.MaxQueue,
		"cpu_time_limit": l.CPUTimeLimit, "max_cpu_time_limit": l.MaxCPUTimeLimit,
		"cpu_extra_time": l.CPUExtraTime, "max_cpu_extra_time": l.MaxCPUExtraTime,
		"wall_time_limit": l.WallTimeLimit, "max_wall_time_limit": l.MaxWallTimeLimit,
		"memory_limit": l.MemoryLimit, "max_memory_limit": l.MaxMemoryLimit,
		"stack_limit": l.StackLimit, "max_stack_limit": l.MaxStackLimit,
		"max_processes_and_or_threads": l.MaxProcesses, "max_max_processes_and_or_threads": l.MaxMaxProcesses,
		"enable_per_process_and_thread_time_limit": false, "allow_enable_per_process_and_thread_time_limit": false,
		"enable_per_process_and_thread_memory_limit": false, "allow_enable_per_process_and_thread_memory_limit": false,
		"max_file_size": l.MaxFileSize, "max_max_file_size": l.MaxMaxFileSize,
		"number_of_runs": l.NumberOfRuns, "max_number_of_runs": l.MaxNumberOfRuns,
		"redirect_stderr_to_stdout": l.RedirectDefault, "max_extract_size": l.MaxExtractSize,
		"enable_batched_submissions": true, "max_submission_batch_size": maxBatch,
		"submission_cache_duration": 1.0, "use_docs_as_homepage": false,
		"allow_enable_network": l.AllowEnableNetwork, "enable_network": false,
	})
}

// statsTTL is how long one count of the submissions answers /statistics
// (a GROUP BY over the whole store is not for every request).
const statsTTL = 10 * time.Second

// statsCache is the last count of the submissions by outcome.
type statsCache struct {
	mu     sync.Mutex // guards the rest; held while counting
	at     time.Time
	counts map[submission.Outcome]int
}

func (s *Server) statistics(w http.ResponseWriter, r *http.Request) {
	c := s.stats
	c.mu.Lock()
	if c.counts == nil || s.now().Sub(c.at) >= statsTTL {
		counts, err := s.store.Counts(r.Context())
		if err != nil {
			c.mu.Unlock()
			errorJSON(w, http.StatusInternalServerError, "cannot count submissions")
			return
		}
		c.at, c.counts = s.now(), counts
	}
	counts := c.counts
	c.mu.Unlock()
	byID := map[int]int{}
	for o, n := range counts {
		byID[judge0.StatusOf(o.Status())] += n
	}
	var statuses []map[string]any
	for _, st := range judge0.Statuses {
		if n := byID[st.ID]; n > 0 {
			statuses = append(statuses, map[string]any{"name": st.Description, "count": n})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"now": judge0.Timestamp(s.now()), "statuses": statuses})
}
