package broker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/codebench/codebench/internal/broker"
	"github.com/codebench/codebench/internal/queue"
	"github.com/codebench/codebench/internal/testenv"
)

// TestBrokerUsers: the permissions scripts/rabbitmq.sh gives
// codebench-worker and codebench-producer (read back from the broker the
// test set-up started, copied to users of this test's own vhost) let the
// worker do its work and the producer publish jobs and read its own
// replies, and nothing more: the producer can neither write a status
// queue nor read one.
func TestBrokerUsers(t *testing.T) {
	url := testenv.Vhost(t, "users")
	users := map[string]string{}
	for _, role := range []string{"codebench-worker", "codebench-producer"} {
		users[role] = testenv.UserLike(t, role, url)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	worker, err := broker.Dial(ctx, broker.Config{URL: users["codebench-worker"], Topology: queue.TopologyAPI, Prefetch: 1})
	if err != nil {
		t.Fatalf("the worker user cannot declare the topology: %v", err)
	}
	defer worker.Close()
	jobs, err := worker.Consume()
	if err != nil {
		t.Fatalf("the worker user cannot consume jobs: %v", err)
	}

	pch := testenv.Channel(t, users["codebench-producer"])
	reply, err := pch.QueueDeclare("", false, true, true, false, nil)
	if err != nil || !strings.HasPrefix(reply.Name, queue.ServerNamedPrefix) {
		t.Fatalf("the producer cannot declare its reply queue: %q %v", reply.Name, err)
	}
	replies, err := pch.Consume(reply.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pch.PublishWithContext(ctx, queue.APIExchange, queue.APIRoutingKey, false, false, amqp.Publishing{
		ReplyTo: reply.Name, CorrelationId: "c1", Body: []byte(`{"id":"u1","code":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	var d queue.Delivery
	select {
	case d = <-jobs:
	case <-ctx.Done():
		t.Fatal("the producer's job did not reach the worker")
	}
	if err := (queue.ReplyPolicy{}).Check(d.ReplyTo); err != nil {
		t.Fatalf("the producer's own reply queue is refused: %v", err)
	}
	if err := worker.PublishReply(ctx, d.ReplyTo, d.CorrelationID, []byte(`{"id":"u1","status":"received"}`)); err != nil {
		t.Fatalf("the worker user cannot reply: %v", err)
	}
	if err := worker.DeclareStatusQueue("u1"); err != nil {
		t.Fatal(err)
	}
	if err := worker.PublishStatus(ctx, "u1", []byte(`{"id":"u1","status":"received"}`)); err != nil {
		t.Fatalf("the worker user cannot write a status queue: %v", err)
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-replies:
		if r.UserId != worker.User() || r.AppId != queue.AppID || r.CorrelationId != "c1" {
			t.Fatalf("reply from user_id %q app_id %q correlation %q", r.UserId, r.AppId, r.CorrelationId)
		}
	case <-ctx.Done():
		t.Fatal("no reply")
	}

	// What the producer must not do: each closes its channel with 403.
	for _, try := range []struct {
		what string
		do   func(ch *amqp.Channel) error
	}{
		{"write a status queue", func(ch *amqp.Channel) error {
			return ch.PublishWithContext(ctx, "", queue.StatusQueue("u1"), false, false, amqp.Publishing{Body: []byte(`{}`)})
		}},
		{"write jobs.dead", func(ch *amqp.Channel) error {
			return ch.PublishWithContext(ctx, "", queue.DeadQueue, false, false, amqp.Publishing{Body: []byte(`{}`)})
		}},
		{"read a status queue", func(ch *amqp.Channel) error {
			_, err := ch.Consume(queue.StatusQueue("u1"), "", true, false, false, false, nil)
			return err
		}},
	} {
		ch := testenv.Channel(t, users["codebench-producer"])
		closed := ch.NotifyClose(make(chan *amqp.Error, 1))
		_ = try.do(ch)
		select {
		case e := <-closed:
			if e == nil || e.Code != amqp.AccessRefused {
				t.Errorf("producer may not %s: channel closed with %v, want 403", try.what, e)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("the producer could %s", try.what)
		}
	}
}

// TestAPIBrokerUser: the permissions scripts/rabbitmq.sh gives
// codebench-api let the API find the topology (passively: it may not
// declare it), declare and read its own reply queue, publish jobs and look
// at the jobs queue, and nothing more.
func TestAPIBrokerUser(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	vhost := testenv.Vhost(t, "apiuser")
	apiURL := testenv.UserLike(t, "codebench-api", vhost)
	cfg := broker.Config{URL: apiURL, Prefetch: 1, Passive: true, Topology: queue.TopologyAPI}
	if _, err := broker.Dial(ctx, cfg); !errors.Is(err, broker.ErrNoTopology) {
		t.Fatalf("before any worker declared the topology: %v", err)
	}
	admin, err := broker.Dial(ctx, broker.Config{URL: vhost, Prefetch: 1, Topology: queue.TopologyAPI})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	api, err := broker.Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("the API user cannot find the topology: %v", err)
	}
	defer api.Close()
	if _, err := api.ConsumeDurable("codebench.api.t1", 1); err != nil {
		t.Fatalf("the API user cannot declare and read its reply queue: %v", err)
	}
	if err := api.PublishJobReply(ctx, []byte(`{"id":"a1","code":"x"}`), "codebench.api.t1", "a1"); err != nil {
		t.Fatalf("the API user cannot publish a job: %v", err)
	}
	if n, _, err := api.QueueStats(queue.JobsQueue); err != nil || n != 1 {
		t.Fatalf("the API user cannot look at the jobs queue: %d %v", n, err)
	}
	for _, try := range []struct {
		what string
		do   func(ch *amqp.Channel) error
	}{
		{"read the jobs queue", func(ch *amqp.Channel) error {
			_, err := ch.Consume(queue.JobsQueue, "", true, false, false, false, nil)
			return err
		}},
		{"delete the jobs queue", func(ch *amqp.Channel) error {
			_, err := ch.QueueDelete(queue.JobsQueue, false, false, false)
			return err
		}},
		{"write a status queue", func(ch *amqp.Channel) error {
			return ch.PublishWithContext(ctx, "", queue.StatusQueue("a1"), false, false, amqp.Publishing{Body: []byte(`{}`)})
		}},
		{"write another API node's reply queue", func(ch *amqp.Channel) error {
			return ch.PublishWithContext(ctx, "", "codebench.api.other", false, false, amqp.Publishing{Body: []byte(`{}`)})
		}},
		{"declare another queue", func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclare("not-the-apis", true, false, false, false, nil)
			return err
		}},
	} {
		ch := testenv.Channel(t, apiURL)
		closed := ch.NotifyClose(make(chan *amqp.Error, 1))
		_ = try.do(ch)
		select {
		case e := <-closed:
			if e == nil || e.Code != amqp.AccessRefused {
				t.Errorf("the API user may not %s: channel closed with %v, want 403", try.what, e)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("the API user could %s", try.what)
		}
	}
}
