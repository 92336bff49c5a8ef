package config

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigHygiene: settings that would leak a secret or open a port to
// the network by accident are refused, with what to do instead.
func TestConfigHygiene(t *testing.T) {
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	for _, tc := range []struct {
		name  string
		env   map[string]string
		flags map[string]string
		want  string // "" = accepted
	}{
		{"password as a flag", nil, map[string]string{"rabbitmq_url": "amqp://u:secret@127.0.0.1:5672/"}, "visible to every user"},
		{"URL without password as a flag", nil, map[string]string{"rabbitmq_url": "amqp://u@127.0.0.1:5672/"}, ""},
		{"password in the environment", map[string]string{"RABBITMQ_URL": "amqp://u:secret@127.0.0.1:5672/"}, nil, ""},
		{"TLS files with amqp://", map[string]string{"CODEBENCH_RABBITMQ_CA_FILE": "/etc/ca.pem"}, nil, "plaintext"},
		{"TLS files with amqps://", map[string]string{"CODEBENCH_RABBITMQ_CA_FILE": "/etc/ca.pem", "RABBITMQ_URL": "amqps://h:5671/"}, nil, ""},
		{"metrics on all interfaces", map[string]string{"CODEBENCH_METRICS_ADDR": ":9464"}, nil, "CODEBENCH_METRICS_PUBLIC"},
		{"metrics on a public address", map[string]string{"CODEBENCH_METRICS_ADDR": "10.1.2.3:9464"}, nil, "not on loopback"},
		{"metrics public by choice", map[string]string{"CODEBENCH_METRICS_ADDR": ":9464", "CODEBENCH_METRICS_PUBLIC": "true"}, nil, ""},
		{"metrics on loopback", map[string]string{"CODEBENCH_METRICS_ADDR": "127.0.0.1:9464"}, nil, ""},
		{"metrics on localhost", map[string]string{"CODEBENCH_METRICS_ADDR": "localhost:9464"}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(env(tc.env), "", tc.flags)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Fatalf("the error quotes the password: %v", err)
			}
		})
	}
}

// TestPasswordFileReadableByOthers warns, naming the file.
func TestPasswordFileReadableByOthers(t *testing.T) {
	for _, mode := range []os.FileMode{0o600, 0o644} {
		p := filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(p, []byte("pw\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		c, err := Load(func(k string) (string, bool) {
			v, ok := map[string]string{"CODEBENCH_RABBITMQ_PASSWORD_FILE": p}[k]
			return v, ok
		}, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if warned := len(c.Warnings) == 1 && strings.Contains(c.Warnings[0], "chmod 600"); warned != (mode == 0o644) {
			t.Fatalf("mode %o: warnings %q", mode, c.Warnings)
		}
	}
}

// TestScrubEnv: once loaded, the configuration's variables are gone from
// the environment children inherit.
func TestScrubEnv(t *testing.T) {
	t.Setenv("RABBITMQ_URL", "amqp://u:secret@127.0.0.1:5672/")
	t.Setenv("CODEBENCH_RABBITMQ_PASSWORD_FILE", "/etc/pw")
	t.Setenv("RABBITMQ_PASSWORD", "secret")
	if err := ScrubEnv(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("env").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "secret") || strings.Contains(string(out), "PASSWORD_FILE") {
		t.Fatalf("a child still sees the broker's secrets:\n%s", out)
	}
}
