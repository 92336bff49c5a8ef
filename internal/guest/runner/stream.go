package runner

import (
	"sync"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
)

// streamer sends a running program's new output to progress, at most once
// per agentproto.StreamEvery and only when there is some, in order (one
// sequence for the whole request).
type streamer struct {
	progress Progress // nil: no streaming
	seq      int
}

// phase runs run (a run or test phase writing into out) and streams out's
// new output while it runs, the rest once it ended.
func (s *streamer) phase(test int, out *output, run func() *agentproto.Phase) *agentproto.Phase {
	if s.progress == nil {
		return run()
	}
	var offs [2]int
	flush := func() {
		var text [2]string
		for i := range text {
			text[i], offs[i] = out.since(i, offs[i])
		}
		if text[0] == "" && text[1] == "" {
			return
		}
		s.seq++
		s.progress(agentproto.Output{Test: test, Seq: s.seq, Stdout: text[0], Stderr: text[1]})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(agentproto.StreamEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				flush()
			}
		}
	})
	ph := run()
	close(stop)
	wg.Wait()
	flush()
	return ph
}
