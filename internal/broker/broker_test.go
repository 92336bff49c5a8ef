package broker_test

import (
	"context"
	"errors"
	neturl "net/url"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/broker"
	"github.com/codebench/codebench/internal/queue"
	"github.com/codebench/codebench/internal/testenv"
)

// TestQuorumDeliveryLimit: a job whose every delivery is lost (the worker
// dies, so the broker requeues it) stops after the delivery limit and lands
// in jobs.dead instead of looping forever.
func TestQuorumDeliveryLimit(t *testing.T) {
	url := testenv.Vhost(t, "quorum")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := broker.Config{URL: url, Prefetch: 1, Quorum: true, DeliveryLimit: 2}
	producer, err := broker.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	if err := producer.PublishJob(ctx, []byte(`{"id":"poison","code":"x"}`)); err != nil {
		t.Fatal(err)
	}
	deliveries := 0
	for i := 0; i < 5; i++ {
		// A worker that takes the job and dies before acking it.
		w, err := broker.Dial(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := w.Consume()
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
			deliveries++
		case <-time.After(2 * time.Second):
		}
		w.Close()
	}
	if deliveries != 3 { // the first delivery and two redeliveries
		t.Fatalf("%d deliveries, want 3 (limit 2)", deliveries)
	}
	var dead int
	for i := 0; i < 50 && dead == 0; i++ {
		msgs, err := producer.Get(queue.DeadQueue, 1)
		if err != nil {
			t.Fatal(err)
		}
		dead = len(msgs)
		time.Sleep(100 * time.Millisecond)
	}
	if dead != 1 {
		t.Fatal("the poison job did not reach jobs.dead")
	}
}

// TestClosedChannelsRecover: the broker closes the publishing channel (here
// a publish to an exchange that is gone, 404); the next publish goes out on
// a new channel. A consumer whose channel the broker cancels (here: its
// queue is deleted) sees its deliveries end, so its owner reconnects. (A
// refusal for size is the same close, with 406; the worker's tests lower
// the broker's limit for it.)
func TestClosedChannelsRecover(t *testing.T) {
	url := testenv.Vhost(t, "channels")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := broker.Dial(ctx, broker.Config{URL: url, Topology: queue.TopologyAPI, Prefetch: 1, StatusExpires: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.DeclareStatusQueue("x"); err != nil {
		t.Fatal(err)
	}
	testenv.NewManagement(t).Do(t, "DELETE", "exchanges/"+neturl.PathEscape(strings.TrimPrefix(mustPath(t, url), "/"))+"/"+queue.APIExchange, "", nil)
	if err := c.PublishJob(ctx, []byte(`{"id":"lost"}`)); err == nil {
		t.Fatal("publish to a deleted exchange was confirmed")
	}
	if err := c.PublishStatus(ctx, "x", []byte(`{"id":"x"}`)); err != nil {
		t.Fatalf("publish after the channel was closed: %v", err)
	}
	if msgs, err := c.Get(queue.StatusQueue("x"), 5); err != nil || len(msgs) != 1 {
		t.Fatalf("status queue holds %d messages (%v), want 1", len(msgs), err)
	}

	deliveries, err := c.Consume()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(queue.JobsQueue); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-deliveries:
		if ok {
			t.Fatal("a delivery from a deleted queue")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("deliveries did not end when the broker cancelled the consumer")
	}
}

func mustPath(t *testing.T, s string) string {
	t.Helper()
	u, err := neturl.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u.Path
}

// TestQueueLengthLimitPushesBack: with the policy docs/OPERATIONS.md gives
// (max-length with reject-publish on jobs), a publish past the limit is not
// confirmed, so a producer sees the back-pressure instead of a lost job.
func TestQueueLengthLimitPushesBack(t *testing.T) {
	url := testenv.Vhost(t, "maxlen")
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	vhost := strings.TrimPrefix(u.Path, "/")
	testenv.NewManagement(t).Do(t, "PUT", "policies/"+neturl.PathEscape(vhost)+"/jobs-length", `{"pattern":"^jobs$","apply-to":"queues","definition":{"max-length":2,"overflow":"reject-publish"}}`, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := broker.Dial(ctx, broker.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The policy applies within moments of being set.
	var refused error
	for i := 0; i < 50 && refused == nil; i++ {
		refused = c.PublishJob(ctx, []byte(`{"id":"x","code":"x"}`))
		if refused == nil {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !errors.Is(refused, queue.ErrNotConfirmed) {
		t.Fatalf("publish past the length limit: %v, want ErrNotConfirmed", refused)
	}
	msgs, err := c.Get(queue.JobsQueue, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 {
		t.Fatalf("%d jobs in the queue, want the limit, 2", len(msgs))
	}
}
