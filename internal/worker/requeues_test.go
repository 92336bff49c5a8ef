package worker

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/queue"
)

// TestRequeueCountSurvives: a poison job's count is not forgotten when
// 10,000 other jobs are each requeued once meanwhile, nor reset or taken
// over by a later job that reuses its id with another body.
func TestRequeueCountSurvives(t *testing.T) {
	r := newRequeues(100)
	poison := requeueKey("p", []byte(`{"id":"p","code":"loop"}`))
	r.add(poison)
	r.add(poison)
	for i := range 10_000 {
		r.add(requeueKey(strconv.Itoa(i), []byte(strconv.Itoa(i))))
	}
	if n := r.add(poison); n != 3 {
		t.Fatalf("the poison job's count after 10,000 others: %d, want 3", n)
	}
	if len(r.count) > 100 || len(r.order) != len(r.count) {
		t.Fatalf("the counter grew: %d entries, %d in order", len(r.count), len(r.order))
	}
	other := requeueKey("p", []byte(`{"id":"p","code":"fine"}`))
	if n := r.add(other); n != 1 {
		t.Fatalf("a job reusing the id starts at %d, want 1", n)
	}
	r.forget(other)
	if n := r.add(poison); n != 4 {
		t.Fatalf("finishing the job that reused the id changed the poison job's count: %d, want 4", n)
	}
}

// TestRefusedStatusEndsTheJob: a job whose status queue refuses every
// publish (x-max-length 0, x-overflow reject-publish) while the broker is
// up is delivered once, dead-lettered with the reason and acked; the old
// behaviour requeued it forever.
func TestRefusedStatusEndsTheJob(t *testing.T) {
	b := newFakeBroker("refuse:publish:received", "refuse:publish:running", "refuse:publish:final")
	w := New(Config{Concurrency: 1, PoolWait: time.Second, MaxRequeues: 3}, testPolicy(),
		&fakePool{sb: &fakeSandbox{res: okResult("hi")}}, nil, quietLog(t))
	body := []byte(`{"id":"refused","code":"x"}`)
	deliveries := 0
	for range 20 {
		deliveries++
		o := w.newDelivery(b, queue.Delivery{Body: body, Acker: newFakeAcker()}).handle(context.Background())
		if o != Retry && o != Requeue {
			break
		}
	}
	if deliveries > w.cfg.MaxRequeues+1 {
		t.Fatalf("%d deliveries, want at most %d", deliveries, w.cfg.MaxRequeues+1)
	}
	if len(b.dead) != 1 || string(b.dead[0].body) != string(body) {
		t.Fatalf("dead letters %+v, want the job once", b.dead)
	}
	if sts := b.statusesOf("refused"); len(sts) != 0 {
		t.Fatalf("statuses written: %s", statusNames(sts))
	}
}
