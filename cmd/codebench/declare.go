package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/codebench/codebench/internal/broker"
	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/queue"
)

// declareCmd declares the broker topology the worker uses and exits, so that
// a broker set up before any worker ran already keeps published jobs.
func declareCmd(*flag.FlagSet) commandFunc { return declare }

func declare(ctx context.Context, cfg config.Config, _ *slog.Logger, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("declare takes no arguments; it is configured by the environment, --config and flags")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := broker.DeclareTopology(ctx, queueConfig(cfg)); err != nil {
		return err
	}
	fmt.Printf("declared %s and %s (topology %s, quorum %v)\n", queue.JobsQueue, queue.DeadQueue, cfg.Worker.Topology, cfg.Worker.Quorum)
	return nil
}
