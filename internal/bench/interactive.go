package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/execute"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/pool"
	"github.com/codebench/codebench/internal/provision"
)

// The interactive benchmark's programs: guess a number in [1, 1e9] with 30
// questions (a C++ program, a C++ interactor, testlib's arguments), and an
// echo of N question/answer rounds.
const (
	GuessCpp = `#include <cstdio>
#include <cstring>
int main() {
    long lo = 1, hi = 1000000000;
    char reply[16];
    while (lo < hi) {
        long mid = lo + (hi - lo) / 2;
        printf("? %ld\n", mid);
        fflush(stdout);
        if (scanf("%15s", reply) != 1) return 1;
        if (!strcmp(reply, "equal")) { lo = hi = mid; break; }
        if (!strcmp(reply, "less")) hi = mid - 1; else lo = mid + 1;
    }
    printf("! %ld\n", lo);
    fflush(stdout);
    return 0;
}
`
	GuessInteractorCpp = `#include <cstdio>
#include <cstdlib>
#include <cstring>
static FILE *msg;
static void verdict(int code, const char *text, long a) { fprintf(msg, text, a); fputc('\n', msg); fclose(msg); exit(code); }
int main(int argc, char **argv) {
    FILE *in = fopen(argv[1], "r");
    msg = fopen(argv[2], "w");
    long secret, limit, queries = 0, x;
    char op[4];
    if (!in || !msg || fscanf(in, "%ld %ld", &secret, &limit) != 2) return 3;
    for (;;) {
        if (scanf("%3s %ld", op, &x) != 2) verdict(1, "unexpected end after %ld queries", queries);
        if (!strcmp(op, "!")) { if (x != secret) verdict(1, "wrong guess %ld", x); verdict(0, "found in %ld queries", queries); }
        if (strcmp(op, "?")) verdict(2, "expected ? or ! at query %ld", queries + 1);
        if (++queries > limit) verdict(1, "more than %ld queries", limit);
        puts(secret < x ? "less" : secret > x ? "greater" : "equal");
        fflush(stdout);
    }
}
`
	// GuessCheckerCpp judges the same program on a plain test: its input
	// is the answers to its questions, written ahead; the last line must
	// name the secret (the expected output).
	GuessCheckerCpp = `#include <cstdio>
#include <cstring>
int main(int argc, char **argv) {
    FILE *exp = fopen(argv[2], "r"), *got = fopen(argv[3], "r");
    char want[64], line[64], last[64] = "";
    if (!exp || !got || !fgets(want, sizeof want, exp)) return 3;
    while (fgets(line, sizeof line, got)) strcpy(last, line);
    if (strcmp(last, want)) { puts("wrong final answer"); return 1; }
    puts("ok");
    return 0;
}
`
	// EchoCpp asks N questions ("q i") and reads each answer; EchoInteractorCpp
	// answers each ("a i") and accepts after N.
	EchoCpp = `#include <cstdio>
int main(int argc, char **argv) {
    long n; if (scanf("%ld", &n) != 1) return 1;
    long a;
    for (long i = 0; i < n; i++) {
        printf("q %ld\n", i);
        fflush(stdout);
        if (scanf(" a %ld", &a) != 1 || a != i) return 2;
    }
    return 0;
}
`
	EchoInteractorCpp = `#include <cstdio>
int main(int argc, char **argv) {
    FILE *in = fopen(argv[1], "r"), *msg = fopen(argv[2], "w");
    long n, q;
    if (!in || !msg || fscanf(in, "%ld", &n) != 1) return 3;
    printf("%ld\n", n);
    fflush(stdout);
    for (long i = 0; i < n; i++) {
        if (scanf(" q %ld", &q) != 1 || q != i) { fprintf(msg, "bad question %ld\n", i); return 1; }
        printf("a %ld\n", q);
        fflush(stdout);
    }
    fprintf(msg, "%ld rounds\n", n);
    return 0;
}
`
)

// echoFloor is the echo pair joined by pipes inside one program (it forks
// both), run in a sandbox: gVisor's own cost of a round, with no agent in
// the way. It prints the wall time of rounds and of one round, in us.
func echoFloor(rounds int) string {
	prog := strings.Replace(EchoCpp, "int main(", "int prog_main(", 1)
	inter := strings.Replace(EchoInteractorCpp, "int main(", "int inter_main(", 1)
	return "#include <cstdio>\n#include <unistd.h>\n#include <sys/wait.h>\n#include <time.h>\n" + prog + inter + `
static long now_us() { timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000L + t.tv_nsec / 1000; }
static long run(long n) {
    FILE *f = fopen("in.txt", "w"); fprintf(f, "%ld", n); fclose(f);
    int a[2], b[2];
    if (pipe(a) || pipe(b)) return -1;
    long t0 = now_us();
    if (!fork()) { dup2(b[0], 0); dup2(a[1], 1); close(a[0]); close(a[1]); close(b[0]); close(b[1]);
        char *argv[] = {(char *)"i", (char *)"in.txt", (char *)"msg.txt", 0}; _exit(inter_main(3, argv)); }
    pid_t p = fork();
    if (!p) { dup2(a[0], 0); dup2(b[1], 1); close(a[0]); close(a[1]); close(b[0]); close(b[1]); _exit(prog_main(1, 0)); }
    close(a[0]); close(a[1]); close(b[0]); close(b[1]);
    int st; waitpid(p, &st, 0);
    long t = now_us() - t0;
    while (wait(0) > 0) {}
    return st == 0 ? t : -1;
}
int main() { long many = run(` + fmt.Sprint(rounds) + `), one = run(1); printf("%ld %ld\n", many, one); return many < 0 || one < 0; }
`
}

// guessReplies are the answers the guessing program hears for secret: the
// plain test's input.
func guessReplies(secret int64) string {
	var b strings.Builder
	lo, hi := int64(1), int64(1_000_000_000)
	for lo < hi {
		mid := lo + (hi-lo)/2
		switch {
		case secret == mid:
			b.WriteString("equal\n")
			lo, hi = mid, mid
		case secret < mid:
			b.WriteString("less\n")
			hi = mid - 1
		default:
			b.WriteString("greater\n")
			lo = mid + 1
		}
	}
	return b.String()
}

// InteractiveReport is the interactive benchmark's result.
type InteractiveReport struct {
	N int `json:"n"`
	// Guess: the whole job (compile the program and its judge, one test),
	// through a pool: with the interactor vs on a plain test with a checker.
	GuessInteractive Summary `json:"guess_interactive"`
	GuessChecker     Summary `json:"guess_checker"`
	// Echo: the program's wall time for Rounds question/answer rounds and
	// for one, in the sandbox; and the same two programs natively,
	// connected by pipes.
	Rounds     int     `json:"rounds"`
	EchoMany   Summary `json:"echo_many"`
	EchoOne    Summary `json:"echo_one"`
	NativeMany Summary `json:"native_many"`
	NativeOne  Summary `json:"native_one"`
	// FloorMany and FloorOne: the same pair forked by one program inside
	// a sandbox, joined by pipes directly (gVisor's own floor).
	FloorMany Summary `json:"floor_many"`
	FloorOne  Summary `json:"floor_one"`
}

// MeasureInteractive runs the interactive benchmark: n jobs of each kind,
// one sandbox each, one at a time.
func MeasureInteractive(ctx context.Context, prov *provision.Provisioner, policy job.Policy, n, rounds int) (*InteractiveReport, error) {
	p := pool.New(pool.Config{Size: 1, MaxBoots: 1}, prov.Provision, quietLog(), nil)
	p.Start()
	defer p.Stop()
	one := func(j *job.Job) (*job.Status, time.Duration, error) {
		start := time.Now()
		sb, err := p.Take(ctx)
		if err != nil {
			return nil, 0, err
		}
		st := execute.Job(ctx, policy, sb, j, nil)
		took := time.Since(start)
		_ = sb.Stop(ctx)
		if st.Verdict != job.VerdictOK {
			return nil, 0, fmt.Errorf("job %s: %s %s %s", j.ID, st.Verdict, st.Message, st.Error)
		}
		return st, took, nil
	}
	const secret = 123456789
	answer := fmt.Sprintf("! %d\n", secret)
	inter := &job.Checker{Language: "cpp", Code: GuessInteractorCpp}
	r := &InteractiveReport{N: n, Rounds: rounds}
	var gi, gc, em, eo, fm, fo []time.Duration
	for i := range n {
		_, took, err := one(&job.Job{ID: fmt.Sprint("bench-guess-i-", i), Language: "cpp", Code: GuessCpp, Interactor: inter,
			Tests: []job.Test{{Stdin: fmt.Sprintf("%d 30", secret)}}})
		if err != nil {
			return nil, err
		}
		gi = append(gi, took)
		_, took, err = one(&job.Job{ID: fmt.Sprint("bench-guess-c-", i), Language: "cpp", Code: GuessCpp,
			Checker: &job.Checker{Language: "cpp", Code: GuessCheckerCpp},
			Tests:   []job.Test{{Stdin: guessReplies(secret), ExpectedOutput: &answer}}})
		if err != nil {
			return nil, err
		}
		gc = append(gc, took)
		// One job, two tests: rounds and one round, the program's wall.
		st, _, err := one(&job.Job{ID: fmt.Sprint("bench-echo-", i), Language: "cpp", Code: EchoCpp,
			Interactor: &job.Checker{Language: "cpp", Code: EchoInteractorCpp},
			Tests:      []job.Test{{Stdin: fmt.Sprint(rounds)}, {Stdin: "1"}}})
		if err != nil {
			return nil, err
		}
		em = append(em, time.Duration(st.Tests[0].ExecDuration)*time.Microsecond)
		eo = append(eo, time.Duration(st.Tests[1].ExecDuration)*time.Microsecond)
		st, _, err = one(&job.Job{ID: fmt.Sprint("bench-floor-", i), Language: "cpp", Code: echoFloor(rounds), Limits: job.Limits{WallMS: 30_000, CPUMS: 20_000}})
		if err != nil {
			return nil, err
		}
		var many, single int64
		if _, err := fmt.Sscan(st.Stdout, &many, &single); err != nil {
			return nil, fmt.Errorf("floor printed %q", st.Stdout)
		}
		fm, fo = append(fm, time.Duration(many)*time.Microsecond), append(fo, time.Duration(single)*time.Microsecond)
	}
	r.FloorMany, r.FloorOne = Summarize("floor, many", fm), Summarize("floor, one", fo)
	r.GuessInteractive, r.GuessChecker = Summarize("guess, interactor", gi), Summarize("guess, checker", gc)
	r.EchoMany, r.EchoOne = Summarize("echo, many rounds", em), Summarize("echo, one round", eo)
	var err error
	r.NativeMany, r.NativeOne, err = nativeEcho(ctx, n, rounds)
	return r, err
}

// nativeEcho runs the echo pair natively, connected by pipes, with
// Debian's g++ (the guest's compiler): the program's wall time for rounds
// and for one round.
func nativeEcho(ctx context.Context, n, rounds int) (many, one Summary, err error) {
	gxx := nativeCommand("g++")
	if gxx == "" {
		return Summary{}, Summary{}, nil
	}
	dir, err := os.MkdirTemp("", "codebench-echo-")
	if err != nil {
		return Summary{}, Summary{}, err
	}
	defer os.RemoveAll(dir)
	for name, src := range map[string]string{"echo": EchoCpp, "inter": EchoInteractorCpp} {
		if err := os.WriteFile(filepath.Join(dir, name+".cpp"), []byte(src), 0o644); err != nil {
			return Summary{}, Summary{}, err
		}
		if out, err := exec.CommandContext(ctx, gxx, "-std=gnu++17", "-o", filepath.Join(dir, name), filepath.Join(dir, name+".cpp")).CombinedOutput(); err != nil {
			return Summary{}, Summary{}, fmt.Errorf("g++: %w: %s", err, out)
		}
	}
	run := func(k int) (time.Duration, error) {
		in := filepath.Join(dir, "in.txt")
		if err := os.WriteFile(in, []byte(fmt.Sprint(k)), 0o644); err != nil {
			return 0, err
		}
		pr, iw, err := os.Pipe()
		if err != nil {
			return 0, err
		}
		ir, pw, err := os.Pipe()
		if err != nil {
			return 0, err
		}
		prog := exec.CommandContext(ctx, filepath.Join(dir, "echo"))
		prog.Stdin, prog.Stdout = pr, pw
		inter := exec.CommandContext(ctx, filepath.Join(dir, "inter"), in, filepath.Join(dir, "msg.txt"))
		inter.Stdin, inter.Stdout = ir, iw
		if err := inter.Start(); err != nil {
			return 0, err
		}
		start := time.Now()
		if err := prog.Start(); err != nil {
			return 0, err
		}
		for _, f := range []*os.File{pr, iw, ir, pw} {
			f.Close()
		}
		perr := prog.Wait()
		took := time.Since(start)
		if err := inter.Wait(); err != nil || perr != nil {
			return 0, fmt.Errorf("native echo: %v %v", perr, err)
		}
		return took, nil
	}
	var m, o []time.Duration
	for range n {
		t, err := run(rounds)
		if err != nil {
			return Summary{}, Summary{}, err
		}
		m = append(m, t)
		if t, err = run(1); err != nil {
			return Summary{}, Summary{}, err
		}
		o = append(o, t)
	}
	return Summarize("native echo, many", m), Summarize("native echo, one", o), nil
}

// String prints the report with its targets.
func (r *InteractiveReport) String() string {
	var b strings.Builder
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
	met := func(ok bool) string {
		if ok {
			return "MET"
		}
		return "MISSED"
	}
	ratio := float64(r.GuessInteractive.P50) / float64(r.GuessChecker.P50)
	fmt.Fprintf(&b, "guess the number (C++ program and judge, one test, whole job through a pool, %d jobs each):\n", r.N)
	fmt.Fprintf(&b, "  with the interactor p50 %s (p90 %s); plain test with a checker p50 %s (p90 %s): %.2fx  target <= 1.2x: %s\n",
		ms(r.GuessInteractive.P50), ms(r.GuessInteractive.P90), ms(r.GuessChecker.P50), ms(r.GuessChecker.P90), ratio, met(ratio <= 1.2))
	extra := r.EchoMany.P50 - r.EchoOne.P50
	nextra := r.NativeMany.P50 - r.NativeOne.P50
	fmt.Fprintf(&b, "%d question/answer rounds (the program's wall time in the test):\n", r.Rounds)
	fmt.Fprintf(&b, "  sandbox: %s for %d rounds, %s for 1: %s more, %.1f us a round  target <= 500 ms more: %s\n",
		ms(r.EchoMany.P50), r.Rounds, ms(r.EchoOne.P50), ms(extra), float64(extra)/float64(time.Microsecond)/float64(r.Rounds-1), met(extra <= 500*time.Millisecond))
	fextra := r.FloorMany.P50 - r.FloorOne.P50
	fmt.Fprintf(&b, "  gVisor's own (the pair forked by one program in a sandbox, joined directly): %s for %d rounds, %s for 1: %.1f us a round; the job's %.2fx that\n",
		ms(r.FloorMany.P50), r.Rounds, ms(r.FloorOne.P50), float64(fextra)/float64(time.Microsecond)/float64(r.Rounds-1), float64(extra)/float64(max(fextra, 1)))
	if r.NativeMany.N > 0 {
		fmt.Fprintf(&b, "  native (the same two programs, g++, connected by pipes): %s for %d rounds, %s for 1: %.1f us a round; sandbox %.1fx native\n",
			ms(r.NativeMany.P50), r.Rounds, ms(r.NativeOne.P50), float64(nextra)/float64(time.Microsecond)/float64(r.Rounds-1), float64(extra)/float64(max(nextra, 1)))
	}
	return b.String()
}
