package template_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/template"
	"github.com/codebench/codebench/internal/testenv"
)

func setup(t *testing.T) (*testenv.VM, template.Config) {
	t.Helper()
	vm := testenv.NeedVM(t)
	// Two languages keep the four template builds of this test short; the
	// worker tests warm up every language of the image.
	var langs []lang.Language
	for _, n := range []string{"c", "python"} {
		if vm.Image.HasLanguage(n) {
			langs = append(langs, lang.Builtin()[n])
		}
	}
	return vm, template.Config{
		Root:      t.TempDir(),
		ImageHash: vm.Image.Manifest.Hash,
		Spec:      vm.Spec,
		Version:   "test " + vm.Driver.Name(),
		Languages: langs,
		BootLimit: 2 * time.Minute,
	}
}

func TestTemplateLifecycle(t *testing.T) {
	vm, cfg := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	log := testenv.Logger(t)

	first, err := template.Ensure(ctx, vm.Driver, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("template built in %d ms", first.Meta.BuildMS)

	t.Run("reused", func(t *testing.T) {
		again, err := template.Ensure(ctx, vm.Driver, cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		if again.Dir != first.Dir || again.Meta.Created != first.Meta.Created {
			t.Fatalf("rebuilt instead of reused: %+v vs %+v", again.Meta, first.Meta)
		}
	})

	t.Run("clones are unique and work", func(t *testing.T) {
		var outs []string
		for i := 0; i < 2; i++ {
			inst, err := first.Clone(ctx, vm.Driver, vm.Spec)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("clone %d ready in %s", i, inst.ReadyIn)
			res, err := inst.Agent.Run(ctx, &agentproto.RunRequest{Language: "python",
				Code: "import os, time\nprint(os.urandom(16).hex(), abs(time.time() - " + nowSeconds() + ") < 120, sorted(os.listdir('/job')))"}, nil)
			_ = inst.Stop(ctx)
			if err != nil {
				t.Fatal(err)
			}
			outs = append(outs, res.Stdout)
			fields := strings.Fields(res.Stdout)
			if len(fields) < 3 || fields[1] != "True" {
				t.Fatalf("clone %d: clock not corrected or bad output: %q (stderr %q)", i, res.Stdout, res.Stderr)
			}
			// Only this run's own directory: the warm-up left nothing.
			if !strings.Contains(res.Stdout, "['run") || strings.Count(res.Stdout, "run") != 1 {
				t.Fatalf("clone %d: job dir not empty at start: %q", i, res.Stdout)
			}
		}
		if strings.Fields(outs[0])[0] == strings.Fields(outs[1])[0] {
			t.Fatalf("two clones produced the same /dev/urandom bytes: %q", outs)
		}
		if n := testenv.QEMUProcesses(vm.RunDir); n != 0 {
			t.Fatalf("%d VM processes left", n)
		}
	})

	t.Run("rebuild makes a new generation", func(t *testing.T) {
		cur, err := template.Ensure(ctx, vm.Driver, cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		next, err := template.Rebuild(ctx, vm.Driver, cfg, cur, log)
		if err != nil {
			t.Fatal(err)
		}
		if next.Dir == cur.Dir || next.Meta.StateSHA256 == cur.Meta.StateSHA256 {
			t.Fatalf("rebuild gave the same template: %s", next.Dir)
		}
		// Another worker asking to replace the same old generation gets
		// the new one, not a third build.
		again, err := template.Rebuild(ctx, vm.Driver, cfg, cur, log)
		if err != nil || again.Dir != next.Dir {
			t.Fatalf("second rebuild of the old generation: %v %v", again, err)
		}
		if latest, err := template.Ensure(ctx, vm.Driver, cfg, log); err != nil || latest.Dir != next.Dir {
			t.Fatalf("Ensure after a rebuild: %v %v", latest, err)
		}
		// Both still clone until the old one is pruned.
		for _, tpl := range []*template.Template{cur, next} {
			inst, err := tpl.Clone(ctx, vm.Driver, vm.Spec)
			if err != nil {
				t.Fatalf("clone of %s: %v", tpl.Dir, err)
			}
			_ = inst.Stop(ctx)
		}
		if err := template.Prune(cfg, next); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(cur.Dir); !os.IsNotExist(err) {
			t.Fatalf("pruned generation still there: %v", err)
		}
		if _, err := os.Stat(next.Dir); err != nil {
			t.Fatalf("kept generation gone: %v", err)
		}
	})

	t.Run("image change invalidates", func(t *testing.T) {
		other := cfg
		other.ImageHash = strings.Repeat("0", 64)
		if other.Key() == cfg.Key() {
			t.Fatal("key ignores the image")
		}
		other.Version = cfg.Version + " other"
		if other.Key() == cfg.Key() {
			t.Fatal("key ignores the VMM version")
		}
	})

	for _, tc := range []struct {
		name   string
		damage func(dir string) error
	}{
		{"corrupt state is rebuilt", func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "state"), []byte("garbage"), 0o644)
		}},
		{"partial template is rebuilt", func(dir string) error { return os.Remove(filepath.Join(dir, "template.json")) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur, err := template.Ensure(ctx, vm.Driver, cfg, log)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.damage(cur.Dir); err != nil {
				t.Fatal(err)
			}
			if _, err := template.Load(cur.Dir, cfg.Key()); err == nil {
				t.Fatal("damaged template loads")
			}
			rebuilt, err := template.Ensure(ctx, vm.Driver, cfg, log)
			if err != nil {
				t.Fatal(err)
			}
			if rebuilt.Meta.StateSHA256 == "" || rebuilt.Meta.Created == "" {
				t.Fatalf("rebuilt meta %+v", rebuilt.Meta)
			}
			inst, err := rebuilt.Clone(ctx, vm.Driver, vm.Spec)
			if err != nil {
				t.Fatalf("clone of rebuilt template: %v", err)
			}
			_ = inst.Stop(ctx)
		})
	}
}

func nowSeconds() string { return strconv.FormatInt(time.Now().Unix(), 10) }
