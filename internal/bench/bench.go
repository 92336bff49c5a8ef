package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/queue"
	"github.com/codebench/codebench/internal/sandbox"
)

// HelloC is the program every benchmark runs: the seed's.
const HelloC = "#include <stdio.h>\r\nint main() {\r\n   printf(\"Hello, World!\");\r\n   return 0;\r\n}"

// BootReport is the result of Boot.
type BootReport struct {
	Boot         Summary `json:"boot_to_agent_ready"`
	GuestHello   Summary `json:"guest_hello_c_agent_call"`
	GuestCompile Summary `json:"guest_hello_c_compile"`
	GuestRun     Summary `json:"guest_hello_c_run"`
	NativeHello  Summary `json:"native_hello_c_compile_and_run"`
	Driver       string  `json:"driver"`
}

// Boot cold-boots n VMs one after another, timing boot to agent ready, then
// runs hello-world C in each; the same program compiled and run natively on
// the host is the baseline.
func Boot(ctx context.Context, drv sandbox.Driver, spec sandbox.Spec, n int) (*BootReport, error) {
	var boots, calls, compiles, runs []time.Duration
	for i := 0; i < n; i++ {
		inst, err := sandbox.Launch(ctx, drv, spec)
		if err != nil {
			return nil, fmt.Errorf("boot %d: %w", i, err)
		}
		boots = append(boots, inst.BootTime)
		start := time.Now()
		res, err := inst.Agent.Run(ctx, &agentproto.RunRequest{Language: "c", Code: HelloC})
		call := time.Since(start)
		_ = inst.Stop(ctx)
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", i, err)
		}
		if res.Stdout != "Hello, World!" || res.Compile == nil || res.Run == nil {
			return nil, fmt.Errorf("run %d: unexpected result %+v", i, res)
		}
		calls = append(calls, call)
		compiles = append(compiles, time.Duration(res.Compile.WallUS)*time.Microsecond)
		runs = append(runs, time.Duration(res.Run.WallUS)*time.Microsecond)
	}
	native, err := Native(ctx, n)
	if err != nil {
		return nil, err
	}
	return &BootReport{
		Boot:         Summarize("cold boot to agent ready", boots),
		GuestHello:   Summarize("guest hello.c (agent call)", calls),
		GuestCompile: Summarize("  of which gcc", compiles),
		GuestRun:     Summarize("  of which run", runs),
		NativeHello:  native,
		Driver:       drv.Name(),
	}, nil
}

// Native compiles and runs HelloC on the host n times with the same gcc
// command the guest uses.
func Native(ctx context.Context, n int) (Summary, error) {
	dir, err := os.MkdirTemp("", "codebench-native-")
	if err != nil {
		return Summary{}, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "main.c"), []byte(HelloC), 0o644); err != nil {
		return Summary{}, err
	}
	var samples []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		if out, err := exec.CommandContext(ctx, "gcc", "-std=gnu17", "-o", filepath.Join(dir, "main"), filepath.Join(dir, "main.c"), "-lm").CombinedOutput(); err != nil {
			return Summary{}, fmt.Errorf("native gcc: %w: %s", err, out)
		}
		out, err := exec.CommandContext(ctx, filepath.Join(dir, "main")).Output()
		if err != nil || string(out) != "Hello, World!" {
			return Summary{}, fmt.Errorf("native run: %v %q", err, out)
		}
		samples = append(samples, time.Since(start))
	}
	return Summarize("native hello.c (gcc + run, host)", samples), nil
}

// E2EReport is the result of EndToEnd.
type E2EReport struct {
	EndToEnd     Summary `json:"publish_to_final"`
	PoolWait     Summary `json:"pool_wait"`
	Agent        Summary `json:"agent_call"`
	InGuest      Summary `json:"in_guest_compile_plus_run"`
	HostOverhead Summary `json:"host_overhead"`
	NativeHello  Summary `json:"native_hello_c_compile_and_run"`
}

// EndToEnd publishes n hello-world C jobs one at a time to a running worker
// and times publish to final status; the status's own timings split it.
func EndToEnd(ctx context.Context, qcfg queue.Config, n int) (*E2EReport, error) {
	conn, err := queue.Dial(ctx, qcfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var e2e, poolWait, agent, guest, overhead []time.Duration
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i)
		jctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		ch, err := conn.Follow(jctx, id)
		if err != nil {
			cancel()
			return nil, err
		}
		body, _ := json.Marshal(job.Job{ID: id, Type: "code", Language: "c", Code: HelloC})
		start := time.Now()
		if err := conn.PublishJob(jctx, body); err != nil {
			cancel()
			return nil, err
		}
		var final *job.Status
		for b := range ch {
			var st job.Status
			if json.Unmarshal(b, &st) == nil && job.Final(st.Status) {
				final = &st
				break
			}
		}
		took := time.Since(start)
		cancel()
		if final == nil {
			return nil, fmt.Errorf("job %s: no final status", id)
		}
		if final.Status != job.StatusDone || final.Stdout != "Hello, World!" || final.Timings == nil {
			return nil, fmt.Errorf("job %s: unexpected final status %+v", id, final)
		}
		_ = conn.Delete(queue.StatusQueue(id))
		inGuest := time.Duration(final.CompileUS+final.ExecDuration) * time.Microsecond
		e2e = append(e2e, took)
		poolWait = append(poolWait, time.Duration(final.Timings.PoolWaitUS)*time.Microsecond)
		agent = append(agent, time.Duration(final.Timings.AgentUS)*time.Microsecond)
		guest = append(guest, inGuest)
		overhead = append(overhead, took-inGuest)
	}
	native, err := Native(ctx, n)
	if err != nil {
		return nil, err
	}
	return &E2EReport{
		EndToEnd:     Summarize("publish -> final status", e2e),
		PoolWait:     Summarize("  pool wait", poolWait),
		Agent:        Summarize("  agent call (compile+run+transfer)", agent),
		InGuest:      Summarize("  in guest (gcc + run)", guest),
		HostOverhead: Summarize("  host side (end-to-end - in guest)", overhead),
		NativeHello:  native,
	}, nil
}
