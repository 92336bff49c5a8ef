package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/codebench/codebench/internal/job"
)

// APIReport is the HTTP API's figures, measured against a running API and
// worker: what the API adds to a job, how fast it accepts a burst, and
// how fast it answers a poll while jobs run.
type APIReport struct {
	// WaitEndToEnd is POST /submissions?wait=true, sent to answered;
	// Overhead the same less the worker's own total_us for the job.
	WaitEndToEnd Summary `json:"wait_end_to_end"`
	Overhead     Summary `json:"overhead"`
	// QueueWait is the part of the overhead the job spent in the jobs
	// queue: published to delivered to the worker (the worker's own
	// queue_wait_us).
	QueueWait Summary `json:"queue_wait"`
	// Burst submissions POSTed without wait, 32 at once: how long until
	// every one was answered, how many were accepted (201) and refused
	// (503, the queue bound), and how long until every accepted one was
	// finished; Unfinished are accepted ones not finished within the
	// limit (a lost one stays unfinished).
	Burst           int     `json:"burst"`
	AcceptSeconds   float64 `json:"accept_seconds"`
	Accepted        int     `json:"accepted"`
	Refused         int     `json:"refused"`
	FinishedSeconds float64 `json:"finished_seconds"`
	Unfinished      int     `json:"unfinished"`
	// Polls are GET /submissions/{token} at PollRate a second while the
	// burst's jobs run.
	Polls    Summary `json:"polls"`
	PollRate float64 `json:"poll_rate"`
	// Steps are the API's own steps during the wait=true submissions,
	// their mean in milliseconds (its codebench_api_step_seconds).
	Steps map[string]float64 `json:"steps_mean_ms,omitempty"`
}

// APIRun is what MeasureAPI needs: the API's base URL, and the worker's
// own timings of a token's job once it finished (from the API's OnFinal).
type APIRun struct {
	Base    string
	Timings func(token string) (*job.Timings, bool)
	// Finished counts the jobs finished so far.
	Finished func() int
}

// apiJob is the Python hello world: the fastest job there is, so that the
// API's own costs are what shows.
var apiJob = []byte(`{"language_id":71,"source_code":"print(\"Hello, World!\")"}`)

// MeasureAPI measures n wait=true submissions one after another, then a
// burst of burst submissions with polls at pollRate a second until all
// are finished or limit passed.
func MeasureAPI(ctx context.Context, r APIRun, n, burst int, pollRate float64, limit time.Duration) (*APIReport, error) {
	client := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	post := func(query string) (int, map[string]any, error) {
		req, _ := http.NewRequestWithContext(ctx, "POST", r.Base+"/submissions"+query, bytes.NewReader(apiJob))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m, nil
	}
	rep := &APIReport{Burst: burst, PollRate: pollRate}
	var e2e, over, queued []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		code, m, err := post("?wait=true&fields=token,status,stdout")
		took := time.Since(start)
		if err != nil {
			return nil, err
		}
		st, _ := m["status"].(map[string]any)
		if code != http.StatusCreated || st["id"] != 3.0 {
			return nil, fmt.Errorf("api: wait=true answered %d %v", code, m)
		}
		tok, _ := m["token"].(string)
		tm, ok := r.Timings(tok)
		if !ok {
			return nil, fmt.Errorf("api: no worker timing for %s", tok)
		}
		us := func(v int64) time.Duration { return time.Duration(v) * time.Microsecond }
		e2e, over, queued = append(e2e, took), append(over, took-us(tm.TotalUS)), append(queued, us(tm.QueueWaitUS))
	}
	rep.WaitEndToEnd, rep.Overhead = Summarize("api wait=true end to end", e2e), Summarize("api overhead (end to end - worker total_us)", over)
	rep.QueueWait = Summarize("of which in the jobs queue (the worker's queue_wait_us)", queued)
	rep.Steps = stepMeans(ctx, client, r.Base)

	// The burst: 32 clients at once.
	finished0 := r.Finished()
	var mu sync.Mutex
	var tokens []string
	var refused, other atomic.Int64
	next := make(chan struct{})
	go func() {
		defer close(next)
		for i := 0; i < burst; i++ {
			next <- struct{}{}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				code, m, err := post("")
				switch {
				case err == nil && code == http.StatusCreated:
					tok, _ := m["token"].(string)
					mu.Lock()
					tokens = append(tokens, tok)
					mu.Unlock()
				case err == nil && code == http.StatusServiceUnavailable:
					refused.Add(1)
				default:
					other.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	rep.AcceptSeconds = time.Since(start).Seconds()
	rep.Accepted, rep.Refused = len(tokens), int(refused.Load())
	if other.Load() > 0 {
		return nil, fmt.Errorf("api: %d burst submissions neither accepted nor refused", other.Load())
	}
	if len(tokens) == 0 {
		return rep, nil
	}
	// Polls at pollRate until every accepted job finished.
	var polls []time.Duration
	tick := time.NewTicker(time.Duration(float64(time.Second) / pollRate))
	defer tick.Stop()
	deadline := time.Now().Add(limit)
	var pmu sync.Mutex
	var pwg sync.WaitGroup
	for r.Finished()-finished0 < len(tokens) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		tok := tokens[rand.IntN(len(tokens))]
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			t0 := time.Now()
			req, _ := http.NewRequestWithContext(ctx, "GET", r.Base+"/submissions/"+tok, nil)
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				pmu.Lock()
				polls = append(polls, time.Since(t0))
				pmu.Unlock()
			}
		}()
	}
	pwg.Wait()
	rep.FinishedSeconds = time.Since(start).Seconds()
	rep.Unfinished = len(tokens) - (r.Finished() - finished0)
	rep.Polls = Summarize("api GET /submissions/{token} while jobs run", polls)
	return rep, nil
}

func (r *APIReport) String() string {
	if r == nil {
		return ""
	}
	steps := ""
	for _, s := range []string{"insert", "publish", "update", "read"} {
		if v, ok := r.Steps[s]; ok {
			steps += fmt.Sprintf(" %s %.2f ms", s, v)
		}
	}
	return fmt.Sprintf("%s\n    %s\n      %s\n    the API's steps (mean):%s\n    burst of %d (32 at once): all answered in %.2f s, %d accepted, %d refused (503); all accepted finished in %.1f s, %d unfinished\n    %s (at %.0f/s)",
		r.WaitEndToEnd, r.Overhead, r.QueueWait, steps, r.Burst, r.AcceptSeconds, r.Accepted, r.Refused, r.FinishedSeconds, r.Unfinished, r.Polls, r.PollRate)
}

// stepLine is one of codebench_api_step_seconds' sums or counts.
var stepLine = regexp.MustCompile(`^codebench_api_step_seconds_(sum|count)\{step="(\w+)"\} ([0-9.e+-]+)$`)

// stepMeans reads the API's step means (ms) from its /metrics; nil when it
// cannot.
func stepMeans(ctx context.Context, client *http.Client, base string) map[string]float64 {
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/metrics", nil)
	resp, err := client.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil
	}
	sum, count := map[string]float64{}, map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		m := stepLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, _ := strconv.ParseFloat(m[3], 64)
		if m[1] == "sum" {
			sum[m[2]] = v
		} else {
			count[m[2]] = v
		}
	}
	out := map[string]float64{}
	for step, n := range count {
		if n > 0 {
			out[step] = 1000 * sum[step] / n
		}
	}
	return out
}
