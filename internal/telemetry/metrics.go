// Package telemetry is what an operator watches: Prometheus metrics on
// /metrics, and /healthz and /readyz for a supervisor, on one HTTP server.
// The worker, the pool and the provisioner report into Metrics through the
// small interfaces they define; nothing here knows how jobs are run.
package telemetry

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/codebench/codebench/internal/job"
)

// Metric names, in one place: the Grafana dashboard in deploy/ is checked
// against them.
const (
	MetricJobs            = "codebench_jobs_total"
	MetricJobDuration     = "codebench_job_duration_seconds"
	MetricJobPhase        = "codebench_job_phase_seconds"
	MetricRequeues        = "codebench_jobs_requeued_total"
	MetricDeadLettered    = "codebench_jobs_dead_lettered_total"
	MetricTrimmedStatuses = "codebench_statuses_trimmed_total"
	MetricTrimmedBytes    = "codebench_status_trimmed_bytes_total"
	MetricReconnects      = "codebench_broker_reconnects_total"
	MetricConsuming       = "codebench_consuming"
	MetricPoolSandboxes   = "codebench_pool_sandboxes"
	MetricSandboxReady    = "codebench_sandbox_ready_seconds"
	MetricSandboxesAlive  = "codebench_sandboxes_alive"
	MetricSandboxFailures = "codebench_sandbox_start_failures_total"
)

// Phases of a job (the phase label of MetricJobPhase).
const (
	PhaseQueueWait = "queue_wait" // publish to delivery, when the producer stamped the job
	PhasePoolWait  = "pool_wait"  // waiting for a ready sandbox
	PhaseCompile   = "compile"
	PhaseRun       = "run"
	PhasePublish   = "publish" // the received and running statuses, confirmed
)

// durationBuckets span 10 ms to ~5 min, doubling.
var durationBuckets = prometheus.ExponentialBuckets(0.01, 2, 15)

// Metrics holds every collector, registered on a registry of its own (with
// the Go runtime and process collectors).
type Metrics struct {
	reg *prometheus.Registry

	jobs            *prometheus.CounterVec
	jobDuration     *prometheus.HistogramVec
	phase           *prometheus.HistogramVec
	requeues        *prometheus.CounterVec
	deadLettered    prometheus.Counter
	trimmedStatuses prometheus.Counter
	trimmedBytes    prometheus.Counter
	reconnects      prometheus.Counter
	consuming       prometheus.Gauge
	sandboxReady    *prometheus.HistogramVec
	sandboxesAlive  prometheus.Gauge
	sandboxFailures *prometheus.CounterVec

	langs map[string]bool // the language label's values
}

// New makes the collectors. languages are the label values the language
// label may take (the image's); anything else is counted as "other", so a
// hostile job cannot grow the label set.
func New(languages []string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.jobs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricJobs,
		Help: "Jobs that got a final status, by status (done, failed), verdict and language."},
		[]string{"status", "verdict", "language"})
	m.jobDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: MetricJobDuration,
		Help: "End to end: from the job's publication (or its delivery, unstamped) to its final status published.", Buckets: durationBuckets},
		[]string{"language"})
	m.phase = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: MetricJobPhase,
		Help: "Time in each phase of a job: queue_wait, pool_wait, compile, run, publish.", Buckets: durationBuckets},
		[]string{"phase"})
	m.requeues = prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRequeues,
		Help: "Deliveries returned to the queue unfinished, by reason."}, []string{"reason"})
	m.deadLettered = prometheus.NewCounter(prometheus.CounterOpts{Name: MetricDeadLettered,
		Help: "Messages sent to jobs.dead (malformed or without an id) or rejected to the broker's dead-letter exchange."})
	m.trimmedStatuses = prometheus.NewCounter(prometheus.CounterOpts{Name: MetricTrimmedStatuses,
		Help: "Statuses whose texts were trimmed to fit the status size limit."})
	m.trimmedBytes = prometheus.NewCounter(prometheus.CounterOpts{Name: MetricTrimmedBytes,
		Help: "Bytes cut from statuses to fit the status size limit."})
	m.reconnects = prometheus.NewCounter(prometheus.CounterOpts{Name: MetricReconnects,
		Help: "Broker connections lost and made again."})
	m.consuming = prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricConsuming,
		Help: "1 while the worker is connected to the broker and consuming jobs."})
	m.sandboxReady = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: MetricSandboxReady,
		Help: "Start of a sandbox to its agent ready, by kind: restore (a template clone) or boot.", Buckets: durationBuckets},
		[]string{"kind"})
	m.sandboxesAlive = prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricSandboxesAlive,
		Help: "Sandboxes running now: ready in the pool, running a job, or being stopped."})
	m.sandboxFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricSandboxFailures,
		Help: "Sandboxes that failed to start, by kind."}, []string{"kind"})
	m.reg.MustRegister(m.jobs, m.jobDuration, m.phase, m.requeues, m.deadLettered, m.trimmedStatuses, m.trimmedBytes,
		m.reconnects, m.consuming, m.sandboxReady, m.sandboxesAlive, m.sandboxFailures,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Every language starts at zero, so rate() works from the first job.
	for _, l := range append(languages, "other") {
		m.jobDuration.WithLabelValues(l)
	}
	for _, p := range []string{PhaseQueueWait, PhasePoolWait, PhaseCompile, PhaseRun, PhasePublish} {
		m.phase.WithLabelValues(p)
	}
	m.langs = map[string]bool{}
	for _, l := range languages {
		m.langs[l] = true
	}
	return m
}

// Registry is where the metrics are registered.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// language bounds the label: the image's languages, or "other".
func (m *Metrics) language(l string) string {
	if m.langs[l] {
		return l
	}
	return "other"
}

// JobFinished counts a job whose final status was published, and observes
// its end-to-end time and phases.
func (m *Metrics) JobFinished(language, status, verdict string, tm job.Timings) {
	l := m.language(language)
	m.jobs.WithLabelValues(status, verdict, l).Inc()
	if tm.TotalUS == 0 {
		return // answered without running (an invalid job): no latency to speak of
	}
	us := func(v int64) float64 { return float64(v) / 1e6 }
	m.jobDuration.WithLabelValues(l).Observe(us(tm.QueueWaitUS + tm.TotalUS))
	if tm.QueueWaitUS > 0 {
		m.phase.WithLabelValues(PhaseQueueWait).Observe(us(tm.QueueWaitUS))
	}
	m.phase.WithLabelValues(PhasePoolWait).Observe(us(tm.PoolWaitUS))
	m.phase.WithLabelValues(PhasePublish).Observe(us(tm.PublishUS))
	if tm.CompileUS > 0 {
		m.phase.WithLabelValues(PhaseCompile).Observe(us(tm.CompileUS))
	}
	if tm.RunUS > 0 {
		m.phase.WithLabelValues(PhaseRun).Observe(us(tm.RunUS))
	}
}

// JobRequeued counts a delivery returned to the queue.
func (m *Metrics) JobRequeued(reason string) { m.requeues.WithLabelValues(reason).Inc() }

// DeadLettered counts a message sent to the dead-letter queue.
func (m *Metrics) DeadLettered() { m.deadLettered.Inc() }

// StatusTrimmed counts a status cut by n bytes to fit.
func (m *Metrics) StatusTrimmed(n int) {
	m.trimmedStatuses.Inc()
	m.trimmedBytes.Add(float64(n))
}

// Reconnected counts a broker connection made again after a loss.
func (m *Metrics) Reconnected() { m.reconnects.Inc() }

// Consuming says whether the worker consumes now.
func (m *Metrics) Consuming(on bool) {
	v := 0.0
	if on {
		v = 1
	}
	m.consuming.Set(v)
}

// SandboxStarted observes a sandbox that became ready (kind: restore or boot).
func (m *Metrics) SandboxStarted(kind string, took time.Duration) {
	m.sandboxReady.WithLabelValues(kind).Observe(took.Seconds())
	m.sandboxesAlive.Inc()
}

// SandboxFailed counts a sandbox that did not start.
func (m *Metrics) SandboxFailed(kind string) { m.sandboxFailures.WithLabelValues(kind).Inc() }

// SandboxStopped counts a sandbox gone.
func (m *Metrics) SandboxStopped() { m.sandboxesAlive.Dec() }

// PoolStats is what the pool gauges read at each scrape.
type PoolStats = func() (ready, booting, target int)

// WatchPool exports the pool's sandboxes by state (ready, booting, target).
func (m *Metrics) WatchPool(stats PoolStats) {
	for i, state := range []string{"ready", "booting", "target"} {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricPoolSandboxes,
			Help:        "The warm pool's sandboxes: ready to take, booting, and the pool's target size.",
			ConstLabels: prometheus.Labels{"state": state}}, func() float64 {
			r, b, t := stats()
			return float64([]int{r, b, t}[i])
		}))
	}
}
