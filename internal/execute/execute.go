// Package execute runs one job on one sandbox: it builds the agent request
// from the job under the worker's policy, bounds the call by the job's own
// limits plus a margin, and turns the agent's answer into the final status
// with the guest-side timings. The worker, "codebench run" and "codebench
// bench" all run jobs through Job, so they cannot drift apart.
package execute

import (
	"context"
	"fmt"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/job"
)

// Sandbox is what a job runs on: the guest agent, and the console to quote
// when the sandbox fails.
type Sandbox interface {
	// Run runs req; progress, when not nil, gets streamed output.
	Run(ctx context.Context, req *agentproto.RunRequest, progress func(agentproto.Output)) (*agentproto.RunResult, error)
	ConsoleTail(n int) string
}

// backstopMargin is how long past the job's own limits the host waits for the
// agent before it gives up on the sandbox.
const backstopMargin = 15 * time.Second

// consoleTail is how much of the guest console an internal error quotes.
const consoleTail = 2000

// Job runs j on sb under p and returns the final status, with its Timings
// set for the part spent on the sandbox (agent call, dispatch, compile, run,
// time in the guest); the caller adds its own phases. An agent that does not
// answer by the job's compile and wall limits plus a margin is treated as
// broken (internal_error, with the console's tail); the caller destroys the
// sandbox either way.
//
// progress, when not nil and the job streams, gets the program's output as
// it comes, in order, before Job returns.
func Job(ctx context.Context, p job.Policy, sb Sandbox, j *job.Job, progress func(agentproto.Output)) *job.Status {
	req := p.Request(j)
	// The backstop: every phase at its wall limit (a checker's compile and
	// runs included), which the policy caps, plus a margin.
	limit := time.Duration(agentproto.WallBudgetMS(req))*time.Millisecond + backstopMargin
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	start := time.Now()
	res, err := sb.Run(ctx, req, progress)
	agent := time.Since(start)
	if err != nil {
		msg := "the sandbox failed while running the job"
		if ctx.Err() != nil {
			msg = fmt.Sprintf("the sandbox did not answer within %s", limit)
		}
		st := job.Internal(j.ID, msg, err)
		st.Error += "\nconsole:\n" + sb.ConsoleTail(consoleTail)
		st.Timings = &job.Timings{AgentUS: agent.Microseconds()}
		return st
	}
	st := job.FromResult(j, req.Limits, res)
	tm := &job.Timings{
		AgentUS:   agent.Microseconds(),
		CompileUS: st.CompileUS,
		RunUS:     st.ExecDuration,
		GuestUS:   res.AgentUS,
	}
	tm.DispatchUS = max(tm.AgentUS-tm.CompileUS-tm.RunUS, 0)
	st.Timings = tm
	return st
}
