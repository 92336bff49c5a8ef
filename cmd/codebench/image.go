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
	langs := languagesFlag(fs)
	return func(ctx context.Context, cfg config.Config, log *slog.Logger, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("image build takes flags only, not %q", args)
		}
		table, key, err := profileOf(cfg, *langs)
		if err != nil {
			return err
		}
		img, err := imagebuild.Build(ctx, imagebuild.Options{
			DataDir: cfg.DataDir, AgentPath: *agent, Mirror: cfg.Mirror,
			Languages: table, Profile: key, Progress: os.Stdout,
		})
		if err != nil {
			return err
		}
		fmt.Printf("image %s\n  dir: %s\n  kernel: %s\n  languages: %s\n", img.Manifest.Hash, img.Dir,
			img.Manifest.KernelRelease, strings.Join(img.LanguageNames(), ", "))
		return nil
	}
}

// imagePackagesCmd is "image packages": the Debian packages a language
// profile's image installs, one line (a benchmark installs them on the
// host for its native baseline).
func imagePackagesCmd(fs *flag.FlagSet) commandFunc {
	langs := languagesFlag(fs)
	return func(ctx context.Context, cfg config.Config, log *slog.Logger, args []string) error {
		table, _, err := profileOf(cfg, *langs)
		if err != nil {
			return err
		}
		fmt.Println(strings.Join(table.Packages(), " "))
		return nil
	}
}

// languagesFlag is the image commands' --languages.
func languagesFlag(fs *flag.FlagSet) *string {
	return fs.String("languages", "", `language profile: "default", "all" or a comma-separated list (default: the CODEBENCH_LANGUAGES setting)`)
}

// profileOf is the language profile a command's --languages names, else
// the configuration's, and its key.
func profileOf(cfg config.Config, flagValue string) (lang.Table, string, error) {
	spec := cfg.ImageLanguages
	if flagValue != "" {
		spec = flagValue
	}
	return lang.Builtin().Profile(spec)
}

// defaultAgentPath is codebench-agent next to this executable.
func defaultAgentPath() string {
	exe, err := os.Executable()
	if err != nil {
		return "codebench-agent"
	}
	return filepath.Join(filepath.Dir(exe), "codebench-agent")
}
