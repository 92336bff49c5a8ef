package api

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/codebench/codebench/internal/queue"
)

// workers is Judge0's GET /workers: one entry for the jobs queue. size is
// its messages waiting; available its consumers (one per worker); working
// the submissions this API has in flight beyond those waiting, at most
// available; idle the rest. Paused and failed are 0: a worker is never
// paused, and a failed job ends with a status, not in a failed list.
func (s *Server) workers(w http.ResponseWriter, r *http.Request) {
	if s.queue == nil {
		errorJSON(w, http.StatusServiceUnavailable, "the jobs queue cannot be inspected")
		return
	}
	size, available, err := s.jobsQueue(r.Context())
	if err != nil {
		s.log.Warn("api: workers", "err", err)
		errorJSON(w, http.StatusServiceUnavailable, "the broker is unavailable")
		return
	}
	working := min(max(s.subs.InFlight()-size, 0), available)
	writeJSON(w, http.StatusOK, []map[string]any{{
		"queue": queue.JobsQueue, "size": size, "available": available,
		"idle": available - working, "working": working, "paused": 0, "failed": 0,
	}})
}

// jobsQueueTTL is how long a look at the jobs queue answers /workers: a
// client polling it does not cost the broker a channel per request.
const jobsQueueTTL = time.Second

// jobsQueueLook is the last look at the jobs queue.
type jobsQueueLook struct {
	mu                  sync.Mutex // guards the rest; held while looking
	at                  time.Time
	messages, consumers int
}

// jobsQueue is the jobs queue's depth and consumers, looked at most once a
// jobsQueueTTL.
func (s *Server) jobsQueue(ctx context.Context) (int, int, error) {
	c := s.jobs
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && s.now().Sub(c.at) < jobsQueueTTL {
		return c.messages, c.consumers, nil
	}
	m, n, err := s.queue.JobsQueue(ctx)
	if err != nil {
		return 0, 0, err
	}
	c.at, c.messages, c.consumers = s.now(), m, n
	return m, n, nil
}

// systemInfo is Judge0's GET /system_info: what lscpu and free tell, as
// "key": "value" strings, from /proc.
func (s *Server) systemInfo(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, systemFacts("/proc"))
}

// systemFacts reads the facts under proc (a /proc).
func systemFacts(proc string) map[string]string {
	arch := runtime.GOARCH
	switch arch {
	case "amd64":
		arch = "x86_64"
	case "arm64":
		arch = "aarch64"
	}
	out := map[string]string{"Architecture": arch, "CPU(s)": strconv.Itoa(runtime.NumCPU())}
	for k, v := range procFields(proc+"/cpuinfo", ":", map[string]string{
		"model name": "Model name", "vendor_id": "Vendor ID", "cpu MHz": "CPU MHz", "cache size": "L3 cache"}) {
		out[k] = v
	}
	for k, v := range procFields(proc+"/meminfo", ":", map[string]string{"MemTotal": "Mem", "SwapTotal": "Swap"}) {
		out[k] = humanKB(v)
	}
	return out
}

// procFields reads the first value of each wanted key ("key<sep> value")
// in file, under its new name.
func procFields(file, sep string, want map[string]string) map[string]string {
	out := map[string]string{}
	f, err := os.Open(file)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() && len(out) < len(want) {
		k, v, ok := strings.Cut(sc.Text(), sep)
		if !ok {
			continue
		}
		if name, ok := want[strings.TrimSpace(k)]; ok {
			if _, seen := out[name]; !seen {
				out[name] = strings.TrimSpace(v)
			}
		}
	}
	return out
}

// humanKB prints "24554324 kB" as free -h does: "23Gi".
func humanKB(v string) string {
	kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 64)
	if err != nil {
		return v
	}
	for _, unit := range []string{"Ki", "Mi", "Gi", "Ti"} {
		if kb < 1024 || unit == "Ti" {
			if kb == 0 {
				return "0B"
			}
			return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.1f", kb), "0"), ".") + unit
		}
		kb /= 1024
	}
	return v
}
