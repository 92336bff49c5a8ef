package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the API's own Prometheus metrics: requests by route and
// code, their durations by route, submissions in flight, statuses taken.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	statuses *prometheus.CounterVec
	// callbacks: sent, failed (every try), dropped (the queue was full).
	callbacks *prometheus.CounterVec
	// steps: the API's own steps of a submission (store insert, publish
	// with its confirm, store update of a status, store read to answer).
	steps *prometheus.HistogramVec
}

func newMetrics(inFlight func() int) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "codebench_api_requests_total",
			Help: "HTTP requests by route (the pattern it matched) and status code."}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "codebench_api_request_seconds",
			Help:    "HTTP request durations by route (wait=true ones include the job).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, []string{"route"}),
		statuses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "codebench_api_statuses_total",
			Help: "Statuses taken from the reply queue: stored, dropped (unknown token, not the workers', not a status)."}, []string{"outcome"}),
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "codebench_api_callbacks_total",
			Help: "Callbacks to callback_url: sent, failed (every try failed), dropped (the callback queue was full)."}, []string{"outcome"}),
	}
	m.steps = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "codebench_api_step_seconds",
		Help:    "The API's own steps of a submission: insert (the store), publish (with the broker's confirm), update (a status stored), read (the answer's store read).",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}}, []string{"step"})
	inflight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "codebench_api_submissions_in_flight",
		Help: "Submissions accepted and not finished (503 beyond api_max_queue)."}, func() float64 { return float64(inFlight()) })
	m.reg.MustRegister(m.requests, m.duration, m.statuses, m.callbacks, m.steps, inflight)
	return m
}

// statusRecorder remembers the code a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// observe counts every request by the route pattern the mux matched ("" for
// none: a 404 or 405 of the mux's own).
func (m *metrics) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		if rec.code == 0 {
			rec.code = http.StatusOK
		}
		m.requests.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
		m.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// step observes one of the API's steps, begun at t0.
func (m *metrics) step(name string, t0 time.Time) {
	m.steps.WithLabelValues(name).Observe(time.Since(t0).Seconds())
}
