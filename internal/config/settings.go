package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// EnvConfigFile names the config file when no --config flag does.
const EnvConfigFile = "CODEBENCH_CONFIG"

// setting is one thing the configuration can say, by its three names: the
// environment variable, the key in the TOML file (the variable's name
// without "CODEBENCH_", lower case) and the command-line flag (the key
// with dashes).
type setting struct {
	env string
	key string
	ptr any // *string, *int, *int64, *time.Duration or *bool
	// secret: a URL whose password (and query) are masked when printed,
	// and which may not come with a password as a flag; token: a secret
	// masked whole, never accepted as a flag.
	secret, token bool
}

// settings is every setting, bound to c, in the order they are printed.
func settings(c *Config) []setting {
	var t []setting
	add := func(env string, ptr any) {
		t = append(t, setting{env: env, key: strings.ToLower(strings.TrimPrefix(env, "CODEBENCH_")), ptr: ptr})
	}
	add("CODEBENCH_DATA_DIR", &c.DataDir)
	add("CODEBENCH_RUN_DIR", &c.RunDir)
	add("CODEBENCH_IMAGE", &c.Image)
	add("CODEBENCH_LANGUAGES", &c.ImageLanguages)
	add("CODEBENCH_DEBIAN_MIRROR", &c.Mirror)
	add("CODEBENCH_DEBUG", &c.Verbose)
	add("CODEBENCH_DEBUG_ADDR", &c.DebugAddr)
	add("CODEBENCH_METRICS_ADDR", &c.MetricsAddr)
	add("CODEBENCH_METRICS_PUBLIC", &c.MetricsPublic)

	add("CODEBENCH_DRIVER", &c.VM.Driver)
	add("CODEBENCH_ACCEL", &c.VM.Accel)
	add("CODEBENCH_ALLOW_TCG", &c.VM.AllowTCG)
	add("CODEBENCH_ALLOW_ROOT_VMM", &c.VM.AllowRootVMM)
	add("CODEBENCH_VM_MEMORY_MB", &c.VM.MemoryMB)
	add("CODEBENCH_VM_VCPUS", &c.VM.VCPUs)
	add("CODEBENCH_TSC_KHZ", &c.VM.TSCKHz)
	add("CODEBENCH_QEMU", &c.VM.QEMU)
	add("CODEBENCH_QEMU_JAIL", &c.VM.QEMUJail)
	add("CODEBENCH_VM_USER", &c.VM.VMUser)
	add("CODEBENCH_BOOT_TIMEOUT", &c.VM.BootLimit)
	add("CODEBENCH_SNAPSHOTS", &c.VM.Snapshots)
	add("CODEBENCH_TEMPLATE_MAX_AGE", &c.VM.TemplateMaxAge)
	add("CODEBENCH_TEMPLATE_MAX_CLONES", &c.VM.TemplateMaxClones)
	add("CODEBENCH_FIRECRACKER", &c.VM.Firecracker)
	add("CODEBENCH_RUNSC", &c.VM.Runsc)
	add("CODEBENCH_GVISOR_PLATFORM", &c.VM.GVisorPlatform)
	add("CODEBENCH_JAILER", &c.VM.Jailer.Enabled)
	add("CODEBENCH_JAILER_BINARY", &c.VM.Jailer.Binary)
	add("CODEBENCH_JAILER_UID", &c.VM.Jailer.UID)
	add("CODEBENCH_JAILER_GID", &c.VM.Jailer.GID)
	add("CODEBENCH_JAILER_CHROOT", &c.VM.Jailer.Chroot)
	add("CODEBENCH_JAILER_NETNS", &c.VM.Jailer.NetNS)

	add("CODEBENCH_API_ADDR", &c.API.Addr)
	add("CODEBENCH_API_AUTH_TOKENS", &c.API.AuthTokens)
	t[len(t)-1].token = true
	add("CODEBENCH_API_AUTHZ_TOKENS", &c.API.AuthzTokens)
	t[len(t)-1].token = true
	add("CODEBENCH_API_AUTH_HEADER", &c.API.AuthHeader)
	add("CODEBENCH_API_AUTHZ_HEADER", &c.API.AuthzHeader)
	add("CODEBENCH_API_DATABASE_URL", &c.API.DatabaseURL)
	t[len(t)-1].secret = true
	add("CODEBENCH_API_MAX_QUEUE", &c.API.MaxQueue)
	add("CODEBENCH_API_CORS_ORIGINS", &c.API.CORSOrigins)
	add("CODEBENCH_API_HOSTS", &c.API.Hosts)
	add("CODEBENCH_API_CALLBACK_ALLOW", &c.API.CallbackAllow)
	add("CODEBENCH_API_ENABLE_DELETE", &c.API.EnableDelete)
	add("CODEBENCH_API_REPLY_QUEUE", &c.API.ReplyQueue)
	add("CODEBENCH_API_MAX_AGE", &c.API.MaxAge)
	add("CODEBENCH_API_RABBITMQ_URL", &c.API.RabbitURL)
	t[len(t)-1].secret = true
	add("CODEBENCH_API_USER", &c.API.User)
	add("CODEBENCH_API_NODE", &c.API.Node)
	add("CODEBENCH_API_QUEUE_TIMEOUT", &c.API.QueueTimeout)
	add("CODEBENCH_API_CLIENT_IN_FLIGHT", &c.API.ClientInFlight)
	add("CODEBENCH_API_CLIENT_PER_MINUTE", &c.API.ClientPerMinute)
	add("CODEBENCH_API_CLIENT_SANDBOX", &c.API.ClientSandbox)
	add("CODEBENCH_API_CLIENT_CALLBACKS", &c.API.ClientCallbacks)
	add("CODEBENCH_API_STORE_MAX_BYTES", &c.API.StoreMaxBytes)

	add("CODEBENCH_SANDBOXES_ADDR", &c.Sandboxes.Addr)
	add("CODEBENCH_SANDBOXES_API_KEYS", &c.Sandboxes.APIKeys)
	t[len(t)-1].token = true
	add("CODEBENCH_SANDBOXES_DIR", &c.Sandboxes.Dir)
	add("CODEBENCH_SANDBOXES_MAX", &c.Sandboxes.Max)
	add("CODEBENCH_SANDBOXES_MAX_RUNNING", &c.Sandboxes.MaxRunning)
	add("CODEBENCH_SANDBOXES_KEY_RUNNING", &c.Sandboxes.KeyRunning)
	add("CODEBENCH_SANDBOXES_KEY_PAUSED", &c.Sandboxes.KeyPaused)
	add("CODEBENCH_SANDBOXES_KEY_MEMORY_MB", &c.Sandboxes.KeyMemoryMB)
	add("CODEBENCH_SANDBOXES_POOL", &c.Sandboxes.Pool)
	add("CODEBENCH_SANDBOXES_HOME_MB", &c.Sandboxes.HomeMB)
	add("CODEBENCH_SANDBOXES_TIMEOUT", &c.Sandboxes.DefaultTimeout)
	add("CODEBENCH_SANDBOXES_MAX_TIMEOUT", &c.Sandboxes.MaxTimeout)

	add("RABBITMQ_URL", &c.Worker.RabbitURL)
	t[len(t)-1].secret = true
	add("CODEBENCH_RABBITMQ_PASSWORD_FILE", &c.Worker.RabbitPasswordFile)
	add("CODEBENCH_RABBITMQ_CA_FILE", &c.Worker.RabbitCAFile)
	add("CODEBENCH_RABBITMQ_CERT_FILE", &c.Worker.RabbitCertFile)
	add("CODEBENCH_RABBITMQ_KEY_FILE", &c.Worker.RabbitKeyFile)
	add("CODEBENCH_TOPOLOGY", &c.Worker.Topology)
	add("CODEBENCH_QUORUM", &c.Worker.Quorum)
	add("CODEBENCH_DELIVERY_LIMIT", &c.Worker.DeliveryLimit)
	add("CODEBENCH_CONCURRENCY", &c.Worker.Concurrency)
	add("CODEBENCH_POOL_SIZE", &c.Worker.PoolSize)
	add("CODEBENCH_POOL_BOOTS", &c.Worker.PoolBoots)
	add("CODEBENCH_POOL_WAIT", &c.Worker.PoolWait)
	add("CODEBENCH_STATUS_EXPIRES", &c.Worker.StatusExpires)
	add("CODEBENCH_SHUTDOWN_GRACE", &c.Worker.Grace)
	add("CODEBENCH_RECONNECT_MAX", &c.Worker.ReconnectMax)
	add("CODEBENCH_MAX_CODE_BYTES", &c.Worker.MaxCodeBytes)
	add("CODEBENCH_MAX_JOB_BYTES", &c.Worker.MaxJobBytes)
	add("CODEBENCH_MAX_STATUS_BYTES", &c.Worker.MaxStatusBytes)
	add("CODEBENCH_MAX_REQUEUES", &c.Worker.MaxRequeues)
	add("CODEBENCH_STATUS_QUEUE_WITH_REPLY", &c.Worker.StatusQueueWithReply)
	add("CODEBENCH_REPLY_TO_PATTERN", &c.Worker.ReplyToPattern)
	add("CODEBENCH_WORKER_USER", &c.Worker.WorkerUser)
	add("RABBITMQ_MANAGEMENT_URL", &c.Worker.ManagementURL)
	add("RABBITMQ_NODENAME", &c.Worker.BrokerNode)

	add("CODEBENCH_NETWORK", &c.Network.Enabled)
	add("CODEBENCH_NETWORK_NAME", &c.Network.Name)
	add("CODEBENCH_NETWORK_SUBNET", &c.Network.Subnet)
	add("CODEBENCH_NETWORK_IPMASQ", &c.Network.IPMasq)
	add("CODEBENCH_NETWORK_ALLOW", &c.Network.Allow)
	add("CODEBENCH_NETWORK_CONN_RATE", &c.Network.ConnPerSecond)
	add("CODEBENCH_NETWORK_BANDWIDTH_KBPS", &c.Network.BandwidthKBps)
	add("CODEBENCH_CNI_PATH", &c.Network.CNIPath)

	add("CODEBENCH_WALL_MS", &c.Limits.WallMS)
	add("CODEBENCH_MAX_WALL_MS", &c.Limits.MaxWallMS)
	add("CODEBENCH_CPU_MS", &c.Limits.CPUMS)
	add("CODEBENCH_MAX_CPU_MS", &c.Limits.MaxCPUMS)
	add("CODEBENCH_MEMORY_KB", &c.Limits.MemoryKB)
	add("CODEBENCH_MAX_MEMORY_KB", &c.Limits.MaxMemoryKB)
	add("CODEBENCH_STACK_KB", &c.Limits.StackKB)
	add("CODEBENCH_MAX_STACK_KB", &c.Limits.MaxStackKB)
	add("CODEBENCH_PROCESSES", &c.Limits.Processes)
	add("CODEBENCH_MAX_PROCESSES", &c.Limits.MaxProcesses)
	add("CODEBENCH_OUTPUT_BYTES", &c.Limits.OutputBytes)
	add("CODEBENCH_MAX_OUTPUT_BYTES", &c.Limits.MaxOutputBytes)
	add("CODEBENCH_FILE_SIZE_KB", &c.Limits.FileSizeKB)
	add("CODEBENCH_MAX_FILE_SIZE_KB", &c.Limits.MaxFileSizeKB)
	add("CODEBENCH_COMPILE_WALL_MS", &c.Limits.CompileWallMS)
	add("CODEBENCH_MAX_JOB_WALL_MS", &c.Limits.MaxJobWallMS)
	add("CODEBENCH_MAX_RUNS", &c.Limits.MaxRuns)
	add("CODEBENCH_MAX_TESTS", &c.Limits.MaxTests)
	return t
}

// parse sets the setting from text (the environment, a flag).
func (s *setting) parse(v string) error {
	switch p := s.ptr.(type) {
	case *string:
		*p = v
	case *int:
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("want an integer, not %q", v)
		}
		*p = n
	case *int64:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("want an integer, not %q", v)
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("want a duration such as 30s or 2m, not %q", v)
		}
		*p = d
	case *bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("want true or false, not %q", v)
		}
		*p = b
	}
	return nil
}

// set sets the setting from a TOML value, of the type the setting has.
func (s *setting) set(v any) error {
	switch p := s.ptr.(type) {
	case *string:
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("want a string, not %T", v)
		}
		*p = str
	case *int, *int64:
		n, ok := v.(int64)
		if !ok {
			return fmt.Errorf("want an integer, not %T", v)
		}
		if ip, isInt := p.(*int); isInt {
			*ip = int(n)
		} else {
			*p.(*int64) = n
		}
	case *time.Duration:
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("want a duration string such as \"30s\", not %T", v)
		}
		return s.parse(str)
	case *bool:
		b, ok := v.(bool)
		if !ok {
			return fmt.Errorf("want true or false, not %T", v)
		}
		*p = b
	}
	return nil
}

// text is the setting's value as TOML.
func (s *setting) text() string {
	switch p := s.ptr.(type) {
	case *string:
		v := *p
		switch {
		case s.token && v != "":
			v = masked
		case s.secret:
			v = maskURLs(v)
		}
		return strconv.Quote(v)
	case *int:
		return strconv.Itoa(*p)
	case *int64:
		return strconv.FormatInt(*p, 10)
	case *time.Duration:
		return strconv.Quote(p.String())
	case *bool:
		return strconv.FormatBool(*p)
	}
	return ""
}

// maxConfigFile bounds the config file read.
const maxConfigFile = 1 << 20

// loadFile applies a TOML file: flat keys (the settings' keys); anything
// else is an error naming the key.
func loadFile(path string, byKey map[string]*setting) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	if len(b) > maxConfigFile {
		return fmt.Errorf("config file %s: larger than %d bytes", path, maxConfigFile)
	}
	var raw map[string]any
	if _, err := toml.Decode(string(b), &raw); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	var errs []error
	for _, k := range sortedKeys(raw) {
		st, ok := byKey[k]
		if !ok {
			errs = append(errs, fmt.Errorf("config file %s: unknown key %q", path, k))
			continue
		}
		if err := st.set(raw[k]); err != nil {
			errs = append(errs, fmt.Errorf("config file %s: %s: %w", path, k, err))
		}
	}
	return errors.Join(errs...)
}

func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

// Print writes the configuration as a TOML file that Load reads back, with
// secrets masked: the effective configuration (codebench worker
// --print-config).
func Print(w io.Writer, c Config) error {
	var b strings.Builder
	b.WriteString("# codebench: the effective configuration (defaults < file < environment < flags)\n")
	for _, st := range settings(&c) {
		fmt.Fprintf(&b, "%s = %s\n", st.key, st.text())
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Flags registers one flag per setting on fs (--pool-size and so on),
// except where fs already has a flag of that name (a command's own, which
// wins); the returned function lists the ones given, for Load.
func Flags(fs *flag.FlagSet) func() map[string]string {
	set := map[string]string{}
	for _, st := range settings(new(Config)) {
		key := st.key
		if fs.Lookup(flagName(key)) != nil {
			continue
		}
		record := func(v string) error {
			set[key] = v
			return nil
		}
		if _, isBool := st.ptr.(*bool); isBool {
			fs.BoolFunc(flagName(key), "overrides "+st.env, record) // --debug, or --debug=false
			continue
		}
		fs.Func(flagName(key), "overrides "+st.env, record)
	}
	return func() map[string]string { return set }
}

func flagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// masked stands for a secret's value.
const masked = "xxxxx"

// maskURLs masks the password and the query (libpq takes password= there)
// of each URL in a comma-separated list.
func maskURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			continue
		}
		changed := false
		if u.User != nil {
			if _, has := u.User.Password(); has {
				u.User, changed = url.UserPassword(u.User.Username(), masked), true
			}
		}
		if u.RawQuery != "" {
			u.RawQuery, changed = masked, true
		}
		if changed {
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// maxSecretFile bounds a password file.
const maxSecretFile = 4096

// resolveSecrets reads the broker password from its file into every
// broker URL.
func (c *Config) resolveSecrets() error {
	if c.Worker.RabbitPasswordFile == "" {
		return nil
	}
	f, err := os.Open(c.Worker.RabbitPasswordFile)
	if err != nil {
		return fmt.Errorf("rabbitmq_password_file: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().Perm()&0o044 != 0 {
		c.Warnings = append(c.Warnings, fmt.Sprintf("rabbitmq_password_file %s is readable by its group or others (mode %04o): chmod 600 it",
			c.Worker.RabbitPasswordFile, st.Mode().Perm()))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil || len(b) > maxSecretFile {
		return fmt.Errorf("rabbitmq_password_file %s: unreadable or larger than %d bytes (%v)", c.Worker.RabbitPasswordFile, maxSecretFile, err)
	}
	pass := strings.TrimRight(string(b), "\r\n")
	parts := strings.Split(c.Worker.RabbitURL, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil {
			return fmt.Errorf("rabbitmq_url: %w", err)
		}
		name := "guest"
		if u.User != nil {
			name = u.User.Username()
		}
		u.User = url.UserPassword(name, pass)
		parts[i] = u.String()
	}
	c.Worker.RabbitURL = strings.Join(parts, ",")
	return nil
}

// Names are every setting's environment variable, in the order they are
// printed: the README's settings table names each one.
func Names() []string {
	var c Config
	var out []string
	for _, s := range settings(&c) {
		out = append(out, s.env)
	}
	return out
}
