package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/codebench/codebench/internal/judge0"
	"github.com/codebench/codebench/internal/network"
	"github.com/codebench/codebench/internal/submission"
	"github.com/codebench/codebench/internal/untrusted"
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
	allow   []callbackTarget
	tries   int
	timeout time.Duration
	judge0  *judge0.Codec
	metrics *metrics
	log     *slog.Logger
	queue   chan *submission.Record
	// resolve looks a host up (net.DefaultResolver's; a test's own).
	resolve func(ctx context.Context, host string) ([]netip.Addr, error)

	mu      sync.Mutex     // guards pending
	pending map[string]int // callbacks queued or being sent, by client
}

// pendingOf is how many of owner's callbacks wait to be sent.
func (s *callbacks) pendingOf(owner string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending[owner]
}

// count adds d to owner's callbacks waiting.
func (s *callbacks) count(owner string, d int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[owner] += d; s.pending[owner] <= 0 {
		delete(s.pending, owner)
	}
}

// callbackTarget is one api_callback_allow entry: a host, its ports (a
// bare host: 80 and 443) and a path prefix ("": any path).
type callbackTarget struct {
	host  string
	ports []string
	path  string
	// ip is the host when it is an address: a callback may go to it even
	// inside a denied range, since it is named exactly.
	ip netip.Addr
}

// parseAllow reads api_callback_allow's entries: "host", "host:port" or
// "host:port/path/prefix" ("[::1]:port" for IPv6).
func parseAllow(entries []string) []callbackTarget {
	var out []callbackTarget
	for _, e := range entries {
		e = strings.TrimSpace(e)
		hostport, path, _ := strings.Cut(e, "/")
		t := callbackTarget{host: strings.ToLower(hostport), ports: []string{"80", "443"}}
		if path != "" {
			t.path = "/" + path
		}
		if h, p, err := net.SplitHostPort(hostport); err == nil {
			t.host, t.ports = strings.ToLower(h), []string{p}
		}
		t.host = strings.TrimSuffix(strings.TrimPrefix(t.host, "["), "]")
		if ip, err := netip.ParseAddr(t.host); err == nil {
			t.ip = ip.Unmap()
		}
		out = append(out, t)
	}
	return out
}

func newCallbacks(cfg Config, c *judge0.Codec, m *metrics, log *slog.Logger) *callbacks {
	return &callbacks{allow: parseAllow(cfg.CallbackAllow), tries: cfg.CallbackTries, timeout: cfg.CallbackTimeout, judge0: c, metrics: m, log: log,
		queue: make(chan *submission.Record, callbackQueue), pending: map[string]int{}, resolve: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}}
}

// check is the 422 of a callback_url outside the allow-list: its host, its
// port (80 or 443 when the entry names none) and its path prefix must be
// an entry's.
func (s *callbacks) check(raw string) error {
	_, err := s.target(raw)
	return err
}

// target is the allow-list entry raw is allowed by.
func (s *callbacks) target(raw string) (callbackTarget, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return callbackTarget{}, fmt.Errorf("is not a valid http or https URL")
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	for _, t := range s.allow {
		if t.host == host && slices.Contains(t.ports, port) && strings.HasPrefix(path, t.path) {
			return t, nil
		}
	}
	return callbackTarget{}, fmt.Errorf("%s is not allowed (api_callback_allow names the hosts, ports and paths callbacks may go to)", untrusted.Quote(u.Host+path))
}

// callbackConnect bounds a callback's connection (its whole try is
// CallbackTimeout).
const callbackConnect = 3 * time.Second

// deniedAddr says whether a callback may not go to ip unless the allow
// list names it exactly: loopback, unspecified, multicast, link-local, and
// the ranges no guest reaches (network.DefaultDeny: the private ranges,
// CGNAT, metadata services).
func deniedAddr(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsUnspecified() || ip.IsMulticast() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsPrivate() {
		return true
	}
	for _, p := range network.DefaultDeny {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// dial resolves the callback's host once, checks the address (a name that
// resolves into a denied range, as a rebinding name does, is refused) and
// dials that address: no second lookup can give another.
func (s *callbacks) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	host = strings.ToLower(host)
	var ip netip.Addr
	literal, err := netip.ParseAddr(host)
	if err == nil {
		ip = literal.Unmap()
	} else {
		ips, err := s.resolve(ctx, host)
		if err != nil || len(ips) == 0 {
			return nil, fmt.Errorf("callback host %s: %v", host, err)
		}
		ip = ips[0].Unmap()
	}
	// Named exactly: the callback_url gives the address itself, and the
	// allow-list names it (a name that resolves there is not enough).
	named := literal.IsValid() && slices.ContainsFunc(s.allow, func(t callbackTarget) bool { return t.ip == ip })
	if deniedAddr(ip) && !named {
		return nil, fmt.Errorf("callback host %s is at %s, in a range callbacks do not reach unless api_callback_allow names the address", host, ip)
	}
	d := net.Dialer{Timeout: callbackConnect}
	return d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
}

// enqueue queues rec's callback, if it has one.
func (s *callbacks) enqueue(rec *submission.Record) {
	if rec.Callback == "" {
		return
	}
	s.count(rec.Owner, 1)
	select {
	case s.queue <- rec:
	default:
		s.count(rec.Owner, -1)
		s.log.Warn("api: callback queue full, callback dropped", "token", rec.Token)
		s.metrics.callbacks.WithLabelValues("dropped").Inc()
	}
}

// run sends queued callbacks until ctx ends, then returns once every
// sender has stopped.
func (s *callbacks) run(ctx context.Context) {
	client := &http.Client{
		Transport: &http.Transport{Proxy: nil, DialContext: s.dial, MaxIdleConnsPerHost: callbackSenders, IdleConnTimeout: time.Minute,
			TLSHandshakeTimeout: callbackConnect},
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
	defer s.count(rec.Owner, -1)
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
