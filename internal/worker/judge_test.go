package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/queue"
	"github.com/codebench/codebench/internal/testenv"
)

// TestJudgeTestsCheckerStreamingReplies: the judge features of issue 13
// through a real worker and broker, on the driver auto picks here (gVisor
// where KVM cannot boot the guest) and on QEMU.
func TestJudgeTestsCheckerStreamingReplies(t *testing.T) {
	testenv.EachSandbox(t, testJudgeTests)
}

func testJudgeTests(t *testing.T, sb *testenv.Sandbox) {
	h := startWorkerOn(t, sb, "judge13", 2, 1, nil)
	final := func(id string, j map[string]any) job.Status {
		t.Helper()
		j["id"] = id
		b, _ := json.Marshal(j)
		sts := h.submit(id, string(b), 5*time.Minute)
		return sts[len(sts)-1]
	}
	// Doubles its input; test 3 spins forever (its input is negative).
	double := "#include <stdio.h>\nint main(){ int x; scanf(\"%d\", &x); if (x < 0) for(;;); printf(\"%d\\n\", 2*x); return 0; }"
	tests := []map[string]any{
		{"stdin": "1", "expected_output": "2"},
		{"stdin": "2", "expected_output": "5"},
		{"stdin": "-1", "expected_output": "x"},
		{"stdin": "4", "expected_output": "8"},
		{"stdin": "5", "expected_output": "10"},
	}
	t.Run("mixed verdicts, stop on failure", func(t *testing.T) {
		f := final("mixed-stop", map[string]any{"language": "c", "code": double, "tests": tests, "limits": map[string]any{"cpu_ms": 1000}})
		if f.Verdict != job.VerdictWrongAnswer || f.Message != "test 2 of 5: output differs from expected_output" || len(f.Tests) != 2 {
			t.Fatalf("%s %q, %d tests", f.Verdict, f.Message, len(f.Tests))
		}
	})
	t.Run("mixed verdicts, all tests", func(t *testing.T) {
		f := final("mixed-all", map[string]any{"language": "c", "code": double, "tests": tests, "stop_on_failure": false, "limits": map[string]any{"cpu_ms": 1000}})
		var got []string
		for _, ts := range f.Tests {
			got = append(got, ts.Verdict)
		}
		want := "ok,wrong_answer,time_limit,ok,ok"
		if strings.Join(got, ",") != want || f.Verdict != job.VerdictWrongAnswer || f.Tests[3].Stdout != "8\n" || f.Tests[0].ExecDuration <= 0 {
			t.Fatalf("tests %v (want %s), job %s %q", got, want, f.Verdict, f.Message)
		}
	})
	t.Run("checker accepts any permutation", func(t *testing.T) {
		checker := map[string]any{"language": "python", "code": "import sys\nexp, got = open(sys.argv[2]).read().split(), open(sys.argv[3]).read().split()\nprint('permutation' if sorted(exp) == sorted(got) else 'not a permutation')\nsys.exit(0 if sorted(exp) == sorted(got) else 1)"}
		f := final("checker", map[string]any{"language": "python", "code": "import sys\nprint(*reversed(sys.stdin.read().split()), sep='\\n')",
			"checker": checker, "stop_on_failure": false,
			"tests": []map[string]any{{"stdin": "a b c", "expected_output": "a\nb\nc"}, {"stdin": "a b", "expected_output": "a\nc"}}})
		if len(f.Tests) != 2 || f.Tests[0].Verdict != job.VerdictOK || f.Tests[0].CheckerMessage != "permutation\n" ||
			f.Tests[1].Verdict != job.VerdictWrongAnswer || f.Tests[1].CheckerMessage != "not a permutation\n" {
			t.Fatalf("%+v", f.Tests)
		}
	})
	t.Run("public class Solution", func(t *testing.T) {
		f := final("solution", map[string]any{"language": "java", "args": []string{"x"},
			"code": "import java.util.*;\n\npublic class Solution {\n  public static void main(String[] a) { System.out.println(\"solved \" + a[0]); }\n}\n"})
		if f.Verdict != job.VerdictOK || f.Stdout != "solved x\n" {
			t.Fatalf("%s %q %q", f.Verdict, f.Stdout, f.CompileOutput)
		}
	})
	t.Run("streaming: output statuses before the final one, in order", func(t *testing.T) {
		sts := h.submit("stream", `{"id":"stream","language":"python","stream":true,"code":"import time\nfor i in range(5):\n    print('line', i, flush=True)\n    time.sleep(0.2)"}`, 3*time.Minute)
		var outputs []job.Status
		for _, s := range sts {
			if s.Status == job.StatusOutput {
				outputs = append(outputs, s)
			}
		}
		last := sts[len(sts)-1]
		if last.Status != job.StatusDone || len(outputs) < 3 || sts[len(sts)-2].Status != job.StatusOutput {
			t.Fatalf("statuses %s", statusNames(sts))
		}
		var joined string
		for i, o := range outputs {
			if i > 0 && o.Seq <= outputs[i-1].Seq {
				t.Fatalf("output %d has seq %d after %d", i, o.Seq, outputs[i-1].Seq)
			}
			joined += o.Stdout
		}
		if joined != last.Stdout {
			t.Fatalf("streamed %q, final %q", joined, last.Stdout)
		}
	})
	t.Run("reply_to with a plain amqp091 RPC client", func(t *testing.T) {
		ch := testenv.Channel(t, h.url)
		// Direct reply-to: consume the pseudo-queue (no-ack), then publish
		// on the same channel with reply_to set to it.
		replies, err := ch.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		err = ch.PublishWithContext(ctx, "", "jobs", false, false, amqp.Publishing{ContentType: "application/json",
			ReplyTo: "amq.rabbitmq.reply-to", CorrelationId: "rpc-42",
			Body: []byte(`{"id":"rpc","language":"python","code":"print('over rpc')"}`)})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for len(got) == 0 || !job.Final(got[len(got)-1]) {
			select {
			case m := <-replies:
				var st job.Status
				if err := json.Unmarshal(m.Body, &st); err != nil || m.CorrelationId != "rpc-42" || st.ID != "rpc" {
					t.Fatalf("reply %q correlation %q: %v", m.Body, m.CorrelationId, err)
				}
				if m.UserId != h.conn.User() || m.AppId != queue.AppID {
					t.Fatalf("reply from user_id %q app_id %q, want the worker's %q %q", m.UserId, m.AppId, h.conn.User(), queue.AppID)
				}
				got = append(got, st.Status)
				if st.Status == job.StatusDone && st.Stdout != "over rpc\n" {
					t.Fatalf("final reply %+v", st)
				}
			case <-ctx.Done():
				t.Fatalf("replies so far: %v", got)
			}
		}
		if fmt.Sprint(got) != "[received running done]" {
			t.Fatalf("replies %v", got)
		}
	})
}
