package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/codebench/codebench/internal/config"
	imagebuild "github.com/codebench/codebench/internal/image/build"
	"github.com/codebench/codebench/internal/lang"
)

// imageBuildCmd is "image build".
func imageBuildCmd(fs *flag.FlagSet) commandFunc {
	agent := fs.String("agent", defaultAgentPath(), "static codebench-agent binary to put in the image")
	langs := fs.String("languages", "", "comma-separated subset of languages (default: all)")
	return func(ctx context.Context, cfg config.Config, log *slog.Logger, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("image build takes flags only, not %q", args)
		}
		table := lang.Builtin()
		if *langs != "" {
			sub := lang.Table{}
			for _, n := range strings.Split(*langs, ",") {
				l, ok := table[strings.TrimSpace(n)]
				if !ok {
					return fmt.Errorf("unknown language %q (have %s)", n, strings.Join(table.Names(), ", "))
				}
				sub[l.Name] = l
			}
			table = sub
		}
		img, err := imagebuild.Build(ctx, imagebuild.Options{
			DataDir: cfg.DataDir, AgentPath: *agent, Mirror: cfg.Mirror,
			Languages: table, Progress: os.Stdout,
		})
		if err != nil {
			return err
		}
		fmt.Printf("image %s\n  dir: %s\n  kernel: %s\n  languages: %s\n", img.Manifest.Hash, img.Dir,
			img.Manifest.KernelRelease, strings.Join(img.LanguageNames(), ", "))
		return nil
	}
}

// defaultAgentPath is codebench-agent next to this executable.
func defaultAgentPath() string {
	exe, err := os.Executable()
	if err != nil {
		return "codebench-agent"
	}
	return filepath.Join(filepath.Dir(exe), "codebench-agent")
}
