package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	neturl "net/url"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/queue"
	"github.com/codebench/codebench/internal/testenv"
)

// queueInfo is what the management API says of one queue.
type queueInfo struct {
	Name         string `json:"name"`
	Messages     int    `json:"messages"`
	Unacked      int    `json:"messages_unacknowledged"`
	MessageStats struct {
		Publish    int `json:"publish"`
		Redeliver  int `json:"redeliver"`
		DeliverGet int `json:"deliver_get"`
	} `json:"message_stats"`
}

func (h *harness) queueInfo(m *testenv.Management, name string) queueInfo {
	h.t.Helper()
	var q queueInfo
	m.Do(h.t, "GET", "queues/"+neturl.PathEscape(h.vhost())+"/"+neturl.PathEscape(name), "", &q)
	return q
}

// drain waits until the worker has taken everything published before:
// with one job at a time and prefetch 1 the jobs queue is served in order,
// so once a sentinel job (invalid, on a status queue of its own) is
// answered, every job before it was handled. It returns the sentinel's
// status queue, for the caller to leave out of queue counts.
func (h *harness) drain(timeout time.Duration) string {
	h.t.Helper()
	id := fmt.Sprintf("sentinel-%d", time.Now().UnixNano())
	sts := h.submit(id, fmt.Sprintf(`{"id":%q,"language":"cobol","code":"x"}`, id), timeout)
	if len(sts) != 1 || sts[0].Verdict != job.VerdictInvalidJob {
		h.t.Fatalf("sentinel: %+v", sts)
	}
	return queue.StatusQueue(id)
}

// TestVerdictIntegrity: what a producer can aim at other queues, and what a
// consumer can trust, against a real broker and worker.
func TestVerdictIntegrity(t *testing.T) {
	h := startWorkerOn(t, testenv.NeedGVisor(t).Sandbox(), "integrity", 1, 1, nil)
	m := testenv.NewManagement(t)
	ch := testenv.Channel(t, h.url)

	t.Run("reply_to naming codebench's queues is invalid_job, nothing lands there", func(t *testing.T) {
		if _, err := ch.QueueDeclare("job_status_victim", true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		before := h.queueInfo(m, queue.JobsQueue).MessageStats.Publish
		for i, to := range []string{"jobs", "job_status_victim", "jobs.dead"} {
			id := fmt.Sprintf("aim%d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			sts, err := h.conn.FollowMessages(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			err = ch.PublishWithContext(ctx, "", "jobs", false, false, amqp.Publishing{ContentType: "application/json",
				ReplyTo: to, Body: []byte(fmt.Sprintf(`{"id":%q,"language":"python","code":"print('x')","stream":true}`, id))})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case msg := <-sts:
				var st job.Status
				_ = json.Unmarshal(msg.Body, &st)
				if st.Verdict != job.VerdictInvalidJob || !strings.Contains(st.Message, "reply_to") || !strings.Contains(st.Message, to) {
					t.Errorf("reply_to %q: %s %s %q", to, st.Status, st.Verdict, st.Message)
				}
			case <-ctx.Done():
				t.Fatalf("reply_to %q: no status", to)
			}
			cancel()
		}
		h.drain(time.Minute)
		time.Sleep(6 * time.Second) // the management API's message counts lag by its stats interval
		if q := h.queueInfo(m, "job_status_victim"); q.Messages != 0 {
			t.Errorf("the victim's status queue got %d messages", q.Messages)
		}
		if q := h.queueInfo(m, queue.DeadQueue); q.Messages != 0 {
			t.Errorf("jobs.dead got %d messages", q.Messages)
		}
		if after := h.queueInfo(m, queue.JobsQueue).MessageStats.Publish; after-before != 4 {
			t.Errorf("%d messages were published to jobs, want our 3 jobs and the sentinel", after-before)
		}
	})

	t.Run("every status carries the worker's user_id and app_id", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		sts, err := h.conn.FollowMessages(ctx, "signed")
		if err != nil {
			t.Fatal(err)
		}
		if err := h.conn.PublishJob(ctx, []byte(`{"id":"signed","language":"python","code":"print('ok')"}`)); err != nil {
			t.Fatal(err)
		}
		n := 0
		for msg := range sts {
			var st job.Status
			_ = json.Unmarshal(msg.Body, &st)
			if err := msg.FromWorker(h.conn.User(), "signed", st.ID); err != nil {
				t.Fatalf("status %s: %v", st.Status, err)
			}
			n++
			if job.Final(st.Status) {
				break
			}
		}
		if n != 3 {
			t.Fatalf("%d statuses", n)
		}
	})

	t.Run("a producer's forged status is told apart", func(t *testing.T) {
		// A producer of its own, allowed to write anywhere on the vhost.
		pass := "forger-pass"
		user := fmt.Sprintf("forger-%d", time.Now().UnixNano())
		m.Do(t, "PUT", "users/"+user, fmt.Sprintf(`{"password":%q,"tags":""}`, pass), nil)
		t.Cleanup(func() { m.Do(t, "DELETE", "users/"+user, "", nil) })
		m.Do(t, "PUT", "permissions/"+neturl.PathEscape(h.vhost())+"/"+user, `{"configure":".*","write":".*","read":".*"}`, nil)
		u, _ := neturl.Parse(h.url)
		u.User = neturl.UserPassword(user, pass)
		if _, err := ch.QueueDeclare("job_status_forged", true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		forged := []byte(`{"id":"forged","status":"done","stdout":"","stderr":"","verdict":"ok"}`)
		// With the worker's user_id: the broker refuses it.
		fch := testenv.Channel(t, u.String())
		if err := fch.Confirm(false); err != nil {
			t.Fatal(err)
		}
		closed := fch.NotifyClose(make(chan *amqp.Error, 1))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = fch.PublishWithContext(ctx, "", "job_status_forged", false, false, amqp.Publishing{Body: forged, UserId: h.conn.User(), AppId: queue.AppID})
		select {
		case e := <-closed:
			if e == nil || e.Code != amqp.PreconditionFailed {
				t.Fatalf("the broker closed the forger's channel with %v, want 406", e)
			}
		case <-ctx.Done():
			t.Fatal("the broker took a status with another user's user_id")
		}
		// With its own (or none): taken by the broker, refused by the reader.
		fch = testenv.Channel(t, u.String())
		for _, userID := range []string{user, ""} {
			if err := fch.PublishWithContext(ctx, "", "job_status_forged", false, false,
				amqp.Publishing{Body: forged, UserId: userID, AppId: queue.AppID}); err != nil {
				t.Fatal(err)
			}
		}
		sts, err := h.conn.FollowMessages(ctx, "forged")
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			msg := <-sts
			if err := msg.FromWorker(h.conn.User(), "forged", "forged"); err == nil || !strings.Contains(err.Error(), "user_id") {
				t.Fatalf("a forged status from user_id %q passed as the worker's: %v", msg.UserID, err)
			}
		}
	})

	t.Run("a status queue that refuses every publish ends the job in jobs.dead", func(t *testing.T) {
		_, err := ch.QueueDeclare("job_status_refuser", true, false, false, false,
			amqp.Table{"x-max-length": int64(0), "x-overflow": "reject-publish"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.conn.PublishJob(ctx, []byte(`{"id":"refuser","language":"python","code":"print('x')"}`)); err != nil {
			t.Fatal(err)
		}
		h.drain(time.Minute)
		dead, err := h.conn.Get(queue.DeadQueue, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) != 1 || !strings.Contains(string(dead[0].Body), `"refuser"`) ||
			!strings.Contains(fmt.Sprint(dead[0].Headers[queue.ReasonHeader]), "refused") {
			t.Fatalf("jobs.dead: %d messages %+v", len(dead), dead)
		}
		time.Sleep(6 * time.Second) // the management API's figures lag by its stats interval
		if q := h.queueInfo(m, queue.JobsQueue); q.MessageStats.Redeliver != 0 {
			t.Fatalf("the job was redelivered %d times", q.MessageStats.Redeliver)
		}
	})

	t.Run("10,000 invalid jobs with fresh ids leave no new queues", func(t *testing.T) {
		var before []queueInfo
		m.Do(t, "GET", "queues/"+neturl.PathEscape(h.vhost()), "", &before)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		for i := range 10_000 {
			body := fmt.Sprintf(`{"id":"inv-%d","language":"cobol","code":"x"}`, i)
			if err := ch.PublishWithContext(ctx, "", "jobs", false, false, amqp.Publishing{Body: []byte(body)}); err != nil {
				t.Fatal(err)
			}
		}
		sentinel := h.drain(4 * time.Minute)
		var after []queueInfo
		m.Do(t, "GET", "queues/"+neturl.PathEscape(h.vhost()), "", &after)
		var added []string
		for _, q := range after {
			if !slices.ContainsFunc(before, func(b queueInfo) bool { return b.Name == q.Name }) && q.Name != sentinel {
				added = append(added, q.Name)
			}
		}
		if len(added) != 0 {
			t.Fatalf("%d new queues, first %q", len(added), added[0])
		}
		t.Logf("10,000 invalid jobs refused in %s", time.Since(start).Round(time.Millisecond))
	})
}
