package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/cleanup"
	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/network"
	"github.com/codebench/codebench/internal/provision"
)

// brokerHosts are the broker's addresses (each host of rabbitmq_url,
// resolved): no guest reaches them, whatever the allow-list says short of
// naming them.
func brokerHosts(cfg config.Config) []netip.Prefix {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []netip.Prefix
	for _, raw := range strings.Split(cfg.Worker.RabbitURL, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Hostname() == "" {
			continue
		}
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", u.Hostname())
		if err != nil {
			continue
		}
		for _, a := range addrs {
			out = append(out, netip.PrefixFrom(a.Unmap(), 32))
		}
	}
	return out
}

// networkConfig is the guest network's configuration for the chosen
// driver: the tap belongs to the user its VMM runs as.
func (e *env) networkConfig(cfg config.Config) (network.Config, error) {
	allow, err := cfg.NetworkAllow()
	if err != nil {
		return network.Config{}, err
	}
	n := network.Config{
		Name: cfg.Network.Name, StateDir: networkStateDir(cfg),
		PluginDirs: filepath.SplitList(cfg.Network.CNIPath), Subnet: netip.MustParsePrefix(cfg.Network.Subnet),
		IPMasq: cfg.Network.IPMasq, Allow: allow, ConnPerSecond: cfg.Network.ConnPerSecond, BandwidthKBps: cfg.Network.BandwidthKBps,
		Deny: brokerHosts(cfg),
	}
	if e.desc.TapOwner == nil {
		return n, fmt.Errorf("the %s driver gives its sandboxes no network", e.choice.Name)
	}
	n.TapUID, n.TapGID, err = e.desc.TapOwner(e.driver)
	if err != nil {
		return n, err
	}
	return n, nil
}

func networkStateDir(cfg config.Config) string {
	return filepath.Join(cfg.DataDir, "network", cfg.Network.Name)
}

// networked is the supply of sandboxes for jobs that ask for a network,
// on a network manager configured for the chosen driver.
func (e *env) networked(ctx context.Context, cfg config.Config, log *slog.Logger) (*provision.Networked, error) {
	ncfg, err := e.networkConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	mgr, err := network.New(ctx, ncfg, log)
	if err != nil {
		return nil, err
	}
	prov, err := e.provisionerWith(ctx, cfg, mgr, log)
	if err != nil && prov == nil {
		return nil, errors.Join(err, cleanup.Run(ctx, mgr.Close))
	}
	log.Info("network: jobs may ask for a network", "subnet", cfg.Network.Subnet, "allow", cfg.Network.Allow,
		"ipmasq", cfg.Network.IPMasq, "fences", mgr.Table())
	return &provision.Networked{Net: mgr, Prov: prov}, nil
}

// reclaimNetwork removes what a killed worker's network left (namespaces,
// leases, fences) when this worker runs without networking.
func reclaimNetwork(ctx context.Context, e *env, cfg config.Config, log *slog.Logger) {
	if cfg.Network.Enabled {
		return // network.New reclaims
	}
	if _, err := os.Stat(filepath.Join(networkStateDir(cfg), "attachments")); err != nil {
		return
	}
	// The driver does not matter for removing what is there.
	ncfg, _ := e.networkConfig(cfg)
	if ncfg.Name == "" {
		return
	}
	if mgr, err := network.New(ctx, ncfg, log); err == nil {
		err = mgr.Close(ctx)
		log.Info("network: reclaimed a previous worker's network", "err", err)
	}
}
