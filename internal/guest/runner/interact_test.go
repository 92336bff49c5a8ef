package runner

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
)

func interactorSource(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "worker", "testdata", "interactive", "interactor.c"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestInteractorOnHost: the runner wires a program and its interactor
// through itself, testlib's arguments (the test's input, a message file,
// the answer), and reports who spoke last and who ended first.
func TestInteractorOnHost(t *testing.T) {
	r := newRunner(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	inter := &agentproto.Checker{Language: "c", Code: interactorSource(t)}
	guess := "lo, hi = 1, 10**9\nwhile lo < hi:\n    mid = (lo + hi) // 2\n    print('?', mid, flush=True)\n    r = input()\n    if r == 'equal':\n        lo = hi = mid\n    elif r == 'less':\n        hi = mid - 1\n    else:\n        lo = mid + 1\nprint('!', lo, flush=True)\n"
	answer := "7\n"
	res, err := r.Run(ctx, &agentproto.RunRequest{Language: "python", Code: guess, Interactor: inter,
		Tests: []agentproto.TestCase{{Stdin: "7 30", ExpectedOutput: &answer}, {Stdin: "999999999 30"}}}, nil)
	if err != nil || !res.CheckerCompiled || len(res.Tests) != 2 {
		t.Fatalf("%v %+v", err, res)
	}
	for i, tr := range res.Tests {
		if tr.ExitCode != 0 || tr.Checker == nil || tr.Checker.ExitCode != 0 || !strings.HasPrefix(tr.CheckerMessage, "found in") || tr.Interaction == nil {
			t.Fatalf("test %d: %+v %+v %q", i, tr.Phase, tr.Interaction, tr.CheckerMessage)
		}
	}

	// Too many questions: the interactor ends first, with 1. The program
	// takes a moment to die of the end of its input, so that which ended
	// first is not a matter of which wait returned first on a busy machine
	// (a program that dies at once of it is that race: see issue 31's
	// closing note).
	linear := "import itertools, time\nfor x in itertools.count(1):\n    print('?', x, flush=True)\n    try:\n        input()\n    except EOFError:\n        time.sleep(0.3)\n        raise\n"
	res, err = r.Run(ctx, &agentproto.RunRequest{Language: "python", Code: linear, Interactor: inter,
		Tests: []agentproto.TestCase{{Stdin: "123456 30"}}}, nil)
	if err != nil || len(res.Tests) != 1 {
		t.Fatalf("%v %+v", err, res)
	}
	tr := res.Tests[0]
	if tr.Checker.ExitCode != 1 || !tr.Interaction.InteractorFirst || !strings.Contains(tr.CheckerMessage, "more than 30") || tr.ExitCode == 0 {
		t.Fatalf("too many: %+v %+v %+v %q", tr.Phase, tr.Checker, tr.Interaction, tr.CheckerMessage)
	}

	// A program that never asks: killed at its wall limit, before its
	// interactor (which then sees the end of its input) ended.
	res, err = r.Run(ctx, &agentproto.RunRequest{Language: "python", Code: "import time\ntime.sleep(60)", Interactor: inter,
		Limits: agentproto.Limits{WallMS: 1000}, Tests: []agentproto.TestCase{{Stdin: "5 30"}}}, nil)
	if err != nil || len(res.Tests) != 1 || !res.Tests[0].TimedOut || res.Tests[0].Interaction.InteractorFirst || res.Tests[0].Checker.ExitCode != 1 {
		t.Fatalf("silent: %v %+v", err, res.Tests)
	}

	// Refused before anything runs: an interactor without tests, or with a
	// checker.
	for _, req := range []agentproto.RunRequest{
		{Language: "python", Code: "x", Interactor: inter},
		{Language: "python", Code: "x", Interactor: inter, Checker: inter, Tests: []agentproto.TestCase{{}}},
	} {
		if _, err := r.Run(ctx, &req, nil); err == nil {
			t.Fatalf("accepted %+v", req)
		}
	}
}
