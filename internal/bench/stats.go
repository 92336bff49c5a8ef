// Package bench measures codebench: cold boots, jobs in the guest, and jobs
// end to end through RabbitMQ, each next to a native baseline measured in the
// same run, reported as percentiles.
package bench

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"time"
)

// Summary of one measured quantity.
type Summary struct {
	Name string        `json:"name"`
	N    int           `json:"n"`
	Min  time.Duration `json:"min_ns"`
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	Max  time.Duration `json:"max_ns"`
	Mean time.Duration `json:"mean_ns"`
}

// Summarize computes nearest-rank percentiles.
func Summarize(name string, samples []time.Duration) Summary {
	s := Summary{Name: name, N: len(samples)}
	if len(samples) == 0 {
		return s
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	s.Min, s.Max = sorted[0], sorted[len(sorted)-1]
	s.P50, s.P90, s.P99 = Percentile(sorted, 50), Percentile(sorted, 90), Percentile(sorted, 99)
	var sum time.Duration
	for _, d := range sorted {
		sum += d
	}
	s.Mean = sum / time.Duration(len(sorted))
	return s
}

// Percentile of sorted samples, nearest rank.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func (s Summary) String() string {
	r := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
	return fmt.Sprintf("%-34s n=%-3d p50=%-9s p90=%-9s p99=%-9s min=%-9s max=%s",
		s.Name, s.N, r(s.P50), r(s.P90), r(s.P99), r(s.Min), r(s.Max))
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
