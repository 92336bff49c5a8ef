package worker

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
)

// requeues counts, per job, how often this worker requeued it. It holds at
// most max jobs. When it is full, the entry with the fewest requeues (the
// oldest of those) goes first: a stream of distinct jobs requeued once each
// (a broker hiccup) cannot push out a poison job that is close to its limit.
type requeues struct {
	mu    sync.Mutex // guards count, order
	max   int
	count map[string]int
	order []string // keys, oldest first
}

func newRequeues(max int) *requeues {
	return &requeues{max: max, count: map[string]int{}}
}

// requeueKey names one job message: its id and its body, so that a later
// job that reuses the id (another body) neither resets nor inherits the count.
func requeueKey(id string, body []byte) string {
	sum := sha256.Sum256(body)
	return id + "\x00" + hex.EncodeToString(sum[:12])
}

// add counts one more requeue of key and returns the count.
func (r *requeues) add(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.count[key]; !ok {
		if len(r.order) >= r.max {
			r.evict()
		}
		r.order = append(r.order, key)
	}
	r.count[key]++
	return r.count[key]
}

// evict drops the oldest of the entries with the fewest requeues. r.mu is held.
func (r *requeues) evict() {
	victim := 0
	for i, k := range r.order {
		if r.count[k] < r.count[r.order[victim]] {
			victim = i
		}
	}
	delete(r.count, r.order[victim])
	r.order = append(r.order[:victim], r.order[victim+1:]...)
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
