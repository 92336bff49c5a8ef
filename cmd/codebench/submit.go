package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/codebench/codebench/internal/broker"
	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/queue"
	"github.com/codebench/codebench/internal/untrusted"
)

func submitCmd(fs *flag.FlagSet) commandFunc {
	language := fs.String("lang", "", "language (default: from the file extension)")
	id := fs.String("id", "", "job id (default: generated)")
	watch := fs.Bool("watch", false, "follow the job's status queue until its final status")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long --watch waits for the final status")
	stream := fs.Bool("stream", false, "ask for the output while the program runs (output statuses)")
	jobFile := fs.String("job", "", "publish this whole job (JSON, as on the jobs queue) instead of FILE")
	return func(ctx context.Context, cfg config.Config, log *slog.Logger, args []string) error {
		var j job.Job
		switch {
		case *jobFile != "":
			b, err := os.ReadFile(*jobFile)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(b, &j); err != nil {
				return fmt.Errorf("--job %s: %w", *jobFile, err)
			}
			// As a worker would: a field it does not know is refused.
			if f := job.UnknownField(b); f != "" {
				return fmt.Errorf("--job %s: unknown field %s", *jobFile, f)
			}
		case fs.NArg() == 1:
			code, err := os.ReadFile(fs.Arg(0))
			if err != nil {
				return err
			}
			if *language == "" {
				l, ok := lang.Builtin().ByExtension(fs.Arg(0))
				if !ok {
					return fmt.Errorf("cannot tell the language of %s; use --lang", fs.Arg(0))
				}
				*language = l.Name
			}
			j = job.Job{Type: "code", Language: *language, Code: string(code), Stream: *stream}
		default:
			return fmt.Errorf("usage: codebench submit [--lang L] [--id ID] [--stream] [--watch] FILE | --job JOB.json")
		}
		if *id != "" {
			j.ID = *id
		}
		if j.ID == "" {
			j.ID = fmt.Sprintf("job-%d", time.Now().UnixNano())
		}
		*id = j.ID
		if err := j.Validate(job.Policy{MaxCodeBytes: cfg.Worker.MaxCodeBytes}); err != nil {
			return err
		}
		body, _ := json.Marshal(j)
		conn, err := broker.Dial(ctx, queueConfig(cfg))
		if err != nil {
			return err
		}
		defer conn.Close()
		var statuses <-chan queue.Message
		wctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		if *watch {
			// Follow before publishing, so no status can come before we listen.
			if statuses, err = conn.FollowMessages(wctx, *id); err != nil {
				return err
			}
		}
		if err := conn.PublishJob(ctx, body); err != nil {
			return err
		}
		fmt.Printf("submitted job %s (%s) to %s\n", *id, j.Language, queue.JobsQueue)
		if !*watch {
			return nil
		}
		out, errOut := untrusted.ForFile(os.Stdout), untrusted.ForFile(os.Stderr)
		// Only the worker's word counts: a status whose user_id (which the
		// broker checks) is not the workers' user, or that names another job,
		// was written by someone else into our queue.
		worker := cfg.Worker.WorkerUser
		if worker == "" {
			worker = conn.User()
		}
		for m := range statuses {
			var st job.Status
			if err := json.Unmarshal(m.Body, &st); err != nil {
				fmt.Printf("undecodable status: %s\n", out(untrusted.Clip(string(m.Body), 4096)))
				continue
			}
			if err := m.FromWorker(worker, *id, st.ID); err != nil {
				fmt.Fprintf(os.Stderr, "ignored a status: %s\n", errOut(untrusted.Clip(err.Error(), 4096)))
				continue
			}
			fmt.Printf("%-8s %s\n", out(untrusted.Clip(st.Status, 64)), out(string(m.Body)))
			if job.Final(st.Status) {
				fmt.Print(out(st.Stdout))
				if st.Stdout != "" && st.Stdout[len(st.Stdout)-1] != '\n' {
					fmt.Println()
				}
				fmt.Fprint(os.Stderr, errOut(st.CompileOutput), errOut(st.Stderr))
				return exitFor(&st)
			}
		}
		return fmt.Errorf("no final status for job %s within %s", *id, *timeout)
	}
}
