package job

import (
	"context"
	"fmt"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
)

// Agent is what Execute needs of a guest agent.
type Agent interface {
	Run(ctx context.Context, req *agentproto.RunRequest) (*agentproto.RunResult, error)
}

// backstopMargin is how long past the job's own limits the host waits for the
// agent before it gives up on the VM.
const backstopMargin = 15 * time.Second

// Execute runs j on agent under p and returns the final status. The host-side
// deadline is the job's compile and wall limits plus a margin: an agent that
// does not answer by then is treated as broken (internal_error), and the
// caller destroys the VM. console, when set, adds the guest console's tail
// to internal errors.
func (p Policy) Execute(ctx context.Context, agent Agent, j *Job, console func() string) *Status {
	req := p.Request(j)
	limit := time.Duration(req.Limits.CompileWallMS+int64(req.Runs)*req.Limits.WallMS)*time.Millisecond + backstopMargin
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	res, err := agent.Run(ctx, req)
	if err != nil {
		msg := "the sandbox failed while running the job"
		if ctx.Err() != nil {
			msg = fmt.Sprintf("the sandbox did not answer within %s", limit)
		}
		st := Internal(j.ID, msg, err)
		if console != nil {
			st.Error += "\nconsole:\n" + console()
		}
		return st
	}
	return FromResult(j, req.Limits, res)
}
