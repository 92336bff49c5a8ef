package bench

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestStepMeans: the API's step means come from its histograms' sums and
// counts; other lines are ignored.
func TestStepMeans(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, `# HELP codebench_api_step_seconds x
codebench_api_step_seconds_bucket{step="insert",le="0.001"} 3
codebench_api_step_seconds_sum{step="insert"} 0.006
codebench_api_step_seconds_count{step="insert"} 4
codebench_api_step_seconds_sum{step="publish"} 1.5e-03
codebench_api_step_seconds_count{step="publish"} 1
codebench_api_step_seconds_sum{step="read"} 0
codebench_api_step_seconds_count{step="read"} 0
codebench_api_requests_total{route="x",code="200"} 9
`)
	}))
	defer hs.Close()
	got := stepMeans(context.Background(), hs.Client(), hs.URL)
	if len(got) != 2 || got["insert"] != 1.5 || got["publish"] != 1.5 {
		t.Fatalf("%v", got)
	}
}
