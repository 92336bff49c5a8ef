// Package apinode is the API process assembled, as internal/daemon
// assembles the worker: the store, the HTTP server, the broker connection
// that publishes jobs and consumes their statuses (redialled with the
// shared backoff), the republishing of what the store has unfinished, the
// callbacks and the expiry of old submissions. cmd/codebench wires it from
// the configuration ("codebench api"), and bench starts one to measure.
package apinode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/codebench/codebench/internal/api"
	"github.com/codebench/codebench/internal/backoff"
	"github.com/codebench/codebench/internal/broker"
	"github.com/codebench/codebench/internal/cleanup"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/queue"
	"github.com/codebench/codebench/internal/store"
)

// Config is the node's wiring.
type Config struct {
	API api.Config
	// Broker is the connection to the workers' broker; its prefetch is
	// the node's (64 statuses in flight).
	Broker broker.Config
	// Store is the database: a SQLite path, or postgres://...
	Store     string
	Languages api.Languages
	// MaxAge is how long a finished submission is kept (0: forever).
	MaxAge time.Duration
	// OnFinal, when set, sees each final status once it is stored (the
	// benchmark's).
	OnFinal func(*job.Status)
}

// replyPrefetch is how many statuses the node takes at once.
const replyPrefetch = 64

// Reconnect bounds: the first wait before redialling, and the longest.
const (
	reconnectInitial = 500 * time.Millisecond
	reconnectMax     = 30 * time.Second
)

// shutdownBound is how long the HTTP server has to finish its answers
// when the node stops.
const shutdownBound = 10 * time.Second

// Run serves the API on ln until ctx ends; it closes ln.
func Run(ctx context.Context, cfg Config, ln net.Listener, log *slog.Logger) error {
	defer ln.Close()
	st, err := store.Open(ctx, cfg.Store)
	if err != nil {
		return err
	}
	defer st.Close()
	pub := &publisher{}
	srv := api.New(cfg.API, api.Deps{Store: st, Publisher: pub, Languages: cfg.Languages, Log: log, Queue: pub,
		Ready: pub.ready, OnFinal: cfg.OnFinal})
	hs := srv.HTTPServer()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(4)
	go func() {
		defer wg.Done()
		tend(ctx, srv, log)
	}()
	go func() {
		defer wg.Done()
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("api: serve", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		expire(ctx, st, cfg.MaxAge, log)
	}()
	go func() {
		defer wg.Done()
		srv.RunCallbacks(ctx)
	}()
	log.Info("api listening", "addr", ln.Addr().String(), "store", storeName(cfg.Store), "reply_queue", cfg.API.ReplyQueue)
	consume(ctx, cfg.Broker, cfg.API.ReplyQueue, srv, pub, log)
	sctx, cancel := cleanup.Detached(ctx, shutdownBound)
	defer cancel()
	return hs.Shutdown(sctx)
}

// storeName is what the log may say of the store: the scheme and host of
// a URL (never its user or password), or the path of a file.
func storeName(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		return u.Scheme + "://" + u.Host
	}
	return s
}

// ErrNoBroker is the answer while the node has no broker connection.
var ErrNoBroker = errors.New("api: not connected to the broker")

// publisher publishes on the current broker connection.
type publisher struct{ conn atomic.Pointer[broker.Conn] }

func (p *publisher) ready() error {
	if p.conn.Load() == nil {
		return ErrNoBroker
	}
	return nil
}

func (p *publisher) PublishJobReply(ctx context.Context, body []byte, replyTo, correlationID string) error {
	c := p.conn.Load()
	if c == nil {
		return ErrNoBroker
	}
	return c.PublishJobReply(ctx, body, replyTo, correlationID)
}

// JobsQueue is the jobs queue's messages ready and its consumers.
func (p *publisher) JobsQueue(context.Context) (int, int, error) {
	c := p.conn.Load()
	if c == nil {
		return 0, 0, ErrNoBroker
	}
	return c.QueueStats(queue.JobsQueue)
}

// consume connects to the broker (again after a loss, with the shared
// backoff), republishes what the store has unfinished the first time, and
// writes each status to the store before acknowledging it, until ctx ends.
// A status the store could not take is requeued after a pause, not in a
// hot loop.
func consume(ctx context.Context, bcfg broker.Config, replyQueue string, srv *api.Server, pub *publisher, log *slog.Logger) {
	bcfg.Prefetch = replyPrefetch
	pace := backoff.New(reconnectInitial, reconnectMax, nil)
	recovered := false
	for ctx.Err() == nil {
		conn, err := broker.Dial(ctx, bcfg)
		if err != nil {
			d := pace.Next()
			log.Warn("api: broker unreachable; retrying", "err", err, "in", d.Round(time.Millisecond))
			pace.Wait(ctx, d)
			continue
		}
		deliveries, err := conn.ConsumeDurable(replyQueue, replyPrefetch)
		if err != nil {
			log.Warn("api: consume replies", "err", err)
			conn.Close()
			pace.Wait(ctx, pace.Next())
			continue
		}
		pace.Reset()
		pub.conn.Store(conn)
		if !recovered {
			if n, err := srv.Recover(ctx); err != nil {
				log.Warn("api: republishing unfinished submissions", "err", err)
			} else {
				recovered = true
				if n > 0 {
					log.Info("api: republished unfinished submissions", "n", n)
				}
			}
		}
		log.Info("api: connected to the broker", "reply_queue", replyQueue)
		func() {
			stop := context.AfterFunc(ctx, func() { _ = conn.StopConsuming() })
			defer stop()
			storeDown := backoff.New(100*time.Millisecond, 5*time.Second, nil)
			for d := range deliveries {
				if err := srv.HandleStatus(ctx, queue.Message{Body: d.Body, UserID: d.UserID, AppID: d.AppID}); err != nil {
					wait := storeDown.Next()
					log.Warn("api: a status not stored; requeued", "err", err, "in", wait.Round(time.Millisecond))
					storeDown.Wait(ctx, wait)
					_ = d.Acker.Nack(true)
					continue
				}
				storeDown.Reset()
				_ = d.Acker.Ack()
			}
		}()
		pub.conn.Store(nil)
		conn.Close()
	}
}

// tendEvery is how often a node says it is alive, adopts what nodes gone
// left unfinished, and ends what is overdue; a node not seen for
// nodeGoneAfter is gone.
const (
	tendEvery     = 10 * time.Second
	nodeGoneAfter = 3 * tendEvery
)

// tend runs srv.Tend every tendEvery until ctx ends.
func tend(ctx context.Context, srv *api.Server, log *slog.Logger) {
	t := time.NewTicker(tendEvery)
	defer t.Stop()
	for {
		if err := srv.Tend(ctx, time.Now().Add(-nodeGoneAfter)); err != nil && ctx.Err() == nil {
			log.Warn("api: tending the store (heartbeat, adoption, overdue submissions)", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// expireEvery is how often old submissions are looked for.
const expireEvery = time.Hour

// expire deletes finished submissions older than maxAge, every
// expireEvery, until ctx ends.
func expire(ctx context.Context, st *store.Store, maxAge time.Duration, log *slog.Logger) {
	if maxAge <= 0 {
		return
	}
	for {
		if n, err := st.Expire(ctx, time.Now().Add(-maxAge)); err != nil && ctx.Err() == nil {
			log.Warn("api: expiring old submissions", "err", err)
		} else if n > 0 {
			log.Info("api: expired old submissions", "n", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(expireEvery):
		}
	}
}

// checkReplyQueue refuses a reply queue the workers would not send to.
func checkReplyQueue(name string) error {
	if !strings.HasPrefix(name, queue.APIReplyPrefix) {
		return fmt.Errorf("api_reply_queue %q must start with %s, the prefix workers send statuses to", name, queue.APIReplyPrefix)
	}
	return nil
}

// ErrOpenToTheNetwork: the API would serve beyond this machine with no
// token to ask of its clients.
var ErrOpenToTheNetwork = errors.New("api: refusing to serve beyond loopback without api_auth_tokens: anyone who reaches it could run code here")

// Listen checks cfg and listens on addr: on a non-loopback address only
// with auth tokens.
func Listen(cfg Config, addr string) (net.Listener, error) {
	if err := checkReplyQueue(cfg.API.ReplyQueue); err != nil {
		return nil, err
	}
	if !Loopback(addr) && len(cfg.API.AuthTokens) == 0 {
		return nil, fmt.Errorf("%w (api_addr %s)", ErrOpenToTheNetwork, addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api: listen: %w", err)
	}
	return ln, nil
}

// Loopback says whether addr (host:port) listens on loopback only: a
// loopback IP, or "localhost" (an empty host, 0.0.0.0 or :: is every
// interface).
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// DefaultStore is the SQLite store of an API whose api_database_url says
// none: <data dir>/api/api.db, in a directory of its own made 0700 (the
// data dir itself is readable: the images are the sandboxes'). The first
// release kept it at <data dir>/api.db: that file, and its -wal and -shm,
// move there once.
func DefaultStore(dataDir string) (string, error) {
	dir := filepath.Join(dataDir, "api")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "api.db")
	old := filepath.Join(dataDir, "api.db")
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Rename(old+suffix, path+suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
				return "", fmt.Errorf("api: moving the store to %s: %w", dir, err)
			}
		}
	}
	return path, nil
}
