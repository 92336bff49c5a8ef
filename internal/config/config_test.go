package config

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestFromLookup(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr bool
		check   func(t *testing.T, c Config)
	}{
		{name: "defaults", env: nil, check: func(t *testing.T, c Config) {
			if c.Worker.RabbitURL != "amqp://guest:guest@127.0.0.1:5672/" || c.Worker.StatusExpires != time.Hour {
				t.Errorf("unexpected defaults: %+v", c.Worker)
			}
		}},
		{name: "overrides", env: map[string]string{"CODEBENCH_POOL_SIZE": "4", "CODEBENCH_ACCEL": "tcg", "CODEBENCH_POOL_WAIT": "5s"},
			check: func(t *testing.T, c Config) {
				if c.Worker.PoolSize != 4 || c.VM.Accel != "tcg" || c.Worker.PoolWait != 5*time.Second {
					t.Errorf("overrides not applied: %+v %+v", c.Worker, c.VM)
				}
			}},
		{name: "bad number", env: map[string]string{"CODEBENCH_POOL_SIZE": "four"}, wantErr: true},
		{name: "bad accel", env: map[string]string{"CODEBENCH_ACCEL": "hvf"}, wantErr: true},
		{name: "long run dir", env: map[string]string{"CODEBENCH_RUN_DIR": "/a/very/long/run/directory/that/leaves/no/room/for/sockets"}, wantErr: true},
		{name: "default above max", env: map[string]string{"CODEBENCH_WALL_MS": "70000"}, wantErr: true},
		{name: "network off by default", check: func(t *testing.T, c Config) {
			if a, err := c.NetworkAllow(); c.Network.Enabled || err != nil || len(a) != 0 || c.Network.Subnet != "192.168.127.0/24" || !c.Network.IPMasq {
				t.Errorf("network defaults: %+v", c.Network)
			}
		}},
		{name: "network allow list", env: map[string]string{"CODEBENCH_NETWORK": "true", "CODEBENCH_NETWORK_ALLOW": "10.99.0.0/24, 10.98.1.7/32"},
			check: func(t *testing.T, c Config) {
				if a, err := c.NetworkAllow(); !c.Network.Enabled || err != nil || len(a) != 2 || a[1].String() != "10.98.1.7/32" {
					t.Errorf("allow list: %v %v", a, err)
				}
			}},
		{name: "network allow not a CIDR", env: map[string]string{"CODEBENCH_NETWORK_ALLOW": "example"}, wantErr: true},
		{name: "network allow IPv6", env: map[string]string{"CODEBENCH_NETWORK_ALLOW": "::/0"}, wantErr: true},
		{name: "network subnet", env: map[string]string{"CODEBENCH_NETWORK_SUBNET": "10.0.0.0/30"}, wantErr: true},
		{name: "network name", env: map[string]string{"CODEBENCH_NETWORK_NAME": "Bad-Name"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := fromLookup(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestLoadPrecedenceAndFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.toml", `
pool_size = 3
concurrency = 3
pool_wait = "45s"
snapshots = false
rabbitmq_url = "amqp://u:filepass@10.0.0.1:5672/,amqp://u:filepass@10.0.0.2:5672/"
max_wall_ms = 50000
`)
	pass := write("pass", "s3cret\n")
	tests := []struct {
		name    string
		file    string
		env     map[string]string
		flags   map[string]string
		wantErr string // substring; "" = no error
		check   func(t *testing.T, c Config)
	}{
		{name: "file over defaults", file: good, check: func(t *testing.T, c Config) {
			if c.Worker.PoolSize != 3 || c.Worker.PoolWait != 45*time.Second || c.VM.Snapshots || c.Limits.MaxWallMS != 50000 {
				t.Errorf("file not applied: %+v", c.Worker)
			}
		}},
		{name: "environment over file", file: good, env: map[string]string{"CODEBENCH_POOL_SIZE": "4"}, check: func(t *testing.T, c Config) {
			if c.Worker.PoolSize != 4 || c.Worker.Concurrency != 3 {
				t.Errorf("pool %d concurrency %d", c.Worker.PoolSize, c.Worker.Concurrency)
			}
		}},
		{name: "flags over environment", file: good, env: map[string]string{"CODEBENCH_POOL_SIZE": "4"}, flags: map[string]string{"pool_size": "5"},
			check: func(t *testing.T, c Config) {
				if c.Worker.PoolSize != 5 {
					t.Errorf("pool %d", c.Worker.PoolSize)
				}
			}},
		{name: "file named by the environment", env: map[string]string{"CODEBENCH_CONFIG": good}, check: func(t *testing.T, c Config) {
			if c.Worker.PoolSize != 3 {
				t.Errorf("pool %d", c.Worker.PoolSize)
			}
		}},
		{name: "password file into every URL", file: good, env: map[string]string{"CODEBENCH_RABBITMQ_PASSWORD_FILE": pass},
			check: func(t *testing.T, c Config) {
				if c.Worker.RabbitURL != "amqp://u:s3cret@10.0.0.1:5672/,amqp://u:s3cret@10.0.0.2:5672/" {
					t.Errorf("url %q", c.Worker.RabbitURL)
				}
			}},
		{name: "unknown key", file: write("unknown.toml", "pool_sise = 3\n"), wantErr: `unknown key "pool_sise"`},
		{name: "section is unknown", file: write("section.toml", "[worker]\npool_size = 3\n"), wantErr: `unknown key "worker"`},
		{name: "wrong type", file: write("type.toml", "pool_size = \"three\"\n"), wantErr: "pool_size: want an integer"},
		{name: "bad duration", file: write("dur.toml", "pool_wait = 45\n"), wantErr: "pool_wait: want a duration"},
		{name: "bad value named", file: write("accel.toml", "accel = \"hvf\"\n"), wantErr: "CODEBENCH_ACCEL must be"},
		{name: "not TOML", file: write("bad.toml", "pool_size = = 3\n"), wantErr: "bad.toml"},
		{name: "missing file", file: filepath.Join(dir, "nope.toml"), wantErr: "no such file"},
		{name: "unknown flag key", flags: map[string]string{"nope": "1"}, wantErr: `unknown setting "nope"`},
		{name: "bad flag value", flags: map[string]string{"pool_size": "x"}, wantErr: "--pool-size: want an integer"},
		{name: "bad URL", env: map[string]string{"RABBITMQ_URL": "http://x/"}, wantErr: "rabbitmq_url"},
		{name: "cert without key", env: map[string]string{"CODEBENCH_RABBITMQ_CERT_FILE": "/c.pem"}, wantErr: "go together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }, tt.file, tt.flags)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("err = %v, want it to say %q", err, tt.wantErr)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// TestPrintReadsBack: --print-config's output is a config file that loads
// to the same configuration, with the broker password masked.
func TestPrintReadsBack(t *testing.T) {
	c, err := Load(func(k string) (string, bool) {
		v, ok := map[string]string{"RABBITMQ_URL": "amqp://admin:topsecret@127.0.0.1:5672/", "CODEBENCH_POOL_SIZE": "7",
			"CODEBENCH_POOL_WAIT": "1m30s", "CODEBENCH_ALLOW_TCG": "true"}[k]
		return v, ok
	}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := Print(&b, c); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "topsecret") || !strings.Contains(b.String(), `rabbitmq_url = "amqp://admin:xxxxx@127.0.0.1:5672/"`) {
		t.Fatalf("password not masked:\n%s", b.String())
	}
	p := filepath.Join(t.TempDir(), "printed.toml")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	again, err := Load(func(string) (string, bool) { return "", false }, p, nil)
	if err != nil {
		t.Fatalf("printed config does not load: %v\n%s", err, b.String())
	}
	again.Worker.RabbitURL = c.Worker.RabbitURL // masked on purpose
	if !reflect.DeepEqual(again, c) {
		t.Fatalf("round trip differs:\n%+v\n%+v", again, c)
	}
}

func TestFlags(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	set := Flags(fs)
	if err := fs.Parse([]string{"--pool-size", "9", "--metrics-addr=127.0.0.1:9464"}); err != nil {
		t.Fatal(err)
	}
	got := set()
	if got["pool_size"] != "9" || got["metrics_addr"] != "127.0.0.1:9464" || len(got) != 2 {
		t.Fatalf("flags %v", got)
	}
}

// TestSecretsMasked: API tokens are printed masked whole, refused as
// flags; a database URL's password and query are masked.
func TestSecretsMasked(t *testing.T) {
	c, err := Load(func(k string) (string, bool) {
		v, ok := map[string]string{"CODEBENCH_API_AUTH_TOKENS": "tok-one,tok-two", "CODEBENCH_API_AUTHZ_TOKENS": "admin-tok",
			"CODEBENCH_API_DATABASE_URL": "postgres://api:pgsecret@db.internal:5432/cb?sslmode=require&password=qsecret"}[k]
		return v, ok
	}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := Print(&b, c); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"tok-one", "tok-two", "admin-tok", "pgsecret", "qsecret"} {
		if strings.Contains(b.String(), secret) {
			t.Errorf("%s printed:\n%s", secret, b.String())
		}
	}
	if !strings.Contains(b.String(), `api_auth_tokens = "xxxxx"`) || !strings.Contains(b.String(), `api_database_url = "postgres://api:xxxxx@db.internal:5432/cb?xxxxx"`) {
		t.Fatalf("not masked as expected:\n%s", b.String())
	}
	for _, flag := range []string{"api_auth_tokens", "api_authz_tokens"} {
		if _, err := Load(func(string) (string, bool) { return "", false }, "", map[string]string{flag: "t"}); err == nil || !strings.Contains(err.Error(), "command line") {
			t.Errorf("--%s accepted: %v", flag, err)
		}
	}
}
