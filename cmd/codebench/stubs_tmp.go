package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/codebench/codebench/internal/config"
)

func runCmd(ctx context.Context, cfg config.Config, log *slog.Logger, args []string) error {
	return errors.New("todo")
}
func doctorCmd(ctx context.Context, cfg config.Config, args []string) error { return errors.New("todo") }
func workerCmd(ctx context.Context, stop func(), cfg config.Config, log *slog.Logger, args []string) error {
	return errors.New("todo")
}
func submitCmd(ctx context.Context, cfg config.Config, args []string) error { return errors.New("todo") }
