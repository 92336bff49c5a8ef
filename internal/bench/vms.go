package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/sandbox"
)

// Launch makes one ready VM (a cold boot or a restored clone).
type Launch func(ctx context.Context) (*sandbox.Instance, error)

// VMReport compares two ways of getting a ready VM.
type VMReport struct {
	Ready  Summary `json:"ready"`  // start to agent ready
	PSSKB  int64   `json:"pss_kb"` // median proportional set size of an idle VM's VMM process
	Alive  int     `json:"alive"`  // VMs alive together when PSS was read
	Errors int     `json:"errors"`
}

// MeasureVMs starts alive VMs one after another, rounds times, timing each to
// ready; once all of a round are up and idle it reads each VMM's PSS, then
// stops them.
func MeasureVMs(ctx context.Context, name string, launch Launch, rounds, alive int) (VMReport, error) {
	var ready []time.Duration
	var pss []int64
	for r := 0; r < rounds; r++ {
		var insts []*sandbox.Instance
		stopAll := func() {
			for _, i := range insts {
				_ = i.Stop(context.WithoutCancel(ctx))
			}
		}
		for i := 0; i < alive; i++ {
			inst, err := launch(ctx)
			if err != nil {
				stopAll()
				return VMReport{}, fmt.Errorf("%s: %w", name, err)
			}
			insts = append(insts, inst)
			ready = append(ready, inst.BootTime)
		}
		time.Sleep(time.Second) // let the guests go idle
		for _, i := range insts {
			if p, ok := i.VM.(interface{ PID() int }); ok {
				if kb, err := PSS(p.PID()); err == nil {
					pss = append(pss, kb)
				}
			}
		}
		stopAll()
	}
	rep := VMReport{Ready: Summarize(name, ready), Alive: alive}
	if len(pss) > 0 {
		slices.Sort(pss)
		rep.PSSKB = pss[len(pss)/2]
	}
	return rep, nil
}

// PSS reads a process's proportional set size in KiB: its private memory plus
// its share of pages it shares (a clone shares the template's untouched RAM
// with every other clone through the page cache).
func PSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no Pss in smaps_rollup")
}
