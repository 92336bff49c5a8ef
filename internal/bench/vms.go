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

	"github.com/codebench/codebench/internal/cleanup"
	"github.com/codebench/codebench/internal/sandbox"
)

// Launch makes one ready VM (a cold boot or a restored clone).
type Launch func(ctx context.Context) (*sandbox.Instance, error)

// VMReport compares two ways of getting a ready VM.
type VMReport struct {
	Ready Summary `json:"ready"`  // start to agent ready
	PSSKB int64   `json:"pss_kb"` // median proportional set size of an idle VM's processes
	Alive int     `json:"alive"`  // VMs alive together when PSS was read
	// Errors counts starts that failed; the report is of the others. A
	// run in which every start failed is an error.
	Errors    int    `json:"errors"`
	LastError string `json:"last_error,omitempty"`
}

// MeasureVMs starts alive VMs one after another, rounds times, timing each to
// ready; once all of a round are up and idle it reads each one's PSS (the sum
// over its host processes), then stops them.
func MeasureVMs(ctx context.Context, name string, launch Launch, rounds, alive int) (VMReport, error) {
	var ready []time.Duration
	var pss []int64
	rep := VMReport{Alive: alive}
	for r := 0; r < rounds; r++ {
		var insts []*sandbox.Instance
		for i := 0; i < alive; i++ {
			inst, err := launch(ctx)
			if err != nil {
				rep.Errors++
				rep.LastError = err.Error()
				continue
			}
			insts = append(insts, inst)
			ready = append(ready, inst.ReadyIn)
		}
		time.Sleep(time.Second) // let the guests go idle
		for _, i := range insts {
			if kb, err := PSSOf(sandbox.PIDs(i.VM)); err == nil {
				pss = append(pss, kb)
			}
		}
		for _, i := range insts {
			_ = cleanup.Run(ctx, i.Stop)
		}
	}
	if len(ready) == 0 {
		return rep, fmt.Errorf("%s: all %d starts failed, the last: %s", name, rep.Errors, rep.LastError)
	}
	rep.Ready = Summarize(name, ready)
	if len(pss) > 0 {
		slices.Sort(pss)
		rep.PSSKB = pss[len(pss)/2]
	}
	return rep, nil
}

// PSSOf sums the PSS of pids; an empty list is an error.
func PSSOf(pids []int) (int64, error) {
	if len(pids) == 0 {
		return 0, errors.New("no processes to measure")
	}
	var total int64
	for _, p := range pids {
		kb, err := PSS(p)
		if err != nil {
			return 0, err
		}
		total += kb
	}
	return total, nil
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
