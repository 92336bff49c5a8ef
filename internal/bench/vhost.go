package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// TempVhost makes a RabbitMQ virtual host of the benchmark's own through the
// management API (so a worker running on the same broker cannot take its
// jobs), and returns the AMQP URL for it and a function that deletes it.
func TempVhost(ctx context.Context, mgmtURL, amqpURL, name string) (string, func(), error) {
	u, err := url.Parse(amqpURL)
	if err != nil {
		return "", nil, err
	}
	user := u.User.Username()
	pass, _ := u.User.Password()
	vhost := fmt.Sprintf("codebench-bench-%s-%d", name, time.Now().UnixNano())
	call := func(ctx context.Context, method, path, body string) error {
		req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(mgmtURL, "/")+"/api/"+path, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.SetBasicAuth(user, pass)
		req.Header.Set("content-type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("bench: management API: %w", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("bench: management API %s %s: %s %s", method, path, resp.Status, b)
		}
		return nil
	}
	if err := call(ctx, "PUT", "vhosts/"+vhost, "{}"); err != nil {
		return "", nil, err
	}
	remove := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = call(ctx, "DELETE", "vhosts/"+vhost, "")
	}
	if err := call(ctx, "PUT", "permissions/"+vhost+"/"+url.PathEscape(user), `{"configure":".*","write":".*","read":".*"}`); err != nil {
		remove()
		return "", nil, err
	}
	u.Path = "/" + vhost
	return u.String(), remove, nil
}
