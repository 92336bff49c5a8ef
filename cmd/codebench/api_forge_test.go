package main

import (
	"bytes"
	"context"
	"encoding/json"
	neturl "net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/codebench/codebench/internal/testenv"
)

// TestAPIForgedResult: the API runs as its own broker user; a producer
// that learnt a victim's token publishes a job with that token and the
// API's reply queue as its reply_to, as its own broker user. It changes
// nothing: the worker refuses the reply_to, the victim's submission gets
// its own program's result, and no job_status_ queue exists for any API
// submission.
func TestAPIForgedResult(t *testing.T) {
	vm := testenv.NeedVM(t)
	vhost := testenv.Vhost(t, "forge")
	apiURL := testenv.UserLike(t, "codebench-api", vhost)
	var wlogs, alogs bytes.Buffer
	defer func() {
		if t.Failed() {
			t.Logf("worker:\n%s\napi:\n%s", wlogs.String(), alogs.String())
		}
	}()
	common := []string{"RABBITMQ_URL=" + vhost, "CODEBENCH_TOPOLOGY=api", "CODEBENCH_API_RABBITMQ_URL=" + apiURL}
	startWorkerBinary(t, &wlogs, append(common, "CODEBENCH_RUN_DIR="+filepath.Join(vm.RunDir, "forge"), "CODEBENCH_POOL_SIZE=2")...)
	_, base := startAPI(t, &alogs, append(common, "CODEBENCH_API_DATABASE_URL="+filepath.Join(t.TempDir(), "api.db"))...)

	code, m := apiCall(t, "POST", base+"/submissions", map[string]any{"language_id": 71,
		"source_code": "import time\ntime.sleep(2)\nprint('victim')"})
	token, _ := m["token"].(string)
	if code != 201 || token == "" {
		t.Fatalf("submit: %d %v", code, m)
	}
	// The attacker: the vhost's own admin, a producer that is not the
	// API's user, publishing to the jobs queue.
	conn, err := amqp.Dial(vhost)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	forged, _ := json.Marshal(map[string]any{"id": token, "language": "python", "code": "print('forged')"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		if err := ch.PublishWithContext(ctx, "", "jobs", false, false, amqp.Publishing{Body: forged, ReplyTo: "codebench.api.replies",
			CorrelationId: token, UserId: strings.Split(strings.TrimPrefix(vhost, "amqp://"), ":")[0]}); err != nil {
			t.Fatal(err)
		}
	}
	var got map[string]any
	eventually(t, "the victim's result", 3*time.Minute, func() bool {
		_, got = apiCall(t, "GET", base+"/submissions/"+token+"?fields=stdout,status_id", nil)
		return got["status_id"] != 1.0 && got["status_id"] != 2.0
	})
	if got["stdout"] != "victim\n" || got["status_id"] != 3.0 {
		t.Fatalf("the victim's submission: %v", got)
	}
	// The forged jobs were refused by the worker (their reply_to), not run
	// into the API's queue.
	eventually(t, "the worker refusing the forged jobs", time.Minute, func() bool {
		return strings.Count(wlogs.String(), "only the API's broker user may name it") >= 3
	})
	// No status queue for the API's submission.
	mg := testenv.NewManagement(t)
	var queues []struct{ Name string }
	mg.Do(t, "GET", "queues/"+neturl.PathEscape(strings.TrimPrefix(mustPath(t, vhost), "/")), "", &queues)
	for _, q := range queues {
		if strings.HasPrefix(q.Name, "job_status_") {
			t.Errorf("a status queue exists: %s", q.Name)
		}
	}
}

func mustPath(t *testing.T, raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Path
}
