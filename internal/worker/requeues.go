package worker

import "sync"

// requeues counts, per job, how often this worker requeued it. It holds at
// most max jobs; the oldest entry goes first when it is full, so a stream of
// distinct failing jobs cannot grow it.
type requeues struct {
	mu    sync.Mutex // guards count, order
	max   int
	count map[string]int
	order []string // keys, oldest first
}

func newRequeues(max int) *requeues {
	return &requeues{max: max, count: map[string]int{}}
}

// add counts one more requeue of key and returns the count.
func (r *requeues) add(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.count[key]; !ok {
		if len(r.order) >= r.max {
			delete(r.count, r.order[0])
			r.order = r.order[1:]
		}
		r.order = append(r.order, key)
	}
	r.count[key]++
	return r.count[key]
}

// forget drops key: its job is done with.
func (r *requeues) forget(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.count[key]; !ok {
		return
	}
	delete(r.count, key)
	for i, k := range r.order {
		if k == key {
			r.order = append(r.order[:i], r.order[i+1:]...)
			break
		}
	}
}
