package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/execute"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/sandbox"
	"github.com/codebench/codebench/internal/untrusted"
)

// Exit statuses of "codebench run" when the program itself did not decide.
const (
	exitCompileError = 1
	exitTimeLimit    = 124
	exitInternal     = 125
	exitInvalid      = 2
)

func runCmd(fs *flag.FlagSet) commandFunc {
	language := fs.String("lang", "", "language (default: from the file extension)")
	asJSON := fs.Bool("json", false, "print the status document as JSON")
	stdinFile := fs.String("stdin", "", "file to feed to the program's standard input")
	wallMS := fs.Int64("wall-ms", 0, "wall-clock limit in ms (default from config)")
	limits := fs.String("limits", "", `limits as JSON, e.g. '{"cpu_ms":1000,"memory_kb":65536}'`)
	expected := fs.String("expected-output", "", "expected stdout: a mismatch is wrong_answer")
	compare := fs.String("compare", "", "exact or trailing_whitespace (default)")
	runs := fs.Int("runs", 0, "run the compiled program this many times")
	flags := fs.String("compile-flags", "", "space-separated compile flags from the language's allow-list")
	jobFile := fs.String("job", "", "a whole job as JSON, as on the jobs queue (tests, checker, stream, ...), instead of FILE")
	return func(ctx context.Context, cfg config.Config, log *slog.Logger, args []string) error {
		if *jobFile != "" {
			b, err := os.ReadFile(*jobFile)
			if err != nil {
				return err
			}
			var j job.Job
			if err := json.Unmarshal(b, &j); err != nil {
				return fmt.Errorf("--job %s: %w", *jobFile, err)
			}
			// As a worker would: a field it does not know is refused.
			if f := job.UnknownField(b); f != "" {
				return fmt.Errorf("--job %s: unknown field %s", *jobFile, f)
			}
			return runJob(ctx, cfg, log, &j, *asJSON)
		}
		if fs.NArg() < 1 {
			return fmt.Errorf("usage: codebench run [--lang L] [--json] FILE [ARGS...] | codebench run [--json] --job JOB.json")
		}
		file := fs.Arg(0)
		code, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if *language == "" {
			l, ok := lang.Builtin().ByExtension(file)
			if !ok {
				return fmt.Errorf("cannot tell the language of %s from its extension; use --lang", filepath.Base(file))
			}
			*language = l.Name
		}
		j := &job.Job{ID: "run-" + fmt.Sprint(time.Now().UnixNano()), Language: *language, Code: string(code),
			Args: fs.Args()[1:], Runs: *runs, Compare: *compare, CompileFlags: strings.Fields(*flags)}
		if *limits != "" {
			if err := json.Unmarshal([]byte(*limits), &j.Limits); err != nil {
				return fmt.Errorf("--limits: %w", err)
			}
		}
		if *wallMS > 0 {
			j.Limits.WallMS = *wallMS
		}
		fs.Visit(func(f *flag.Flag) {
			if f.Name == "expected-output" {
				j.ExpectedOutput = expected
			}
		})
		if *stdinFile != "" {
			b, err := os.ReadFile(*stdinFile)
			if err != nil {
				return err
			}
			j.Stdin = string(b)
		}
		return runJob(ctx, cfg, log, j, *asJSON)
	}
}

// runJob runs one job in one fresh sandbox and prints its status.
func runJob(ctx context.Context, cfg config.Config, log *slog.Logger, j *job.Job, asJSON bool) error {
	if j.ID == "" {
		j.ID = "run-" + fmt.Sprint(time.Now().UnixNano())
	}
	e, err := openEnv(ctx, cfg, log, "r", cfg.VM.AllowTCG)
	if err != nil {
		return err
	}
	defer e.close(log)
	if err := j.Validate(e.policy); err != nil {
		fmt.Fprintln(os.Stderr, "codebench:", err)
		return exitError{exitInvalid}
	}
	log.Debug("booting", "env", e.describe())

	start := time.Now()
	bootCtx, cancel := context.WithTimeout(ctx, cfg.VM.BootLimit)
	inst, err := sandbox.Boot(bootCtx, e.driver, e.spec)
	cancel()
	if err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	out, errOut := untrusted.ForFile(os.Stdout), untrusted.ForFile(os.Stderr)
	var progress func(agentproto.Output)
	if j.Stream && !asJSON {
		progress = func(o agentproto.Output) {
			fmt.Fprint(os.Stdout, out(o.Stdout))
			fmt.Fprint(os.Stderr, errOut(o.Stderr))
		}
	}
	st := execute.Job(ctx, e.policy, inst, j, progress)
	if err := inst.Stop(ctx); err != nil {
		log.Warn("stop vm", "err", err)
	}
	total := time.Since(start)

	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	} else {
		if progress == nil {
			fmt.Fprint(os.Stdout, out(st.Stdout))
		}
		fmt.Fprint(os.Stderr, errOut(st.CompileOutput))
		if progress == nil {
			fmt.Fprint(os.Stderr, errOut(st.Stderr))
		}
		if st.Stdout != "" && st.Stdout[len(st.Stdout)-1] != '\n' {
			fmt.Fprintln(os.Stdout)
		}
		for i, ts := range st.Tests {
			fmt.Fprintf(os.Stderr, "test %d: %s %s %s\n", i+1, ts.Verdict, ts.Message, errOut(ts.CheckerMessage))
		}
		exit := "-"
		if st.ExitCode != nil {
			exit = fmt.Sprint(*st.ExitCode)
		}
		fmt.Fprintf(os.Stderr, "[%s] verdict=%s exit=%s boot=%s compile=%s run=%s total=%s %s\n",
			st.Status, st.Verdict, exit, inst.ReadyIn.Round(time.Millisecond),
			(time.Duration(st.CompileUS) * time.Microsecond).Round(time.Millisecond),
			(time.Duration(st.ExecDuration) * time.Microsecond).Round(time.Millisecond),
			total.Round(time.Millisecond), errOut(st.Message))
		if st.Error != "" {
			fmt.Fprintln(os.Stderr, "error:", errOut(st.Error))
		}
	}
	return exitFor(st)
}

func exitFor(st *job.Status) error {
	switch st.Verdict {
	case job.VerdictOK:
		return nil
	case job.VerdictCompileError:
		return exitError{exitCompileError}
	case job.VerdictTimeLimit:
		return exitError{exitTimeLimit}
	case job.VerdictRuntimeError, job.VerdictOutputLimit, job.VerdictMemoryLimit:
		if st.ExitCode != nil && *st.ExitCode != 0 {
			return exitError{*st.ExitCode}
		}
		return exitError{1}
	default:
		return exitError{exitInternal}
	}
}
