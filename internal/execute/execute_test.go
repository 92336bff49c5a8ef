package execute

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/job"
)

type fakeSandbox struct {
	res *agentproto.RunResult
	err error
	req *agentproto.RunRequest
}

func (s *fakeSandbox) Run(_ context.Context, req *agentproto.RunRequest, _ func(agentproto.Output)) (*agentproto.RunResult, error) {
	s.req = req
	return s.res, s.err
}

func (s *fakeSandbox) ConsoleTail(n int) string { return "console tail" }

func TestJob(t *testing.T) {
	p := job.Policy{Defaults: job.Limits{WallMS: 1000, OutputBytes: 100}, Max: job.Limits{WallMS: 2000}, CompileWall: 5000}
	tests := []struct {
		name    string
		sb      *fakeSandbox
		verdict string
		check   func(t *testing.T, st *job.Status, sb *fakeSandbox)
	}{
		{"ok, with guest timings", &fakeSandbox{res: &agentproto.RunResult{Compiled: true, Compile: &agentproto.Phase{WallUS: 700},
			Run: &agentproto.Phase{WallUS: 200}, Stdout: "hi", AgentUS: 950}}, job.VerdictOK,
			func(t *testing.T, st *job.Status, sb *fakeSandbox) {
				tm := st.Timings
				if tm == nil || tm.CompileUS != 700 || tm.RunUS != 200 || tm.GuestUS != 950 || tm.AgentUS < 0 || tm.DispatchUS != max(tm.AgentUS-700-200, 0) {
					t.Fatalf("timings %+v", tm)
				}
				if sb.req.Limits.WallMS != 1000 || sb.req.Limits.CompileWallMS != 5000 || sb.req.Runs != 1 {
					t.Fatalf("request limits %+v runs %d", sb.req.Limits, sb.req.Runs)
				}
			}},
		{"agent failure: internal error with the console", &fakeSandbox{err: errors.New("connection reset")}, job.VerdictInternalError,
			func(t *testing.T, st *job.Status, _ *fakeSandbox) {
				if !strings.Contains(st.Error, "connection reset") || !strings.Contains(st.Error, "console tail") || st.Timings == nil {
					t.Fatalf("status %+v", st)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := Job(context.Background(), p, tt.sb, &job.Job{ID: "x", Language: "c", Code: "int main(){}"}, nil)
			if st.Verdict != tt.verdict {
				t.Fatalf("verdict %s (%s), want %s", st.Verdict, st.Message, tt.verdict)
			}
			tt.check(t, st, tt.sb)
		})
	}
}
