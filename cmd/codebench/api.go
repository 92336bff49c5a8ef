package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"

	"github.com/codebench/codebench/internal/api"
	"github.com/codebench/codebench/internal/apinode"
	"github.com/codebench/codebench/internal/broker"
	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/image"
	"github.com/codebench/codebench/internal/lang"
	"github.com/codebench/codebench/internal/queue"
)

// apiCmd serves the HTTP API (internal/apinode) in front of the workers.
func apiCmd(fs *flag.FlagSet) commandFunc {
	return func(ctx context.Context, cfg config.Config, log *slog.Logger, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("api takes flags only, not %q", args)
		}
		ncfg, err := apiNodeConfig(cfg)
		if err != nil {
			return err
		}
		ln, err := apinode.Listen(ncfg, cfg.API.Addr)
		if err != nil {
			return err
		}
		return apinode.Run(ctx, ncfg, ln, log)
	}
}

// apiNodeConfig is the API node's configuration: the image's languages,
// the workers' policy, the store, the broker.
func apiNodeConfig(cfg config.Config) (apinode.Config, error) {
	img, err := image.ForLanguages(cfg.DataDir, cfg.Image, cfg.ImageLanguages)
	if err != nil {
		return apinode.Config{}, fmt.Errorf("the API lists the image's languages: %w", err)
	}
	workers, err := workerUser(cfg)
	if err != nil {
		return apinode.Config{}, err
	}
	dbURL := cfg.API.DatabaseURL
	if dbURL == "" {
		if dbURL, err = apinode.DefaultStore(cfg.DataDir); err != nil {
			return apinode.Config{}, err
		}
	}
	langs := api.Languages{Ours: map[string]lang.Language{}, Versions: map[string]string{}}
	for _, n := range img.LanguageNames() {
		if l, ok := lang.Builtin()[n]; ok {
			langs.Ours[n] = l
		}
	}
	for _, l := range img.Manifest.Languages {
		langs.Versions[l.Name] = l.Version
	}
	return apinode.Config{
		API: api.Config{
			AuthTokens: config.List(cfg.API.AuthTokens), AuthzTokens: config.List(cfg.API.AuthzTokens),
			AuthHeader: cfg.API.AuthHeader, AuthzHeader: cfg.API.AuthzHeader,
			MaxQueue: cfg.API.MaxQueue, CORSOrigins: config.List(cfg.API.CORSOrigins), Hosts: apiHosts(cfg),
			CallbackAllow: config.List(cfg.API.CallbackAllow), EnableDelete: cfg.API.EnableDelete,
			ReplyQueue: cfg.APIReplyQueue(), Node: cfg.APINode(), QueueTimeout: cfg.API.QueueTimeout,
			Quotas: api.Quotas{InFlight: cfg.API.ClientInFlight, PerMinute: cfg.API.ClientPerMinute, Sandbox: cfg.API.ClientSandbox,
				Callbacks: cfg.API.ClientCallbacks},
			StoreMaxBytes: cfg.API.StoreMaxBytes,
			MaxBody:       int64(cfg.Worker.MaxJobBytes), Policy: policyFor(cfg, img),
			WorkerUser: workers,
		},
		Broker: apiBroker(cfg), Store: dbURL, Languages: langs, MaxAge: cfg.API.MaxAge,
	}, nil
}

// apiBroker is the API's broker connection: its own URL (its own user),
// the workers' TLS files and topology.
func apiBroker(cfg config.Config) broker.Config {
	b := queueConfig(cfg)
	b.URL = cfg.APIBrokerURL()
	// With a user of its own, the API may neither declare codebench's
	// queues (it looks for them) nor write the default exchange (it would
	// reach every queue): it publishes through the api topology's jobs_ex.
	if cfg.API.RabbitURL != "" {
		b.Passive, b.Topology = true, queue.TopologyAPI
	}
	return b
}

// apiHosts are the Host names the API answers: api_hosts, else the
// loopback names and the listen address's own host.
func apiHosts(cfg config.Config) []string {
	if hosts := config.List(cfg.API.Hosts); len(hosts) > 0 {
		return hosts
	}
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, _, err := net.SplitHostPort(cfg.API.Addr); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
		hosts = append(hosts, strings.ToLower(h))
	}
	return hosts
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
