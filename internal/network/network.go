// Package network gives a sandbox that asks for it a network of its own:
// a network namespace, a veth to the host and a tap device in it, made by
// CNI plugins (ptp, host-local, tc-redirect-tap, as the original worker's
// conflist had them) through libcni, and fenced by nftables rules the
// worker owns (fence.go). Sandboxes without it have no network device.
package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"golang.org/x/sys/unix"

	"github.com/codebench/codebench/internal/cleanup"
	"github.com/codebench/codebench/internal/sandbox"
)

// Config is the network's data.
type Config struct {
	// Name names the CNI network, the nftables table (codebench_<Name>)
	// and the network namespaces (cb<Name>-<sandbox id>); one per worker
	// on a host.
	Name string
	// StateDir holds the conflist, host-local's leases, libcni's cache and
	// a record of each attachment (for the reconciler).
	StateDir string
	// PluginDirs are searched for the CNI plugins.
	PluginDirs []string
	Subnet     netip.Prefix
	// IPMasq masquerades guests' traffic behind the host's address (ptp's
	// ipMasq); without it, the allowed networks must route the subnet back.
	IPMasq bool
	// Allow are the networks guests may connect to; none: nowhere.
	Allow []netip.Prefix
	// Deny are addresses no guest reaches even under a wide allow-list
	// (the broker's hosts), besides DefaultDeny; an allow entry inside one
	// of them names it and opens it.
	Deny []netip.Prefix
	// ConnPerSecond bounds each guest's new connections.
	ConnPerSecond int
	// BandwidthKBps bounds each guest's traffic, each way (0: no bound):
	// one established flow would otherwise have the host link's bandwidth.
	BandwidthKBps int
	// TapUID, TapGID own the tap device (the jailed VMM's user).
	TapUID, TapGID int
}

// NetNSDir is where named network namespaces live (as iproute2 keeps them).
const NetNSDir = "/run/netns"

// Interface names inside a sandbox's namespace.
const (
	ifName  = "eth0" // ptp's end of the veth
	tapName = "tap0" // tc-redirect-tap's tap, redirected to and from eth0
)

// Manager attaches and detaches sandboxes.
type Manager struct {
	cfg  Config
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
	log  *slog.Logger

	mu       sync.Mutex // guards attached
	attached map[string]attachment
}

// attachment is what Detach needs, also written to StateDir/attachments.
type attachment struct {
	ID      string `json:"id"`
	NetNS   string `json:"netns"`
	HostIf  string `json:"host_if"`
	Address string `json:"address"`
}

// Conflist is the CNI network: the original worker's, with the subnet,
// masquerading and lease directory from cfg.
func Conflist(cfg Config) ([]byte, error) {
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "codebench-" + cfg.Name,
		"plugins": []any{
			map[string]any{"type": "ptp", "ipMasq": cfg.IPMasq, "ipam": map[string]any{
				"type": "host-local", "subnet": cfg.Subnet.String(), "resolvConf": "/etc/resolv.conf",
				"dataDir": filepath.Join(cfg.StateDir, "leases"),
				// The namespace's own default route, as the guest's.
				"routes": []any{map[string]any{"dst": "0.0.0.0/0"}},
			}},
			map[string]any{"type": "tc-redirect-tap"},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// New writes the conflist, checks the plugins are there, installs the
// fences and reclaims what a killed worker of the same name left.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Manager, error) {
	if cfg.Name == "" || cfg.StateDir == "" || !cfg.Subnet.IsValid() || !cfg.Subnet.Addr().Is4() {
		return nil, errors.New("network: a name, a state dir and an IPv4 subnet are required")
	}
	if cfg.ConnPerSecond <= 0 {
		cfg.ConnPerSecond = 20
	}
	if err := Check(cfg.PluginDirs, cfg.IPMasq); err != nil {
		return nil, err
	}
	for _, d := range []string{cfg.StateDir, filepath.Join(cfg.StateDir, "attachments"), filepath.Join(cfg.StateDir, "cache")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("network: %w", err)
		}
	}
	b, err := Conflist(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cfg.StateDir, "codebench.conflist"), b, 0o600); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("network: conflist: %w", err)
	}
	m := &Manager{cfg: cfg, list: list, log: log, attached: map[string]attachment{},
		cni: libcni.NewCNIConfigWithCacheDir(cfg.PluginDirs, filepath.Join(cfg.StateDir, "cache"), nil)}
	if err := installFences(ctx, m.Table(), cfg); err != nil {
		return nil, fmt.Errorf("network: fences: %w", err)
	}
	if err := m.reclaim(ctx); err != nil {
		log.Warn("network: reclaiming a previous worker's attachments", "err", err)
	}
	return m, nil
}

// Table is the nftables table of the fences.
func (m *Manager) Table() string { return "codebench_" + m.cfg.Name }

// nsName is sandbox id's network namespace name.
func (m *Manager) nsName(id string) string { return "cb" + m.cfg.Name + "-" + id }

// Check reports what this host lacks for guest networks: the CNI
// plugins in dirs, nft for the fences, iptables for ptp's masquerading.
func Check(dirs []string, ipmasq bool) error {
	var errs []error
	for _, p := range []string{"ptp", "host-local", "tc-redirect-tap"} {
		if _, err := findPlugin(dirs, p); err != nil {
			errs = append(errs, err)
		}
	}
	tools := []string{"nft", "ip"}
	if ipmasq {
		tools = append(tools, "iptables")
	}
	for _, b := range tools {
		if _, err := exec.LookPath(b); err != nil {
			errs = append(errs, fmt.Errorf("network: %s not found (scripts/install-deps.sh installs it)", b))
		}
	}
	return errors.Join(errs...)
}

func findPlugin(dirs []string, name string) (string, error) {
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("network: CNI plugin %s not found in %v (scripts/install-deps.sh installs ptp and host-local; make builds tc-redirect-tap)", name, dirs)
}

// Attach makes sandbox id's network: its namespace, the veth and tap by
// CNI, the fences on its host-side veth and address.
func (m *Manager) Attach(ctx context.Context, id string) (_ *sandbox.NIC, err error) {
	path, err := createNetNS(ctx, m.nsName(id))
	if err != nil {
		return nil, err
	}
	a := attachment{ID: id, NetNS: path}
	defer func() {
		if err != nil {
			err = errors.Join(err, cleanup.Run(ctx, func(c context.Context) error { return m.detach(c, a) }))
		}
	}()
	res, err := m.cni.AddNetworkList(ctx, m.list, m.runtimeConf(id, path))
	if err != nil {
		return nil, fmt.Errorf("network: CNI add: %w", err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("network: CNI result: %w", err)
	}
	nic := &sandbox.NIC{NetNS: path, Tap: tapName}
	vmIf := -1
	for i, itf := range r.Interfaces {
		switch {
		case itf.Sandbox == "":
			a.HostIf = itf.Name // ptp's host end
		case itf.Sandbox == id && itf.Name == tapName:
			vmIf, nic.MAC = i, itf.Mac // tc-redirect-tap's "the VM's interface"
		}
	}
	for _, ip := range r.IPs {
		if ip.Interface != nil && *ip.Interface == vmIf && ip.Address.IP.To4() != nil {
			ones, _ := ip.Address.Mask.Size()
			addr, _ := netip.AddrFromSlice(ip.Address.IP.To4())
			gw, _ := netip.AddrFromSlice(ip.Gateway.To4())
			nic.Addr, nic.Gateway = netip.PrefixFrom(addr, ones), gw
		}
	}
	if a.HostIf == "" || vmIf < 0 || !nic.Addr.IsValid() || !nic.Gateway.IsValid() {
		return nil, fmt.Errorf("network: CNI result without a host interface, a VM interface and its address: %v", r)
	}
	a.Address = nic.Addr.Addr().String()
	if err := m.record(a); err != nil {
		return nil, err
	}
	if err := fenceGuest(ctx, m.Table(), a.HostIf, nic.Addr.Addr()); err != nil {
		return nil, err
	}
	m.log.Debug("network attached", "vm_id", id, "address", nic.Addr, "host_if", a.HostIf)
	return nic, nil
}

func (m *Manager) runtimeConf(id, netns string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: ifName, Args: [][2]string{
		{"IgnoreUnknown", "true"},
		{"TC_REDIRECT_TAP_NAME", tapName},
		{"TC_REDIRECT_TAP_UID", strconv.Itoa(m.cfg.TapUID)},
		{"TC_REDIRECT_TAP_GID", strconv.Itoa(m.cfg.TapGID)},
	}}
}

// Detach undoes Attach for sandbox id: CNI DEL (which releases the lease),
// the fences' elements, the namespace, the record. Called once the
// sandbox is stopped; an id never attached or already detached is fine.
func (m *Manager) Detach(ctx context.Context, id string) error {
	m.mu.Lock()
	a, ok := m.attached[id]
	m.mu.Unlock()
	if !ok {
		return nil
	}
	return m.detach(ctx, a)
}

func (m *Manager) detach(ctx context.Context, a attachment) error {
	var errs []error
	delErr := m.cni.DelNetworkList(ctx, m.list, m.runtimeConf(a.ID, a.NetNS))
	if delErr != nil {
		errs = append(errs, fmt.Errorf("network: CNI del: %w", delErr))
	}
	if addr, err := netip.ParseAddr(a.Address); err == nil && a.HostIf != "" {
		if err := unfenceGuest(ctx, m.Table(), a.HostIf, addr); err != nil {
			errs = append(errs, err)
		}
	}
	if delErr != nil {
		// What the plugins hold (the lease, the masquerading rule) is
		// still there: the attachment and its namespace stay (ptp finds
		// the guest's address to unmasquerade in the namespace), and Close
		// or the next worker's reclaim runs the DEL again.
		return errors.Join(errs...)
	}
	if err := deleteNetNS(a.NetNS); err != nil {
		errs = append(errs, err)
	}
	m.mu.Lock()
	delete(m.attached, a.ID)
	m.mu.Unlock()
	if err := os.Remove(m.recordPath(a.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (m *Manager) recordPath(id string) string {
	return filepath.Join(m.cfg.StateDir, "attachments", id+".json")
}

func (m *Manager) record(a attachment) error {
	m.mu.Lock()
	m.attached[a.ID] = a
	m.mu.Unlock()
	b, _ := json.Marshal(a)
	return os.WriteFile(m.recordPath(a.ID), b, 0o600)
}

// reclaim detaches what the records of a killed worker name, and removes
// namespaces of this network that no record names.
func (m *Manager) reclaim(ctx context.Context) error {
	var errs []error
	files, _ := filepath.Glob(filepath.Join(m.cfg.StateDir, "attachments", "*.json"))
	for _, f := range files {
		var a attachment
		b, err := os.ReadFile(f)
		if err == nil {
			err = json.Unmarshal(b, &a)
		}
		if err != nil || a.ID == "" {
			errs = append(errs, os.Remove(f))
			continue
		}
		m.log.Info("network: reclaiming a dead sandbox's network", "vm_id", a.ID)
		errs = append(errs, m.detach(ctx, a))
	}
	nss, _ := filepath.Glob(filepath.Join(NetNSDir, m.nsName("*")))
	for _, ns := range nss {
		errs = append(errs, deleteNetNS(ns))
	}
	return errors.Join(errs...)
}

// Close detaches every sandbox still attached and removes the fences.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	var as []attachment
	for _, a := range m.attached {
		as = append(as, a)
	}
	m.mu.Unlock()
	var errs []error
	for _, a := range as {
		errs = append(errs, m.detach(ctx, a))
	}
	errs = append(errs, removeFences(ctx, m.Table()))
	return errors.Join(errs...)
}

// Leftovers lists what this network holds on the host: namespaces,
// leases, attachment records, and whether its fences table exists (tests,
// reconciler reports).
func (m *Manager) Leftovers(ctx context.Context) (namespaces, leases, records []string, table bool) {
	return Leftovers(ctx, m.cfg)
}

// Leftovers is what the network named in cfg holds now, without a
// Manager (doctor counts it): namespaces, leases, attachment records, and
// whether its fences' table exists. With no worker running, all of it is
// left over from one that was killed (the next worker reclaims it).
func Leftovers(ctx context.Context, cfg Config) (namespaces, leases, records []string, table bool) {
	m := &Manager{cfg: cfg}
	namespaces, _ = filepath.Glob(filepath.Join(NetNSDir, m.nsName("*")))
	ls, _ := filepath.Glob(filepath.Join(m.cfg.StateDir, "leases", "*", "*"))
	for _, l := range ls {
		base := filepath.Base(l)
		if base != "lock" && !strings.HasPrefix(base, "last_reserved_ip") {
			leases = append(leases, l)
		}
	}
	records, _ = filepath.Glob(filepath.Join(m.cfg.StateDir, "attachments", "*.json"))
	return namespaces, leases, records, tableExists(ctx, m.Table())
}

// createNetNS makes a named network namespace at NetNSDir/name, with
// iproute2 ("ip netns add"), in a process of its own. Not from a Go
// thread: a thread left in another namespace must end, and a VMM forked
// from that thread earlier would get its parent-death signal with it.
func createNetNS(ctx context.Context, name string) (string, error) {
	path := filepath.Join(NetNSDir, name)
	out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("network: namespace %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return path, nil
}

// deleteNetNS unmounts and removes a named namespace (gone is fine).
func deleteNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("network: unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("network: %w", err)
	}
	return nil
}
