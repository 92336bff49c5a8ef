package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/codebench/codebench/internal/api"
	"github.com/codebench/codebench/internal/broker"
	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/image"
	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/judge0"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/queue"
	"github.com/codebench/codebench/internal/store"
)

// apiCmd serves the HTTP API (Judge0 CE 1.13.1's routes) in front of the
// workers: jobs go to the jobs queue, statuses come back on a durable
// reply queue, submissions are kept in the store.
func apiCmd(fs *flag.FlagSet) commandFunc {
	return func(ctx context.Context, cfg config.Config, log *slog.Logger, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("api takes flags only, not %q", args)
		}
		if !strings.HasPrefix(cfg.API.ReplyQueue, queue.APIReplyPrefix) {
			return fmt.Errorf("api_reply_queue %q must start with %s, the prefix workers send statuses to", cfg.API.ReplyQueue, queue.APIReplyPrefix)
		}
		ln, err := net.Listen("tcp", cfg.API.Addr)
		if err != nil {
			return fmt.Errorf("api: listen: %w", err)
		}
		return serveAPI(ctx, cfg, log, ln, nil)
	}
}

// serveAPI serves the API on ln until ctx ends: the store, the server, the
// reply consumer, the expiry; onFinal (nil: none) sees each final status
// once it is stored (the benchmark's).
func serveAPI(ctx context.Context, cfg config.Config, log *slog.Logger, ln net.Listener, onFinal func(*job.Status)) error {
	defer ln.Close()
	img, err := image.Resolve(cfg.DataDir, cfg.Image)
	if err != nil {
		return fmt.Errorf("the API lists the image's languages: %w", err)
	}
	dbURL := cfg.API.DatabaseURL
	if dbURL == "" {
		dbURL = filepath.Join(cfg.DataDir, "api.db")
	}
	st, err := store.Open(ctx, dbURL)
	if err != nil {
		return err
	}
	defer st.Close()
	pub := &brokerPublisher{}
	acfg := apiConfig(cfg)
	if acfg.WorkerUser, err = workerUser(cfg); err != nil {
		return err
	}
	srv, err := api.New(acfg, st, pub, apiLanguages(img), log)
	if err != nil {
		return err
	}
	srv.OnFinal = onFinal
	srv.Queue = pub
	srv.Ready = func() error {
		if pub.conn.Load() == nil {
			return errNoBroker
		}
		return nil
	}
	hs := srv.HTTPServer()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(3)
	go func() {
		defer wg.Done()
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("api: serve", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		expire(ctx, st, cfg.API.MaxAge, log)
	}()
	go func() {
		defer wg.Done()
		srv.RunCallbacks(ctx)
	}()
	log.Info("api listening", "addr", ln.Addr().String(), "store", filepath.Base(dbURL), "reply_queue", cfg.API.ReplyQueue)
	consumeReplies(ctx, queueConfig(cfg), cfg.API.ReplyQueue, srv, pub, log)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return hs.Shutdown(sctx)
}

// apiConfig is the API's configuration, its limits Judge0's within the
// workers' own maxima.
func apiConfig(cfg config.Config) api.Config {
	lim := judge0.DefaultLimits
	lim.MaxMemoryLimit = min(lim.MaxMemoryLimit, cfg.Limits.MaxMemoryKB)
	lim.MemoryLimit = min(lim.MemoryLimit, lim.MaxMemoryLimit)
	lim.MaxStackLimit = min(lim.MaxStackLimit, cfg.Limits.MaxStackKB)
	lim.StackLimit = min(lim.StackLimit, lim.MaxStackLimit)
	lim.MaxMaxProcesses = min(lim.MaxMaxProcesses, cfg.Limits.MaxProcesses)
	lim.MaxCPUTimeLimit = min(lim.MaxCPUTimeLimit, float64(cfg.Limits.MaxCPUMS)/1000)
	lim.MaxWallTimeLimit = min(lim.MaxWallTimeLimit, float64(cfg.Limits.MaxWallMS)/1000)
	// additional_files unpack to at most what a job's files may total
	// (the workers' bound on code, stdin and files together).
	lim.CompileWallMS = cfg.Limits.CompileWallMS
	lim.MaxExtractSize = min(lim.MaxExtractSize, int64(4*cfg.Worker.MaxCodeBytes)/1024)
	lim.AllowEnableNetwork = cfg.Network.Enabled
	return api.Config{
		AuthTokens: config.List(cfg.API.AuthTokens), AuthzTokens: config.List(cfg.API.AuthzTokens),
		AuthHeader: cfg.API.AuthHeader, AuthzHeader: cfg.API.AuthzHeader,
		MaxQueue: cfg.API.MaxQueue, CORSOrigins: config.List(cfg.API.CORSOrigins),
		CallbackAllow: config.List(cfg.API.CallbackAllow), EnableDelete: cfg.API.EnableDelete,
		ReplyQueue: cfg.API.ReplyQueue, MaxBody: int64(cfg.Worker.MaxJobBytes), Limits: lim,
	}
}

// workerUser is the broker user statuses must come from: worker_user, else
// the user of rabbitmq_url (the workers' own, by default).
func workerUser(cfg config.Config) (string, error) {
	if cfg.Worker.WorkerUser != "" {
		return cfg.Worker.WorkerUser, nil
	}
	u, err := url.Parse(strings.Split(cfg.Worker.RabbitURL, ",")[0])
	if err != nil || u.User == nil || u.User.Username() == "" {
		return "", fmt.Errorf("api: cannot tell the workers' broker user from rabbitmq_url; set worker_user")
	}
	return u.User.Username(), nil
}

// apiLanguages are Judge0's languages for the image's, with the versions
// its manifest recorded.
func apiLanguages(img *image.Image) []judge0.Language {
	ours := map[string]lang.Language{}
	for _, n := range img.LanguageNames() {
		if l, ok := lang.Builtin()[n]; ok {
			ours[n] = l
		}
	}
	versions := map[string]string{}
	for _, l := range img.Manifest.Languages {
		versions[l.Name] = l.Version
	}
	return judge0.Languages(ours, versions)
}

// brokerPublisher publishes on the current broker connection.
type brokerPublisher struct{ conn atomic.Pointer[broker.Conn] }

var errNoBroker = errors.New("api: not connected to the broker")

func (p *brokerPublisher) PublishJobReply(ctx context.Context, body []byte, replyTo, correlationID string) error {
	c := p.conn.Load()
	if c == nil {
		return errNoBroker
	}
	return c.PublishJobReply(ctx, body, replyTo, correlationID)
}

// JobsQueue is the jobs queue's messages ready and its consumers.
func (p *brokerPublisher) JobsQueue(context.Context) (int, int, error) {
	c := p.conn.Load()
	if c == nil {
		return 0, 0, errNoBroker
	}
	return c.QueueStats(queue.JobsQueue)
}

// consumeReplies connects to the broker (again after a loss, with a
// backoff), republishes what the store has unfinished the first time, and
// writes each status to the store before acknowledging it, until ctx ends.
func consumeReplies(ctx context.Context, qcfg broker.Config, replyQueue string, srv *api.Server, pub *brokerPublisher, log *slog.Logger) {
	qcfg.Prefetch = 64
	backoff, recovered := 500*time.Millisecond, false
	for ctx.Err() == nil {
		conn, err := broker.Dial(ctx, qcfg)
		if err != nil {
			log.Warn("api: broker unreachable; retrying", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 30*time.Second)
			continue
		}
		backoff = 500 * time.Millisecond
		deliveries, err := conn.ConsumeDurable(replyQueue, 64)
		if err != nil {
			log.Warn("api: consume replies", "err", err)
			conn.Close()
			continue
		}
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
			for d := range deliveries {
				if err := srv.HandleStatus(ctx, queue.Message{Body: d.Body, UserID: d.UserID, AppID: d.AppID}); err != nil {
					log.Warn("api: a status not stored; requeued", "err", err)
					_ = d.Acker.Nack(true)
					continue
				}
				_ = d.Acker.Ack()
			}
		}()
		pub.conn.Store(nil)
		conn.Close()
	}
}

// expire deletes finished submissions older than maxAge, hourly.
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
		case <-time.After(time.Hour):
		}
	}
}
