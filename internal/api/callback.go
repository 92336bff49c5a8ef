package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/codebench/codebench/internal/judge0"
	"github.com/codebench/codebench/internal/submission"
)

// Callbacks, Judge0's way (app/jobs/isolate_job.rb of v1.13.1): once a
// submission with a callback_url is finished, its default fields, base64
// encoded, are PUT there as JSON; up to CallbackTries tries of
// CallbackTimeout each. A callback is a request this server makes for
// whoever submitted: only to hosts in CallbackAllow (none by default: off),
// through no proxy, following no redirect. They are best effort, as
// Judge0's are: a callback not sent when the API stops is not sent later
// (the result stays in the store for GET).

// callbackQueue bounds the callbacks waiting to be sent; beyond it they
// are dropped (and counted).
const callbackQueue = 1024

// callbackSenders is how many callbacks are sent at once.
const callbackSenders = 4

// callbacks sends the callbacks of finished submissions.
type callbacks struct {
	allow   []string
	tries   int
	timeout time.Duration
	judge0  *judge0.Codec
	metrics *metrics
	log     *slog.Logger
	queue   chan *submission.Record
}

func newCallbacks(cfg Config, c *judge0.Codec, m *metrics, log *slog.Logger) *callbacks {
	return &callbacks{allow: cfg.CallbackAllow, tries: cfg.CallbackTries, timeout: cfg.CallbackTimeout, judge0: c, metrics: m, log: log,
		queue: make(chan *submission.Record, callbackQueue)}
}

// check is the 422 of a callback_url outside the allow-list.
func (s *callbacks) check(raw string) error {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return fmt.Errorf("is not a valid http or https URL")
	}
	if !slices.Contains(s.allow, u.Hostname()) && !slices.Contains(s.allow, u.Host) {
		return fmt.Errorf("host %s is not allowed (api_callback_allow)", u.Host)
	}
	return nil
}

// enqueue queues rec's callback, if it has one.
func (s *callbacks) enqueue(rec *submission.Record) {
	if rec.Callback == "" {
		return
	}
	select {
	case s.queue <- rec:
	default:
		s.log.Warn("api: callback queue full, callback dropped", "token", rec.Token)
		s.metrics.callbacks.WithLabelValues("dropped").Inc()
	}
}

// run sends queued callbacks until ctx ends, then returns once every
// sender has stopped.
func (s *callbacks) run(ctx context.Context) {
	client := &http.Client{
		Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: callbackSenders, IdleConnTimeout: time.Minute},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	for range callbackSenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case rec := <-s.queue:
					s.send(ctx, client, rec)
				}
			}
		}()
	}
	wg.Wait()
}

// send PUTs rec's default fields to its callback_url: a 2xx ends it;
// else another try, at most CallbackTries, a second apart.
func (s *callbacks) send(ctx context.Context, client *http.Client, rec *submission.Record) {
	fields, err := s.judge0.Render(rec, judge0.DefaultFields, true)
	if err != nil {
		s.log.Error("api: callback", "token", rec.Token, "err", err)
		return
	}
	body, err := json.Marshal(fields)
	if err != nil {
		return
	}
	var last error
	for try := range s.tries {
		if try > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
		if last = s.put(ctx, client, rec.Callback, body); last == nil {
			s.metrics.callbacks.WithLabelValues("sent").Inc()
			return
		}
	}
	s.log.Warn("api: callback failed", "token", rec.Token, "tries", s.tries, "err", last)
	s.metrics.callbacks.WithLabelValues("failed").Inc()
}

func (s *callbacks) put(ctx context.Context, client *http.Client, to string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, to, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}
