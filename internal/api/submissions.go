package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/queue"
	"github.com/codebench/codebench/internal/submission"
)

// submissions is the submission lifecycle every door shares: a place under
// the queue bound, the record stored, the job published, the final status
// awaited; and the statuses that come back, taken into the store.
type submissions struct {
	store        Store
	pub          Publisher
	replyQueue   string
	node         string
	maxQueue     int
	queueTimeout time.Duration
	quotas       Quotas
	storeMax     int64
	// callbacksOf counts a client's callbacks waiting to be sent.
	callbacksOf func(owner string) int
	policy      job.Policy
	metrics     *metrics
	log         *slog.Logger
	now         func() time.Time

	// admit is held from counting the submissions in flight to storing a
	// new one: this node never admits more than the bound (several nodes
	// on one store may pass it by a few at once). It guards size too.
	admit sync.Mutex
	size  storeSize
	// mine are this node's submissions in flight, counted here (taken
	// from the store once, at the first admission); others the other
	// nodes', counted in the store at most every countTTL. Under admit.
	mine, others int
	othersAt     time.Time

	mu      sync.Mutex // guards waiters
	waiters map[string][]chan *submission.Record
}

// Why a submission was not queued.
var (
	errQueueFull = errors.New("queue is full")
	errStoreFull = errors.New("the store is full: no submission is taken until old ones expire")
	errStore     = errors.New("cannot store the submission")
	errPublish   = errors.New("cannot queue the submission: the broker is unavailable")
)

// quotaError is a client over one of its quotas: 429, Retry-After.
type quotaError struct {
	why   string
	retry time.Duration
}

func (e *quotaError) Error() string { return "quota: " + e.why }

// storeSize is the store's size, looked at most every sizeTTL.
type storeSize struct {
	at    time.Time
	bytes int64
}

const sizeTTL = 5 * time.Second

// newSecret is a job's reply secret: 128 random bits, never shown to a
// client (the token is everybody's who polls; the secret only the API's
// and the workers').
func newSecret() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// errForeign: a status that does not carry its job's reply secret.
var errForeign = errors.New("a status without its job's reply secret")

// newToken is a UUID v4, as Judge0's SecureRandom.uuid.
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// prepare makes the record of a door's job under token: its limits
// clamped to the workers' policy (defaults filled, in the job's units),
// then the job validated as every worker validates it, so that nothing is
// stored that a worker would refuse; the error is *job.InvalidError.
func (s *submissions) prepare(token, door, owner string, j job.Job, options any) (*submission.Record, error) {
	j.ID = token
	j.ReplySecret = newSecret()
	j.Limits = s.policy.Clamp(j.Language, j.Limits)
	if err := j.Validate(s.policy); err != nil {
		return nil, err
	}
	// The job as the workers will read it: JSON escapes a control
	// character in six bytes, so a body within its bound can make a job
	// over the workers' (every one of them would refuse it).
	if max := s.policy.MaxJobBytes; max > 0 && escapedBound(&j) > max {
		if b, err := json.Marshal(j); err != nil || len(b) > max {
			return nil, &job.InvalidError{ID: token, Reason: fmt.Sprintf("the job is %d bytes as published (JSON escapes control characters), over the workers' limit of %d", len(b), max)}
		}
	}
	rec, err := submission.New(token, door, j, options, s.now())
	if err != nil {
		return nil, err
	}
	rec.Owner = owner
	return rec, nil
}

// escapedBound is the most j's JSON can take: every byte of its texts
// escaped in six, and room for the rest. Below the workers' limit, the
// job need not be marshalled to know it fits (it is, once, to publish).
func escapedBound(j *job.Job) int {
	n := len(j.Code) + len(j.Stdin) + len(j.ReplySecret) + len(j.Language)
	for name, body := range j.Files {
		n += len(name) + len(body)
	}
	for _, a := range j.Args {
		n += len(a)
	}
	for _, f := range j.CompileFlags {
		n += len(f)
	}
	if j.ExpectedOutput != nil {
		n += len(*j.ExpectedOutput)
	}
	for _, t := range j.Tests {
		n += len(t.Stdin)
		if t.ExpectedOutput != nil {
			n += len(*t.ExpectedOutput)
		}
		for _, a := range t.Args {
			n += len(a)
		}
	}
	if j.Checker != nil {
		n += len(j.Checker.Code) + len(j.Checker.Language)
	}
	return 6*n + 16*(len(j.Files)+len(j.Args)+len(j.CompileFlags)+4*len(j.Tests)) + 4096
}

// submit queues rec: a place under the queue bound, the record stored, the
// job published. On failure nothing is left behind (the place released,
// the record deleted) and the error is one of errQueueFull, errStore,
// errPublish. With wait, done receives the final record (registered before
// publishing; the caller awaits it).
func (s *submissions) submit(ctx context.Context, rec *submission.Record, wait bool) (done chan *submission.Record, err error) {
	if err := s.admitAndStore(ctx, rec); err != nil {
		return nil, err
	}
	if wait {
		done = s.waitFor(rec.Token)
	}
	t0 := time.Now()
	err = s.publish(ctx, rec)
	s.metrics.step("publish", t0)
	if err != nil {
		// Not published: the token is not given out, the record goes.
		s.gone()
		s.forget(rec.Token, done)
		_ = s.store.Delete(context.WithoutCancel(ctx), rec.Token)
		s.log.Error("api: publish", "token", rec.Token, "err", err)
		return nil, errPublish
	}
	return done, nil
}

func (s *submissions) publish(ctx context.Context, rec *submission.Record) error {
	body, err := json.Marshal(rec.Job)
	if err != nil {
		return err
	}
	return s.pub.PublishJobReply(ctx, body, s.replyQueue, rec.Token)
}

// admitAndStore stores rec if the submissions in flight (every node's,
// counted in the store) leave room under the bound, the store under its
// budget, and its client under its quotas: errQueueFull, errStoreFull, a
// *quotaError, or errStore.
func (s *submissions) admitAndStore(ctx context.Context, rec *submission.Record) error {
	if err := s.reserve(ctx); err != nil {
		return err
	}
	budget := s.policy.WallBudget(&rec.Job)
	if err := s.withinQuotas(ctx, rec, budget); err != nil {
		s.gone()
		return err
	}
	t0 := time.Now()
	err := s.store.Insert(ctx, rec, s.node, s.now().Add(s.queueTimeout+budget+awaitMargin), budget)
	s.metrics.step("insert", t0)
	if err != nil {
		s.gone()
		s.log.Error("api: store", "err", err)
		return errStore
	}
	return nil
}

// reserve takes a place under the queue bound and the store's budget
// (errQueueFull, errStoreFull, errStore): this node's count is exact, so
// one node never admits more than the bound; several nodes on one store,
// each seeing the others' count of up to a second ago, may pass it by a
// few. The store is not written under the lock.
func (s *submissions) reserve(ctx context.Context) error {
	s.admit.Lock()
	defer s.admit.Unlock()
	if s.othersAt.IsZero() || s.now().Sub(s.othersAt) >= countTTL {
		mine, all, err := s.store.Unfinished(ctx, s.node)
		if err != nil {
			s.log.Error("api: store", "err", err)
			return errStore
		}
		if s.othersAt.IsZero() {
			s.mine = mine
		}
		s.others, s.othersAt = max(all-mine, 0), s.now()
	}
	if s.mine+s.others >= s.maxQueue {
		return errQueueFull
	}
	if s.storeMax > 0 {
		if s.size.at.IsZero() || s.now().Sub(s.size.at) >= sizeTTL {
			b, err := s.store.Size(ctx)
			if err != nil {
				s.log.Error("api: store size", "err", err)
				return errStore
			}
			s.size = storeSize{at: s.now(), bytes: b}
		}
		if s.size.bytes >= s.storeMax {
			return errStoreFull
		}
	}
	s.mine++
	return nil
}

// countTTL is how often the other nodes' submissions in flight are
// counted in the store.
const countTTL = time.Second

// gone counts a submission of this node's that left the queue (finished,
// refused, or never stored or published).
func (s *submissions) gone() {
	s.admit.Lock()
	s.mine = max(s.mine-1, 0)
	s.admit.Unlock()
}

// adopted counts n submissions adopted from nodes gone as this node's.
func (s *submissions) adopted(n int) {
	s.admit.Lock()
	s.mine += n
	s.admit.Unlock()
}

// withinQuotas checks rec's client (its Owner) under its quotas, its
// submissions counted in the store (every node's).
func (s *submissions) withinQuotas(ctx context.Context, rec *submission.Record, budget time.Duration) error {
	q := s.quotas
	if q == (Quotas{}) {
		return nil
	}
	u, err := s.store.UsageOf(ctx, rec.Owner, s.now().Add(-time.Minute))
	if err != nil {
		s.log.Error("api: store usage", "err", err)
		return errStore
	}
	switch {
	case q.InFlight > 0 && u.InFlight >= q.InFlight:
		return &quotaError{fmt.Sprintf("%d submissions in flight, at most %d a client", u.InFlight, q.InFlight), 5 * time.Second}
	case q.PerMinute > 0 && u.Recent >= q.PerMinute:
		return &quotaError{fmt.Sprintf("%d submissions in the last minute, at most %d a client", u.Recent, q.PerMinute), 30 * time.Second}
	case q.Sandbox > 0 && u.Sandbox+budget > q.Sandbox:
		return &quotaError{fmt.Sprintf("the submissions in flight may take %s of sandbox time at their limits, this one %s more, at most %s a client",
			u.Sandbox, budget, q.Sandbox), 10 * time.Second}
	case q.Callbacks > 0 && rec.Callback != "" && s.callbacksOf != nil && s.callbacksOf(rec.Owner) >= q.Callbacks:
		return &quotaError{fmt.Sprintf("%d callbacks waiting to be sent, at most %d a client", s.callbacksOf(rec.Owner), q.Callbacks), 10 * time.Second}
	}
	return nil
}

// budget is how long a worker may take to send rec's next status: its
// job's whole wall budget and a margin.
func (s *submissions) budget(rec *submission.Record) time.Duration {
	return s.policy.WallBudget(&rec.Job) + awaitMargin
}

// InFlight is the submissions accepted and not finished, every node's (0
// when the store cannot say).
func (s *submissions) InFlight() int {
	_, all, err := s.store.Unfinished(context.Background(), s.node)
	if err != nil {
		return 0
	}
	return all
}

// awaitMargin is what a wait allows beyond the job's own wall budget:
// the queue, the sandbox, the statuses' way back.
const awaitMargin = 30 * time.Second

// await waits for rec's final record (done, from submit), bounded by the
// job's own wall budget and a margin. The final record as stored, or nil
// when the bound passed; false: the client went away.
func (s *submissions) await(ctx context.Context, rec *submission.Record, done chan *submission.Record) (*submission.Record, bool) {
	defer s.forget(rec.Token, done)
	t := time.NewTimer(s.policy.WallBudget(&rec.Job) + awaitMargin)
	defer t.Stop()
	select {
	case final := <-done:
		return final, true
	case <-t.C:
		return nil, true
	case <-ctx.Done():
		return nil, false
	}
}

// waitFor registers for the token's final record.
func (s *submissions) waitFor(token string) chan *submission.Record {
	c := make(chan *submission.Record, 1)
	s.mu.Lock()
	s.waiters[token] = append(s.waiters[token], c)
	s.mu.Unlock()
	return c
}

func (s *submissions) forget(token string, c chan *submission.Record) {
	if c == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiters[token]
	if i := slices.Index(ws, c); i >= 0 {
		ws = slices.Delete(ws, i, i+1)
	}
	if len(ws) == 0 {
		delete(s.waiters, token)
	} else {
		s.waiters[token] = ws
	}
}

// status reads a reply: the status, or nil and why it is dropped (not a
// status, or not the workers').
func (s *submissions) status(m queue.Message, workerUser string) (*job.Status, string) {
	var st job.Status
	if err := json.Unmarshal(m.Body, &st); err != nil || st.ID == "" {
		return nil, "not a status"
	}
	if workerUser != "" {
		if err := m.FromWorker(workerUser, st.ID, st.ID); err != nil {
			return nil, "not the workers'"
		}
	}
	return &st, ""
}

// take writes a status into its record: the record (nil for a token the
// store does not have) and whether this status finished it, once the
// store has it. The waiters hear the final record.
func (s *submissions) take(ctx context.Context, st *job.Status) (*submission.Record, bool, error) {
	rec, err := s.store.Get(ctx, st.ID)
	if errors.Is(err, submission.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if want := rec.Job.ReplySecret; want != "" && subtle.ConstantTimeCompare([]byte(st.ReplySecret), []byte(want)) != 1 {
		// Not the job this API published under that token: somebody
		// else's job with the same id (its producer learnt the token),
		// run by a worker in good faith.
		return nil, false, errForeign
	}
	if !rec.Take(st, s.now()) {
		return rec, false, nil
	}
	t0 := time.Now()
	changed, err := s.store.Update(ctx, rec, s.now().Add(s.budget(rec)))
	s.metrics.step("update", t0)
	if err != nil {
		return nil, false, err
	}
	if !changed || !rec.Finished() {
		return rec, false, nil
	}
	s.gone()
	s.mu.Lock()
	for _, w := range s.waiters[st.ID] {
		w <- rec // buffered: one send each
	}
	delete(s.waiters, st.ID)
	s.mu.Unlock()
	return rec, true, nil
}

// recover publishes again every submission of this node's that the store
// has unfinished (a crash between storing and publishing, or statuses lost
// with a broker): a job run twice is harmless, a token never answered is
// not. Other nodes' are theirs (a node gone has its adopted: Tend). A row
// that cannot be published is skipped, and logged: the reaper ends it.
func (s *submissions) recover(ctx context.Context) (int, error) {
	pending, err := s.store.Pending(ctx, s.node, s.maxQueue)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range pending {
		if err := s.publish(ctx, r); err != nil {
			if ctx.Err() != nil {
				return n, err
			}
			s.log.Warn("api: an unfinished submission could not be published again; skipped", "token", r.Token, "err", err)
			continue
		}
		n++
	}
	return n, nil
}

// lookup reads token's record for an answer.
func (s *submissions) lookup(ctx context.Context, token string) (*submission.Record, error) {
	t0 := time.Now()
	rec, err := s.store.Get(ctx, token)
	s.metrics.step("read", t0)
	return rec, err
}

// invalidReason is why prepare refused a job, for the client.
func invalidReason(err error) string {
	var inv *job.InvalidError
	if errors.As(err, &inv) {
		return inv.Reason
	}
	return err.Error()
}
