package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/codebench/codebench/internal/broker"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/queue"
	"github.com/codebench/codebench/internal/testenv"
)

// workerProc is a worker binary the test started, and its log.
type workerProc struct {
	cmd  *exec.Cmd
	logs *lockedBuffer
}

// clusterJobs is how many jobs TestClusterLosesANode sends: 20 in every CI
// run, more with CODEBENCH_CLUSTER_JOBS (make cluster-test sends 100).
func clusterJobs() int { return envCount("CODEBENCH_CLUSTER_JOBS", 20) }

// TestClusterLosesANode: a 3-node RabbitMQ cluster on loopback (three
// nodes of the test's own), the jobs queue a quorum queue, two workers
// connected to different nodes (each with the cluster's addresses, tried in
// turn). The jobs are published, one node is killed with SIGKILL while they
// run, and started again. Every job gets a final done; a job may get a
// second one (a worker whose node died after it published the final status
// and before its ack reached the queue: the job is redelivered and run
// again), which is counted and bounded; no worker exits.
func TestClusterLosesANode(t *testing.T) {
	sb := testenv.NeedGVisor(t)
	env := []string{"CODEBENCH_QUORUM=true"}
	nodes := []*testenv.Node{
		testenv.StartNode(t, "cb-c1", 5681, "", env...),
		testenv.StartNode(t, "cb-c2", 5682, "", env...),
		testenv.StartNode(t, "cb-c3", 5683, "", env...),
	}
	for _, n := range nodes[1:] {
		n.Ctl(t, "stop_app")
		n.Ctl(t, "reset")
		n.Ctl(t, "join_cluster", nodes[0].Node())
		n.Ctl(t, "start_app")
	}
	status := nodes[0].Ctl(t, "cluster_status", "--formatter", "json")
	var cs struct {
		Running []string `json:"running_nodes"`
	}
	if err := json.Unmarshal([]byte(status), &cs); err != nil || len(cs.Running) != 3 {
		t.Fatalf("cluster not formed: %v\n%s", err, status)
	}
	// The start script declared a single-node jobs queue on cb-c1 before
	// the cluster existed: declare it again across the three.
	nodes[0].Ctl(t, "delete_queue", queue.JobsQueue)
	nodes[0].Ctl(t, "delete_queue", queue.DeadQueue)
	urls := func(order ...int) string {
		var us []string
		for _, i := range order {
			us = append(us, nodes[i].URL)
		}
		return strings.Join(us, ",")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := broker.DeclareTopology(ctx, broker.Config{URL: urls(2), Quorum: true, DeliveryLimit: 5}); err != nil {
		t.Fatal(err)
	}
	qs := nodes[2].Ctl(t, "list_queues", "name", "type", "--formatter", "json")
	if !strings.Contains(qs, `"name":"jobs","type":"quorum"`) {
		t.Fatalf("jobs is not a quorum queue: %s", qs)
	}

	// The replies come to a quorum queue of the test's, through the node
	// that is not killed.
	ch := testenv.Channel(t, nodes[2].URL)
	const replies = "cluster-test-replies"
	if _, err := ch.QueueDeclare(replies, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}

	var workers []*workerProc
	for i, order := range [][]int{{0, 1, 2}, {1, 2, 0}} {
		logs := &lockedBuffer{}
		cmd := startWorkerBinaryTo(t, logs, "RABBITMQ_URL="+urls(order...), "CODEBENCH_DRIVER=gvisor", "CODEBENCH_QUORUM=true",
			"CODEBENCH_RUN_DIR="+filepath.Join(sb.RunDir, fmt.Sprintf("c%d", i)), "CODEBENCH_POOL_SIZE=2", "CODEBENCH_CONCURRENCY=2",
			"CODEBENCH_RECONNECT_MAX=1s", "CODEBENCH_STATUS_QUEUE_WITH_REPLY=false",
			// The replies' queue is one of the test's own names: allowed by pattern.
			"CODEBENCH_REPLY_TO_PATTERN="+replies)
		workers = append(workers, &workerProc{cmd: cmd, logs: logs})
	}

	n := clusterJobs()
	finals := map[string][]string{} // job id -> final statuses
	var mu sync.Mutex
	msgs, err := ch.Consume(replies, "", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	collected := make(chan struct{})
	go func() { // owned here: ends when the test's channel closes
		defer close(collected)
		for d := range msgs {
			var st job.Status
			if json.Unmarshal(d.Body, &st) != nil || !job.Final(st.Status) {
				continue
			}
			mu.Lock()
			finals[st.ID] = append(finals[st.ID], st.Status+"/"+st.Verdict)
			mu.Unlock()
		}
	}()
	for i := range n {
		body := fmt.Sprintf(`{"id":"c%03d","language":"python","code":"print(%d)"}`, i, i)
		conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue.JobsQueue, true, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent, ContentType: "application/json", ReplyTo: replies, CorrelationId: strconv.Itoa(i), Body: []byte(body)})
		if err != nil || !conf.Wait() {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	done := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(finals)
	}
	// Kill cb-c1 (the first worker's node, and likely the queue's leader)
	// with a third of the jobs done; bring it back a few seconds later.
	eventually(t, "a third of the jobs", 5*time.Minute, func() bool { return done() >= n/3 })
	nodes[0].Kill(t)
	killedAt := done()
	t.Logf("killed %s with %d of %d jobs done", nodes[0].Name, killedAt, n)
	time.Sleep(5 * time.Second)
	nodes[0].Start(t)
	eventually(t, "every job's final status", 8*time.Minute, func() bool { return done() >= n })
	time.Sleep(3 * time.Second) // a late duplicate still gets counted

	mu.Lock()
	dups := 0
	for i := range n {
		id := fmt.Sprintf("c%03d", i)
		got := finals[id]
		if len(got) == 0 || got[0] != job.StatusDone+"/"+job.VerdictOK {
			t.Errorf("%s: final statuses %v", id, got)
		}
		for _, f := range got[1:] {
			if f != got[0] {
				t.Errorf("%s: a duplicate that differs: %v", id, got)
			}
		}
		if len(got) > 2 {
			t.Errorf("%s: %d final statuses, more than one duplicate", id, len(got))
		}
		dups += max(len(got)-1, 0)
	}
	mu.Unlock()
	t.Logf("%d jobs, %d duplicate final statuses (jobs redelivered after the node loss)", n, dups)
	if dups > n/4 {
		t.Errorf("%d duplicates for %d jobs", dups, n)
	}
	for i, w := range workers {
		if err := w.cmd.Process.Signal(syscall.Signal(0)); err != nil {
			t.Fatalf("worker %d exited: %v\n%s", i, err, w.logs.String())
		}
	}
	for i, w := range workers {
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
		if err := w.cmd.Wait(); err != nil {
			t.Errorf("worker %d: %v\n%s", i, err, w.logs.String())
		}
	}
	ch.Close()
	<-collected
}
