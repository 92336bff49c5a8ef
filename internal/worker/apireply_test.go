package worker

import (
	"context"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/queue"
)

// TestAPIReplies: a reply queue of the API's namespace is taken only from
// the API's broker user; such a job's statuses go there alone (no status
// queue is declared or written), each with the job's reply secret; when
// the broker refuses one of them, the API still hears a final status.
func TestAPIReplies(t *testing.T) {
	const body = `{"id":"tok1","language":"c","code":"int main(){}","reply_secret":"s3cr3t"}`
	for _, tc := range []struct {
		name     string
		user     string
		fail     []string
		want     Outcome
		replies  string // the statuses the reply queue got
		statuses string // the statuses the status queue got
		dead     bool
	}{
		{name: "from the API's user", user: "codebench-api", want: Ack, replies: "received,running,done"},
		{name: "from a producer: refused, the API's queue untouched", user: "codebench-producer", want: Ack},
		{name: "without a user_id: refused", user: "", want: Ack},
		{name: "a status refused: a final to the API, then dead-lettered", user: "codebench-api", fail: []string{"refuse:reply:running"},
			want: Ack, replies: "received,failed", dead: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBroker(tc.fail...)
			b.existing["tok1"] = true // a producer may have made it: the refusal is reported there
			p := &fakePool{sb: &fakeSandbox{res: okResult("hi")}}
			w := New(Config{Concurrency: 1, PoolWait: 50 * time.Millisecond, Grace: time.Second, StatusQueueWithReply: true,
				ReplyTo: queue.ReplyPolicy{APIUser: "codebench-api"}}, testPolicy(), p, nil, quietLog(t))
			a := newFakeAcker()
			w.process(context.Background(), b, queue.Delivery{Body: []byte(body), Acker: a, ReplyTo: "codebench.api.replies",
				CorrelationID: "tok1", UserID: tc.user})
			if got := map[bool]Outcome{true: Ack, false: Requeue}[a.acks == 1]; got != tc.want {
				t.Fatalf("settled: acks %d nacks %v", a.acks, a.nacks)
			}
			b.mu.Lock()
			defer b.mu.Unlock()
			var replies []job.Status
			for _, r := range b.replies {
				if r.to != "codebench.api.replies" || r.correlationID != "tok1" || r.status.ReplySecret != "s3cr3t" {
					t.Fatalf("a reply %+v", r)
				}
				replies = append(replies, r.status)
			}
			if got := statusNames(replies); got != tc.replies {
				t.Fatalf("replies %q, want %q", got, tc.replies)
			}
			if tc.user == "codebench-api" {
				if len(b.declared) != 0 || len(b.statuses["tok1"]) != 0 {
					t.Fatalf("an API job got a status queue: declared %v, statuses %v", b.declared, b.statuses["tok1"])
				}
			} else if sts := b.statuses["tok1"]; len(sts) != 1 || sts[0].Verdict != job.VerdictInvalidJob || sts[0].ReplySecret != "s3cr3t" {
				t.Fatalf("the refused job's report: %+v", sts)
			}
			if tc.dead != (len(b.dead) == 1) {
				t.Fatalf("dead letters: %+v", b.dead)
			}
			if tc.dead && replies[len(replies)-1].Verdict != job.VerdictInternalError {
				t.Fatalf("the API's final: %+v", replies[len(replies)-1])
			}
		})
	}
}
