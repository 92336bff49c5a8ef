package provision_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/provision"
	"github.com/codebench/codebench/internal/template"
	"github.com/codebench/codebench/internal/testenv"
)

// TestMain lets the QEMU driver re-execute this test binary as its jail helper.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestRotationOnRealVMs: with a template due after one clone, the next
// sandboxes still come while the new template is built in the background,
// then come from the new one.
func TestRotationOnRealVMs(t *testing.T) {
	vm := testenv.NeedVM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tcfg := template.Config{Root: t.TempDir(), ImageHash: vm.Image.Manifest.Hash,
		Languages: []lang.Language{lang.Builtin()["python"]}, BootLimit: 3 * time.Minute}
	p, err := provision.New(ctx, vm.Driver, vm.Spec, tcfg, true, provision.Rotation{MaxClones: 1}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	first := p.Template()
	run := func(what string) {
		t.Helper()
		inst, err := p.Instance(ctx)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		defer inst.Stop(ctx)
		res, err := inst.Agent.Run(ctx, &agentproto.RunRequest{Language: "python", Code: "print(6*7)"}, nil)
		if err != nil || res.Stdout != "42\n" {
			t.Fatalf("%s: %v %+v", what, err, res)
		}
	}
	run("first clone") // due: the rebuild starts
	start := time.Now()
	run("clone during the rebuild")
	if p.Template() == first {
		t.Logf("a sandbox was served %s into the rebuild, from the old template", time.Since(start).Round(time.Millisecond))
	} else {
		t.Logf("the rebuild finished before the second clone")
	}
	for p.Template() == first {
		if ctx.Err() != nil {
			t.Fatal("the template was never replaced")
		}
		time.Sleep(100 * time.Millisecond)
	}
	next := p.Template()
	if next.Dir == first.Dir {
		t.Fatalf("same directory after the rebuild: %s", next.Dir)
	}
	run("clone of the new template")
	// The old generation is kept one rotation (another worker may clone it).
	if _, err := os.Stat(first.Dir); err != nil {
		t.Fatalf("previous generation removed at once: %v", err)
	}
}
