package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/codebench/codebench/internal/judge0"
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

// checkCallback is the 422 of a callback_url outside the allow-list.
func (s *Server) checkCallback(raw string) error {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return fmt.Errorf("is not a valid http or https URL")
	}
	if !slices.Contains(s.cfg.CallbackAllow, u.Hostname()) && !slices.Contains(s.cfg.CallbackAllow, u.Host) {
		return fmt.Errorf("host %s is not allowed (api_callback_allow)", u.Host)
	}
	return nil
}

// enqueueCallback queues rec's callback, if it has one.
func (s *Server) enqueueCallback(rec *judge0.Record) {
	if rec.Sub.CallbackURL == nil {
		return
	}
	select {
	case s.callbacks <- rec:
	default:
		s.log.Warn("api: callback queue full, callback dropped", "token", rec.Token)
		s.metrics.callbacks.WithLabelValues("dropped").Inc()
	}
}

// RunCallbacks sends queued callbacks until ctx ends, then returns once
// every sender has stopped.
func (s *Server) RunCallbacks(ctx context.Context) {
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
				case rec := <-s.callbacks:
					s.sendCallback(ctx, client, rec)
				}
			}
		}()
	}
	wg.Wait()
}

// sendCallback PUTs rec's default fields to its callback_url: a 2xx ends
// it; else another try, at most CallbackTries, a second apart.
func (s *Server) sendCallback(ctx context.Context, client *http.Client, rec *judge0.Record) {
	fields, err := judge0.Render(rec, judge0.DefaultFields, true, s.langs[rec.Sub.LanguageID].Name)
	if err != nil {
		s.log.Error("api: callback", "token", rec.Token, "err", err)
		return
	}
	body, err := json.Marshal(fields)
	if err != nil {
		return
	}
	var last error
	for try := range s.cfg.CallbackTries {
		if try > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
		if last = s.putCallback(ctx, client, *rec.Sub.CallbackURL, body); last == nil {
			s.metrics.callbacks.WithLabelValues("sent").Inc()
			return
		}
	}
	s.log.Warn("api: callback failed", "token", rec.Token, "tries", s.cfg.CallbackTries, "err", last)
	s.metrics.callbacks.WithLabelValues("failed").Inc()
}

func (s *Server) putCallback(ctx context.Context, client *http.Client, to string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallbackTimeout)
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
