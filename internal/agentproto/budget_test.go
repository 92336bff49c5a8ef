package agentproto

import "testing"

// TestWallBudgetMS: every compile and every run at its wall limit; a
// checker doubles both; an interactor runs beside the program, so a test
// costs the interactor's wall (the program's and the margin).
func TestWallBudgetMS(t *testing.T) {
	lim := Limits{WallMS: 1000, CompileWallMS: 5000}
	tests := []TestCase{{}, {}, {}}
	for _, tc := range []struct {
		req  RunRequest
		want int64
	}{
		{RunRequest{Limits: lim}, 5000 + 1000},
		{RunRequest{Limits: lim, Runs: 3}, 5000 + 3*1000},
		{RunRequest{Limits: lim, Tests: tests, Checker: &Checker{}}, 2*5000 + 6*1000},
		{RunRequest{Limits: lim, Tests: tests, Interactor: &Checker{}}, 2*5000 + 3*(1000+InteractorMarginMS)},
	} {
		if got := WallBudgetMS(&tc.req); got != tc.want {
			t.Errorf("%+v: %d, want %d", tc.req, got, tc.want)
		}
	}
}

// TestCheckResultInteraction: an answer with an interaction where no
// interactor was asked is a hostile or broken guest's.
func TestCheckResultInteraction(t *testing.T) {
	req := &RunRequest{Tests: []TestCase{{}}}
	res := &RunResult{Tests: []TestResult{{Interaction: &Interaction{InteractorFirst: true}}}}
	if err := CheckResult(req, res); err == nil {
		t.Fatal("accepted")
	}
	req.Interactor = &Checker{}
	if err := CheckResult(req, res); err != nil {
		t.Fatal(err)
	}
}
