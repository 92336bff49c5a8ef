// Package config is the only place that reads the environment. Every other
// package receives plain structs, validated here.
package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
)

// Config is everything the codebench binary can be told.
type Config struct {
	DataDir string // CODEBENCH_DATA_DIR: images and templates
	RunDir  string // CODEBENCH_RUN_DIR: per-VM sockets and logs
	Image   string // CODEBENCH_IMAGE: hash or directory; "" = the profile's
	// ImageLanguages is the language profile images are built from and
	// the worker, the API and doctor use the image of (CODEBENCH_LANGUAGES:
	// "default", "all" or a list of languages).
	ImageLanguages string
	Mirror         string // CODEBENCH_DEBIAN_MIRROR: overrides the host's apt sources

	VM      VM
	Worker  Worker
	Limits  Limits
	Network Network
	API     API
	// Sandboxes is codebench sandboxes': long-lived sandboxes the E2B SDK
	// drives (docs/SANDBOXES.md).
	Sandboxes Sandboxes
	Verbose   bool // CODEBENCH_DEBUG
	// DebugAddr serves expvar and pprof for the worker (loopback only;
	// CODEBENCH_DEBUG_ADDR, off by default).
	DebugAddr string
	// MetricsAddr serves Prometheus metrics on /metrics and /healthz,
	// /readyz (CODEBENCH_METRICS_ADDR, e.g. 127.0.0.1:9464; empty: off).
	MetricsAddr string
	// MetricsPublic allows MetricsAddr off loopback (CODEBENCH_METRICS_PUBLIC):
	// metrics say what a worker runs and how busy it is, to anyone who asks.
	MetricsPublic bool
	// Warnings are what Load found questionable but not wrong (a password
	// file others can read): the command logs them.
	Warnings []string
}

// API is codebench api's: the HTTP server that speaks Judge0's API.
type API struct {
	Addr string // CODEBENCH_API_ADDR (api_addr), default 127.0.0.1:2358
	// AuthTokens and AuthzTokens are comma-separated (empty: none
	// required; no list and no delete without authz tokens).
	AuthTokens  string // CODEBENCH_API_AUTH_TOKENS
	AuthzTokens string // CODEBENCH_API_AUTHZ_TOKENS
	AuthHeader  string // CODEBENCH_API_AUTH_HEADER, default X-Auth-Token
	AuthzHeader string // CODEBENCH_API_AUTHZ_HEADER, default X-Auth-User
	// DatabaseURL is the store: a SQLite file path (default
	// <data dir>/api.db).
	DatabaseURL string // CODEBENCH_API_DATABASE_URL
	MaxQueue    int    // CODEBENCH_API_MAX_QUEUE: submissions in flight, 503 beyond
	// CORSOrigins are comma-separated origins a page may call the API
	// from, "*" any; empty (the default): none (a page the operator's
	// browser visits cannot use the API).
	CORSOrigins string // CODEBENCH_API_CORS_ORIGINS
	// Hosts are the names a request's Host may give (comma-separated;
	// empty: the loopback names and the listen address's host): a page
	// that rebinds its own name to 127.0.0.1 is refused.
	Hosts string // CODEBENCH_API_HOSTS
	// CallbackAllow are the hosts ("host" or "host:port", comma-separated)
	// a callback_url may name; empty (the default): callbacks are off.
	CallbackAllow string // CODEBENCH_API_CALLBACK_ALLOW
	// EnableDelete allows DELETE /submissions/{token} (with an authz
	// token), as Judge0's enable_submission_delete; off by default.
	EnableDelete bool // CODEBENCH_API_ENABLE_DELETE
	// ReplyQueue is the durable queue statuses come back on; it must start
	// with codebench.api. (the prefix every worker allows).
	ReplyQueue string // CODEBENCH_API_REPLY_QUEUE
	// MaxAge expires finished submissions older than this (0: never).
	MaxAge time.Duration // CODEBENCH_API_MAX_AGE
	// RabbitURL is the API's own broker connection, as its own user
	// (codebench-api; empty: RABBITMQ_URL's): CODEBENCH_API_RABBITMQ_URL.
	RabbitURL string
	// User is the API's broker user, which workers let name the API's
	// reply queues (CODEBENCH_API_USER; empty: the user of the API's
	// broker URL).
	User string
	// Node names this API node (CODEBENCH_API_NODE; empty: the host's
	// name and the listen port): its reply queue is ReplyQueue.<node>.
	Node string
	// QueueTimeout: a submission no worker took within it is ended
	// (CODEBENCH_API_QUEUE_TIMEOUT).
	QueueTimeout time.Duration
	// One client's quotas (its auth token, else its address; 0: none):
	// submissions in flight, made in a minute, the sandbox time those in
	// flight may take at their limits, callbacks waiting
	// (CODEBENCH_API_CLIENT_IN_FLIGHT, _PER_MINUTE, _SANDBOX, _CALLBACKS).
	ClientInFlight, ClientPerMinute, ClientCallbacks int
	ClientSandbox                                    time.Duration
	// StoreMaxBytes bounds the store: beyond it no submission is taken
	// (503) until old ones expire (CODEBENCH_API_STORE_MAX_BYTES; 0: none).
	StoreMaxBytes int64
}

// APINode is this API node's name: api_node, else the host's name and the
// listen port, in the characters a queue name takes.
func (c Config) APINode() string {
	n := c.API.Node
	if n == "" {
		host, _ := os.Hostname()
		_, port, _ := net.SplitHostPort(c.API.Addr)
		n = host + "-" + port
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '-'
	}, n)
}

// APIReplyQueue is this node's reply queue: api_reply_queue.<node>.
func (c Config) APIReplyQueue() string { return c.API.ReplyQueue + "." + c.APINode() }

// APIBrokerURL is the API's broker URL: its own, else the workers'.
func (c Config) APIBrokerURL() string {
	if c.API.RabbitURL != "" {
		return c.API.RabbitURL
	}
	return c.Worker.RabbitURL
}

// APIUser is the API's broker user: api_user, else the user of its broker
// URL (of the first node of a cluster's list); "" when none can be told.
func (c Config) APIUser() string {
	if c.API.User != "" {
		return c.API.User
	}
	u, err := url.Parse(strings.TrimSpace(strings.Split(c.APIBrokerURL(), ",")[0]))
	if err != nil || u.User == nil {
		return ""
	}
	return u.User.Username()
}

// List splits a comma-separated setting into its non-empty items.
func List(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// VM sizes and drives the sandbox.
type VM struct {
	Accel    string // CODEBENCH_ACCEL: auto, kvm or tcg
	AllowTCG bool   // CODEBENCH_ALLOW_TCG: the worker refuses TCG without it
	// AllowRootVMM: as root, a VMM may run outside its jail (Firecracker
	// without its jailer, QEMU without the codebench-vm user); without it
	// such a driver is refused (CODEBENCH_ALLOW_ROOT_VMM).
	AllowRootVMM bool
	MemoryMB     int    // CODEBENCH_VM_MEMORY_MB
	VCPUs        int    // CODEBENCH_VM_VCPUS
	TSCKHz       int64  // CODEBENCH_TSC_KHZ: 0 = read from the host
	QEMU         string // CODEBENCH_QEMU: the qemu-system-x86_64 binary
	// QEMUJail (CODEBENCH_QEMU_JAIL) is auto (default: jailed where the
	// host allows), on (jailed or fail) or off; VMUser (CODEBENCH_VM_USER,
	// default codebench-vm) is the unprivileged user a jailed QEMU runs as.
	QEMUJail  string
	VMUser    string
	BootLimit time.Duration
	// Snapshots: pool VMs are clones of a warmed-up template when the
	// driver can (CODEBENCH_SNAPSHOTS, default true).
	Snapshots bool
	// The template is rebuilt in the background once it is TemplateMaxAge
	// old (CODEBENCH_TEMPLATE_MAX_AGE, default 24h) or was cloned
	// TemplateMaxClones times (CODEBENCH_TEMPLATE_MAX_CLONES, default 0:
	// no limit); zero turns either off.
	TemplateMaxAge    time.Duration
	TemplateMaxClones int
	// Driver (CODEBENCH_DRIVER): "auto" (default: a KVM microVM, else
	// gVisor, else QEMU under TCG where allowed), "qemu", "firecracker" or
	// "gvisor".
	Driver      string
	Firecracker string // CODEBENCH_FIRECRACKER: the binary
	Jailer      Jailer
	// Runsc is gVisor's runsc binary (CODEBENCH_RUNSC); GVisorPlatform is
	// systrap or ptrace, empty to detect (CODEBENCH_GVISOR_PLATFORM).
	Runsc          string
	GVisorPlatform string
}

// Jailer configures Firecracker's jailer (CODEBENCH_JAILER=true enables it).
type Jailer struct {
	Enabled  bool
	Binary   string // CODEBENCH_JAILER_BINARY
	UID, GID int    // CODEBENCH_JAILER_UID, CODEBENCH_JAILER_GID
	Chroot   string // CODEBENCH_JAILER_CHROOT
	NetNS    string // CODEBENCH_JAILER_NETNS
}

// Worker configures the daemon.
type Worker struct {
	// RabbitURL is the broker, or a comma-separated list of a cluster's
	// nodes tried in turn (RABBITMQ_URL); amqps:// for TLS.
	RabbitURL string
	// RabbitPasswordFile holds the broker password, put into every URL
	// (CODEBENCH_RABBITMQ_PASSWORD_FILE); RabbitCAFile, RabbitCertFile and
	// RabbitKeyFile are PEM files for TLS: the CA that signed the broker's
	// certificate, and a client certificate and key where the broker
	// asks for one (CODEBENCH_RABBITMQ_CA_FILE, _CERT_FILE, _KEY_FILE).
	RabbitPasswordFile                          string
	RabbitCAFile, RabbitCertFile, RabbitKeyFile string
	Topology                                    string        // CODEBENCH_TOPOLOGY: "seed" (queue jobs) or "api" (jobs_ex/jobs_rk)
	Concurrency                                 int           // CODEBENCH_CONCURRENCY: jobs in flight
	PoolSize                                    int           // CODEBENCH_POOL_SIZE: warm VMs
	PoolBoots                                   int           // CODEBENCH_POOL_BOOTS: concurrent boots while refilling
	PoolWait                                    time.Duration // CODEBENCH_POOL_WAIT: how long a job waits for a VM
	StatusExpires                               time.Duration // CODEBENCH_STATUS_EXPIRES: x-expires of job_status_<id>
	Grace                                       time.Duration // CODEBENCH_SHUTDOWN_GRACE
	MaxCodeBytes                                int           // CODEBENCH_MAX_CODE_BYTES
	ReconnectMax                                time.Duration // CODEBENCH_RECONNECT_MAX
	Quorum                                      bool          // CODEBENCH_QUORUM: jobs is a quorum queue with a delivery limit
	DeliveryLimit                               int           // CODEBENCH_DELIVERY_LIMIT
	// MaxJobBytes bounds a job message before it is decoded
	// (CODEBENCH_MAX_JOB_BYTES).
	MaxJobBytes int
	// MaxStatusBytes caps a status message (CODEBENCH_MAX_STATUS_BYTES);
	// the broker's own limit caps it further. Outputs are trimmed to fit.
	MaxStatusBytes int
	// MaxRequeues is how often one worker requeues a job before it ends it
	// with internal_error (CODEBENCH_MAX_REQUEUES).
	MaxRequeues int
	// StatusQueueWithReply: a job with an AMQP reply_to also gets its
	// job_status_<id> queue (CODEBENCH_STATUS_QUEUE_WITH_REPLY, default
	// true); false sends its statuses to the reply queue only.
	StatusQueueWithReply bool
	// ReplyToPattern allows reply_to queue names beyond RabbitMQ's own
	// (direct reply-to, amq.gen-*): an anchored regular expression
	// (CODEBENCH_REPLY_TO_PATTERN, default none). The jobs queue,
	// jobs.dead and status queues stay refused whatever it says.
	ReplyToPattern string
	// WorkerUser is the broker user workers publish statuses as: "codebench
	// submit --watch" takes only statuses with that user_id
	// (CODEBENCH_WORKER_USER; default the user of rabbitmq_url).
	WorkerUser string
	// ManagementURL is the broker's management API, used by tools and tests
	// (RABBITMQ_MANAGEMENT_URL, default http://127.0.0.1:15672).
	ManagementURL string
	// BrokerNode is the broker's Erlang node name, for local administration
	// by tests (RABBITMQ_NODENAME, default rabbit@localhost).
	BrokerNode string
}

// Sandboxes configures the sandbox host (codebench sandboxes).
type Sandboxes struct {
	// Addr is where the E2B control and data planes listen
	// (CODEBENCH_SANDBOXES_ADDR, sandboxes_addr); off loopback only with
	// APIKeys.
	Addr string
	// APIKeys are the accepted X-API-KEY values, comma-separated
	// (CODEBENCH_SANDBOXES_API_KEYS); empty: any key, on loopback only.
	APIKeys string
	// Dir keeps each sandbox's record and, while it is paused, its
	// checkpoint (CODEBENCH_SANDBOXES_DIR; default <data dir>/sandboxes).
	Dir string
	// Max is how many sandboxes, running and paused, this host keeps
	// (CODEBENCH_SANDBOXES_MAX); MaxRunning how many of them run.
	Max, MaxRunning int
	// Per API key (CODEBENCH_SANDBOXES_KEY_RUNNING, _KEY_PAUSED,
	// _KEY_MEMORY_MB): beyond them a create or a resume is refused with
	// 429, the SDK's RateLimitError.
	KeyRunning, KeyPaused, KeyMemoryMB int
	// Pool is how many sandboxes are kept warm (CODEBENCH_SANDBOXES_POOL).
	Pool int
	// HomeMB sizes the user's home, a tmpfs counted in the sandbox's
	// memory (CODEBENCH_SANDBOXES_HOME_MB).
	HomeMB int
	// DefaultTimeout is a sandbox's life when the client names none;
	// MaxTimeout the most it may ask for (CODEBENCH_SANDBOXES_TIMEOUT,
	// CODEBENCH_SANDBOXES_MAX_TIMEOUT).
	DefaultTimeout, MaxTimeout time.Duration
}

// Network is the opt-in guest network (docs/NETWORKING.md): off by
// default; a job that asks for it is refused unless Enabled.
type Network struct {
	Enabled bool // CODEBENCH_NETWORK
	// Name tells this worker's network apart from another worker's on
	// the same host: its nftables table, namespaces and state directory
	// (CODEBENCH_NETWORK_NAME, default "w").
	Name string
	// Subnet is host-local's IPv4 range for guests
	// (CODEBENCH_NETWORK_SUBNET, default the original's 192.168.127.0/24).
	Subnet string
	// IPMasq masquerades guests' traffic behind the host's address, as
	// ptp's ipMasq (CODEBENCH_NETWORK_IPMASQ, default true).
	IPMasq bool
	// Allow is the comma-separated list of CIDRs guests may connect to
	// (CODEBENCH_NETWORK_ALLOW; empty, the default: nowhere).
	Allow string
	// ConnPerSecond bounds each guest's new connections
	// (CODEBENCH_NETWORK_CONN_RATE, default 20).
	ConnPerSecond int
	// BandwidthKBps bounds each guest's traffic, each way, in KB/s
	// (CODEBENCH_NETWORK_BANDWIDTH_KBPS; 0: no bound).
	BandwidthKBps int
	// CNIPath is where the CNI plugins are, colon-separated
	// (CODEBENCH_CNI_PATH, default /opt/cni/bin:/usr/lib/cni).
	CNIPath string
}

// NetworkAllow parses Network.Allow.
func (c *Config) NetworkAllow() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(c.Network.Allow, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil || !p.Addr().Is4() {
			return nil, fmt.Errorf("network_allow: %q is not an IPv4 CIDR", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Limits are defaults and maxima for jobs.
type Limits struct {
	WallMS, MaxWallMS           int64 // CODEBENCH_WALL_MS, CODEBENCH_MAX_WALL_MS
	CPUMS, MaxCPUMS             int64
	MemoryKB, MaxMemoryKB       int64
	StackKB, MaxStackKB         int64
	Processes, MaxProcesses     int64
	OutputBytes, MaxOutputBytes int64
	FileSizeKB, MaxFileSizeKB   int64
	CompileWallMS               int64
	// MaxJobWallMS caps the whole job: every compile and every run or
	// test at its wall limit (CODEBENCH_MAX_JOB_WALL_MS); a job whose
	// limits multiply past it is invalid.
	MaxJobWallMS int64
	MaxRuns      int // CODEBENCH_MAX_RUNS
	MaxTests     int // CODEBENCH_MAX_TESTS: test cases per job
}

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		DataDir:        "/var/lib/codebench",
		ImageLanguages: "default",
		RunDir:         "/run/codebench",
		VM: VM{
			Accel: "auto", MemoryMB: 1024, VCPUs: 1, QEMU: "qemu-system-x86_64", QEMUJail: "auto", VMUser: "codebench-vm",
			BootLimit: 60 * time.Second, Snapshots: true, TemplateMaxAge: 24 * time.Hour,
			Driver: "auto", Firecracker: "firecracker", Runsc: "runsc",
			Jailer: Jailer{Binary: "jailer", UID: 1500, GID: 1500, Chroot: "/srv/jailer"},
		},
		Worker: Worker{
			RabbitURL: "amqp://guest:guest@127.0.0.1:5672/", Topology: "seed",
			Concurrency: 2, PoolSize: 2, PoolBoots: 2, PoolWait: 2 * time.Minute,
			StatusExpires: time.Hour, Grace: 30 * time.Second, MaxCodeBytes: 1 << 20,
			ReconnectMax: 30 * time.Second, DeliveryLimit: 5,
			MaxJobBytes: 8 << 20, MaxStatusBytes: 8 << 20, MaxRequeues: 5, StatusQueueWithReply: true,
			ManagementURL: "http://127.0.0.1:15672", BrokerNode: "rabbit@localhost",
		},
		API: API{Addr: "127.0.0.1:2358", AuthHeader: "X-Auth-Token", AuthzHeader: "X-Auth-User", MaxQueue: 10000,
			ReplyQueue: "codebench.api.replies", QueueTimeout: time.Hour,
			ClientInFlight: 500, ClientPerMinute: 600, ClientSandbox: 4 * time.Hour, ClientCallbacks: 16, StoreMaxBytes: 4 << 30, MaxAge: 7 * 24 * time.Hour},
		Sandboxes: Sandboxes{Addr: "127.0.0.1:2359", Max: 1000, MaxRunning: 100, KeyRunning: 20, KeyPaused: 200,
			KeyMemoryMB: 16 << 10, Pool: 2, HomeMB: 512, DefaultTimeout: 5 * time.Minute, MaxTimeout: 24 * time.Hour},
		Network: Network{Name: "w", Subnet: "192.168.127.0/24", IPMasq: true, ConnPerSecond: 20,
			CNIPath: "/opt/cni/bin:/usr/lib/cni"},
		Limits: Limits{
			WallMS: 10_000, MaxWallMS: 60_000,
			CPUMS: 5_000, MaxCPUMS: 30_000,
			MemoryKB: 128 * 1024, MaxMemoryKB: 256 * 1024,
			StackKB: 8 * 1024, MaxStackKB: 64 * 1024,
			Processes: 60, MaxProcesses: 256,
			OutputBytes: 64 * 1024, MaxOutputBytes: 4 << 20,
			FileSizeKB: 1024, MaxFileSizeKB: 64 * 1024,
			CompileWallMS: 60_000,
			MaxJobWallMS:  30 * 60_000,
			MaxRuns:       20,
			MaxTests:      256,
		},
	}
}

// FromEnv is Load with the environment, and the config file it names in
// CODEBENCH_CONFIG, if any.
func FromEnv() (Config, error) {
	return Load(os.LookupEnv, "", nil)
}

// FromEnvAnd is FromEnv with a config file path (empty: CODEBENCH_CONFIG)
// and flag overrides by key, for commands that take them.
func FromEnvAnd(path string, overrides map[string]string) (Config, error) {
	return Load(os.LookupEnv, path, overrides)
}

// ScrubEnv removes from this process's environment every variable the
// configuration is read from (the broker URL and its password among them),
// so that the processes it starts (runsc, QEMU, the CNI plugins, nft) do
// not inherit them. Call it once the configuration is loaded for good.
func ScrubEnv() error {
	var errs []error
	for _, st := range settings(new(Config)) {
		errs = append(errs, os.Unsetenv(st.env))
	}
	errs = append(errs, os.Unsetenv(EnvConfigFile), os.Unsetenv("RABBITMQ_PASSWORD"))
	return errors.Join(errs...)
}

// fromLookup is FromEnv with another environment (tests).
func fromLookup(lookup func(string) (string, bool)) (Config, error) {
	return Load(lookup, "", nil)
}

// Load builds the configuration: the defaults, then the TOML file (path,
// or CODEBENCH_CONFIG from the environment when path is empty), then the
// environment, then overrides (from command-line flags, by key). Unknown
// keys and values of the wrong type are refused, naming the key; then the
// whole is validated.
func Load(lookup func(string) (string, bool), path string, overrides map[string]string) (Config, error) {
	c := Default()
	table := settings(&c)
	byKey := map[string]*setting{}
	for i := range table {
		byKey[table[i].key] = &table[i]
	}
	if path == "" {
		path, _ = lookup(EnvConfigFile)
	}
	if path != "" {
		if err := loadFile(path, byKey); err != nil {
			return c, err
		}
	}
	var errs []error
	for i := range table {
		st := &table[i]
		if v, ok := lookup(st.env); ok && v != "" {
			if err := st.parse(v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", st.env, err))
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(overrides)) {
		st, ok := byKey[k]
		if !ok {
			errs = append(errs, fmt.Errorf("unknown setting %q", k))
			continue
		}
		if st.token && overrides[k] != "" {
			errs = append(errs, fmt.Errorf("--%s: a secret on the command line is visible to every user of the host; give it in %s (the environment) or the config file",
				flagName(k), st.env))
			continue
		}
		if st.secret && maskURLs(overrides[k]) != overrides[k] {
			// /proc/<pid>/cmdline and expvar show every argument.
			errs = append(errs, fmt.Errorf("--%s: a password on the command line is visible to every user of the host; "+
				"give it in %s (the environment) or rabbitmq_password_file", flagName(k), st.env))
			continue
		}
		if err := st.parse(overrides[k]); err != nil {
			errs = append(errs, fmt.Errorf("--%s: %w", flagName(k), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	if err := c.resolveSecrets(); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// loopback reports whether a listen address is on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Validate checks ranges and enums.
func (c *Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.DataDir != "", "data dir is empty")
	check(c.DebugAddr == "" || strings.HasPrefix(c.DebugAddr, "127.0.0.1:") || strings.HasPrefix(c.DebugAddr, "[::1]:"),
		"CODEBENCH_DEBUG_ADDR must be on loopback, not %q", c.DebugAddr)
	check(c.Sandboxes.APIKeys != "" || loopback(c.Sandboxes.Addr),
		"CODEBENCH_SANDBOXES_ADDR %q is not on loopback: set CODEBENCH_SANDBOXES_API_KEYS first", c.Sandboxes.Addr)
	check(c.Sandboxes.Max >= 1 && c.Sandboxes.MaxRunning >= 1 && c.Sandboxes.KeyRunning >= 1 && c.Sandboxes.KeyMemoryMB >= 1,
		"the sandboxes' counts must be at least 1")
	check(c.Sandboxes.HomeMB >= 16 && c.Sandboxes.DefaultTimeout > 0 && c.Sandboxes.MaxTimeout >= c.Sandboxes.DefaultTimeout,
		"CODEBENCH_SANDBOXES_HOME_MB is at least 16, and CODEBENCH_SANDBOXES_TIMEOUT positive and at most CODEBENCH_SANDBOXES_MAX_TIMEOUT")
	check(c.MetricsAddr == "" || c.MetricsPublic || loopback(c.MetricsAddr),
		"CODEBENCH_METRICS_ADDR %q is not on loopback: set CODEBENCH_METRICS_PUBLIC=true to serve metrics to the network", c.MetricsAddr)
	check(c.RunDir != "" && len(c.RunDir) <= 48, "run dir %q must be set and short (Unix socket paths are limited to 108 bytes)", c.RunDir)
	check(strings.Contains("auto kvm tcg", c.VM.Accel) && c.VM.Accel != "", "CODEBENCH_ACCEL must be auto, kvm or tcg, not %q", c.VM.Accel)
	check(c.VM.QEMUJail == "auto" || c.VM.QEMUJail == "on" || c.VM.QEMUJail == "off", "CODEBENCH_QEMU_JAIL must be auto, on or off, not %q", c.VM.QEMUJail)
	check(c.VM.TemplateMaxAge >= 0 && c.VM.TemplateMaxClones >= 0, "CODEBENCH_TEMPLATE_MAX_AGE and CODEBENCH_TEMPLATE_MAX_CLONES must not be negative")
	check(c.VM.VMUser != "" && c.VM.VMUser != "root", "CODEBENCH_VM_USER must name a user other than root, not %q", c.VM.VMUser)
	check(c.VM.MemoryMB >= 128, "VM memory %d MiB is below 128", c.VM.MemoryMB)
	check(slices.Contains([]string{"auto", "qemu", "firecracker", "gvisor"}, c.VM.Driver), "CODEBENCH_DRIVER must be auto, qemu, firecracker or gvisor, not %q", c.VM.Driver)
	check(slices.Contains([]string{"", "systrap", "ptrace"}, c.VM.GVisorPlatform), "CODEBENCH_GVISOR_PLATFORM must be systrap or ptrace, not %q", c.VM.GVisorPlatform)
	check(!c.VM.Jailer.Enabled || (c.VM.Jailer.UID > 0 && c.VM.Jailer.GID > 0), "the jailer needs a non-root uid and gid")
	check(c.VM.VCPUs >= 1, "VM vCPUs must be at least 1")
	for _, raw := range strings.Split(c.Worker.RabbitURL, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		check(err == nil && (u.Scheme == "amqp" || u.Scheme == "amqps") && u.Host != "", "rabbitmq_url: each URL must be amqp:// or amqps://host...")
	}
	check((c.Worker.RabbitCertFile == "") == (c.Worker.RabbitKeyFile == ""), "rabbitmq_cert_file and rabbitmq_key_file go together")
	if c.Worker.RabbitCAFile != "" || c.Worker.RabbitCertFile != "" {
		for _, raw := range strings.Split(c.Worker.RabbitURL, ",") {
			check(!strings.HasPrefix(strings.TrimSpace(raw), "amqp://"),
				"rabbitmq_ca_file or rabbitmq_cert_file is set, but rabbitmq_url is amqp:// (plaintext): use amqps://")
		}
	}
	check(c.Worker.Topology == "seed" || c.Worker.Topology == "api", "CODEBENCH_TOPOLOGY must be seed or api")
	check(c.Worker.Concurrency >= 1, "concurrency must be at least 1")
	check(c.Worker.PoolSize >= 0, "pool size must not be negative")
	check(c.Worker.PoolBoots >= 1, "pool boots must be at least 1")
	check(c.Worker.PoolWait > 0, "pool wait must be positive")
	check(c.Worker.MaxCodeBytes > 0 && c.Worker.MaxCodeBytes < 8<<20, "max code bytes must be in (0, 8 MiB)")
	check(c.Worker.MaxJobBytes >= c.Worker.MaxCodeBytes, "CODEBENCH_MAX_JOB_BYTES must be at least CODEBENCH_MAX_CODE_BYTES")
	check(c.Worker.MaxStatusBytes >= 64<<10, "CODEBENCH_MAX_STATUS_BYTES must be at least 64 KiB")
	check(c.Worker.MaxRequeues >= 1, "CODEBENCH_MAX_REQUEUES must be at least 1")
	check(c.Worker.ReconnectMax >= 200*time.Millisecond, "CODEBENCH_RECONNECT_MAX must be at least 200ms (the first backoff), not %s", c.Worker.ReconnectMax)
	_, err := regexp.Compile(c.Worker.ReplyToPattern)
	check(err == nil, "CODEBENCH_REPLY_TO_PATTERN: %v", err)
	check(c.Limits.MaxJobWallMS >= c.Limits.CompileWallMS+c.Limits.MaxWallMS,
		"CODEBENCH_MAX_JOB_WALL_MS must allow at least one compile and one run at their limits")
	check(c.Limits.MaxTests >= 1 && c.Limits.MaxTests <= agentproto.MaxTests, "CODEBENCH_MAX_TESTS must be in [1, %d]", agentproto.MaxTests)
	n := c.Network
	check(regexp.MustCompile(`^[a-z0-9]{1,8}$`).MatchString(n.Name), "network_name must be 1-8 of [a-z0-9], not %q", n.Name)
	sub, err := netip.ParsePrefix(n.Subnet)
	check(err == nil && sub.Addr().Is4() && sub.Bits() >= 8 && sub.Bits() <= 28, "network_subnet must be an IPv4 CIDR from /8 to /28, not %q", n.Subnet)
	_, err = c.NetworkAllow()
	check(err == nil, "%v", err)
	check(n.ConnPerSecond >= 1, "network_conn_rate must be at least 1")
	check(n.BandwidthKBps >= 0, "network_bandwidth_kbps must not be negative")
	check(n.CNIPath != "", "cni_path is empty")
	l := c.Limits
	check(l.WallMS > 0 && l.WallMS <= l.MaxWallMS, "wall limit default %d must be in (0, max %d]", l.WallMS, l.MaxWallMS)
	check(l.CPUMS > 0 && l.CPUMS <= l.MaxCPUMS, "cpu limit default %d must be in (0, max %d]", l.CPUMS, l.MaxCPUMS)
	check(l.MemoryKB > 0 && l.MemoryKB <= l.MaxMemoryKB, "memory default must be in (0, max]")
	check(l.OutputBytes > 0 && l.OutputBytes <= l.MaxOutputBytes, "output default must be in (0, max]")
	check(int64(c.VM.MemoryMB)*1024 > l.MaxMemoryKB, "VM memory must exceed the per-job memory maximum")
	return errors.Join(errs...)
}
