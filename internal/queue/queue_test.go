package queue_test

import (
	"context"
	"testing"
	"time"

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
	cfg := queue.Config{URL: url, Prefetch: 1, Quorum: true, DeliveryLimit: 2}
	producer, err := queue.Dial(ctx, cfg)
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
		w, err := queue.Dial(ctx, cfg)
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
