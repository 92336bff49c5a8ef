package job

import (
	"errors"
	"strings"
	"testing"

	"github.com/codebench/codebench/internal/agentproto"
)

// TestInteractiveVerdict: testlib's exits, the interactor's failure always
// the judge's, and whoever ended first deciding.
func TestInteractiveVerdict(t *testing.T) {
	prog := func(ph agentproto.Phase) agentproto.Phase { return ph }
	for _, tc := range []struct {
		name    string
		run     agentproto.Phase
		inter   agentproto.Phase
		in      agentproto.Interaction
		verdict string
		message string
	}{
		{"both fine", prog(agentproto.Phase{}), agentproto.Phase{}, agentproto.Interaction{}, VerdictOK, ""},
		{"rejected after a clean exit", agentproto.Phase{}, agentproto.Phase{ExitCode: 1}, agentproto.Interaction{}, VerdictWrongAnswer, "rejected"},
		{"presentation error", agentproto.Phase{}, agentproto.Phase{ExitCode: 2}, agentproto.Interaction{}, VerdictWrongAnswer, "presentation error"},
		{"too many questions: rejected first, then a broken pipe", agentproto.Phase{ExitCode: 141, Signal: "SIGPIPE"}, agentproto.Phase{ExitCode: 1},
			agentproto.Interaction{InteractorFirst: true}, VerdictWrongAnswer, "rejected"},
		{"rejected first, then killed while it hung", agentproto.Phase{ExitCode: 137, Signal: "SIGKILL"}, agentproto.Phase{ExitCode: 1},
			agentproto.Interaction{InteractorFirst: true}, VerdictWrongAnswer, "rejected"},
		{"the program never answers", agentproto.Phase{ExitCode: 137, Signal: "SIGKILL", TimedOut: true}, agentproto.Phase{ExitCode: 1},
			agentproto.Interaction{}, VerdictTimeLimit, "wall time"},
		{"the interactor never answers", agentproto.Phase{ExitCode: 137, Signal: "SIGKILL", TimedOut: true}, agentproto.Phase{ExitCode: 137, Signal: "SIGKILL", TimedOut: true},
			agentproto.Interaction{}, VerdictInternalError, "the interactor exceeded its wall time"},
		{"the interactor hangs after the program ended", agentproto.Phase{}, agentproto.Phase{ExitCode: 137, Signal: "SIGKILL", TimedOut: true},
			agentproto.Interaction{}, VerdictInternalError, "wall time"},
		{"exit 3", agentproto.Phase{}, agentproto.Phase{ExitCode: 3}, agentproto.Interaction{}, VerdictInternalError, "exit 3"},
		{"exit 3 first", agentproto.Phase{ExitCode: 137, Signal: "SIGKILL"}, agentproto.Phase{ExitCode: 3}, agentproto.Interaction{InteractorFirst: true}, VerdictInternalError, "exit 3"},
		{"exit 7", agentproto.Phase{}, agentproto.Phase{ExitCode: 7}, agentproto.Interaction{}, VerdictInternalError, "exit 7"},
		{"the program crashed first", agentproto.Phase{ExitCode: 139, Signal: "SIGSEGV"}, agentproto.Phase{ExitCode: 1}, agentproto.Interaction{}, VerdictRuntimeError, "SIGSEGV"},
		{"accepted, but the program exited 3", agentproto.Phase{ExitCode: 3}, agentproto.Phase{}, agentproto.Interaction{}, VerdictRuntimeError, "status 3"},
		{"accepted first, the program then hangs", agentproto.Phase{ExitCode: 137, Signal: "SIGKILL", TimedOut: true}, agentproto.Phase{},
			agentproto.Interaction{InteractorFirst: true}, VerdictTimeLimit, "wall time"},
		{"the program's memory", agentproto.Phase{ExitCode: 137, Signal: "SIGKILL", MemoryLimited: true}, agentproto.Phase{ExitCode: 1}, agentproto.Interaction{}, VerdictMemoryLimit, "memory"},
	} {
		tr := agentproto.TestResult{Phase: tc.run, Checker: &tc.inter, Interaction: &tc.in, CheckerMessage: "wrong guess"}
		lim := testPolicy.AgentLimits("c", Limits{})
		v, m := phaseVerdict(&tr.Phase, lim)
		v, m = interactiveVerdict(&tr, v, m)
		if v != tc.verdict || !strings.Contains(m, tc.message) {
			t.Errorf("%s: %s %q, want %s %q", tc.name, v, m, tc.verdict, tc.message)
		}
	}
}

// TestUnknownFieldsRefused: a field the worker does not know, top-level,
// in a test, the checker, the interactor or the limits, makes the job
// invalid, naming it; the seed's fields stay known.
func TestUnknownFieldsRefused(t *testing.T) {
	p := testPolicy
	for _, tc := range []struct{ body, want string }{
		{`{"id":"1","code":"x","interactr":{"language":"c","code":"x"},"tests":[{}]}`, `"interactr"`},
		{`{"id":"1","code":"x","tests":[{"stdin":"1"},{"stdn":"2"}]}`, `"stdn" in test 2`},
		{`{"id":"1","code":"x","tests":[{}],"checker":{"language":"c","code":"x","lang":"c"}}`, `"lang" in checker`},
		{`{"id":"1","code":"x","limits":{"wall":5}}`, `"wall" in limits`},
	} {
		_, err := Decode([]byte(tc.body), p)
		var inv *InvalidError
		if !errors.As(err, &inv) || !strings.Contains(inv.Reason, "unknown field "+tc.want) || inv.ID != "1" || inv.Malformed {
			t.Errorf("%s: %v", tc.body, err)
		}
	}
	if _, err := Decode([]byte(seedJob), p); err != nil {
		t.Fatalf("the seed's job: %v", err)
	}
	if _, err := Decode([]byte(`{"id":"1","code":"x","tests":[{}],"interactor":{"language":"c","code":"x"}}`), p); err != nil {
		t.Fatalf("an interactor: %v", err)
	}
	for _, body := range []string{`{"id":"1","code":"x","interactor":{"language":"c","code":"x"}}`,
		`{"id":"1","code":"x","tests":[{}],"interactor":{"language":"c","code":"x"},"checker":{"language":"c","code":"x"}}`,
		`{"id":"1","code":"x","tests":[{}],"interactor":{"language":"cobol","code":"x"}}`} {
		if _, err := Decode([]byte(body), p); err == nil {
			t.Errorf("accepted %s", body)
		}
	}
}
