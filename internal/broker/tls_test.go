package broker_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/codebench/codebench/internal/broker"
	"github.com/codebench/codebench/internal/config"
	"github.com/codebench/codebench/internal/testenv"
)

// pki writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, PEM, readable by the broker's user.
type pki struct{ dir, ca, serverCert, serverKey, clientCert, clientKey string }

func newPKI(t *testing.T) pki {
	t.Helper()
	dir, err := os.MkdirTemp("", "cb-tls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	key := func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "codebench test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage, ip bool) ([]byte, *rsa.PrivateKey) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		if ip {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	sDER, sKey := leaf(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, true)
	cDER, cKey := leaf(3, "codebench-worker", x509.ExtKeyUsageClientAuth, false)
	return pki{dir: dir,
		ca:         write("ca.pem", "CERTIFICATE", caDER),
		serverCert: write("server.pem", "CERTIFICATE", sDER),
		serverKey:  write("server.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(sKey)),
		clientCert: write("client.pem", "CERTIFICATE", cDER),
		clientKey:  write("client.key", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(cKey)),
	}
}

// TestTLSWithPasswordFile: a broker node that only speaks TLS and wants a
// client certificate. The worker's configuration (amqps URL, CA, client
// certificate, password from a file) connects and publishes confirmed; a
// client that does not know the CA, or brings no certificate, is refused.
func TestTLSWithPasswordFile(t *testing.T) {
	p := newPKI(t)
	testenv.StartNode(t, "cb-tls", 5696, strings.Join([]string{
		"listeners.ssl.default = 127.0.0.1:5697",
		"ssl_options.cacertfile = " + p.ca,
		"ssl_options.certfile = " + p.serverCert,
		"ssl_options.keyfile = " + p.serverKey,
		"ssl_options.verify = verify_peer",
		"ssl_options.fail_if_no_peer_cert = true",
	}, "\n"))
	passFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(passFile, []byte("admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"RABBITMQ_URL":                     "amqps://admin@127.0.0.1:5697/",
		"CODEBENCH_RABBITMQ_PASSWORD_FILE": passFile,
		"CODEBENCH_RABBITMQ_CA_FILE":       p.ca,
		"CODEBENCH_RABBITMQ_CERT_FILE":     p.clientCert,
		"CODEBENCH_RABBITMQ_KEY_FILE":      p.clientKey,
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	qcfg := broker.Config{URL: cfg.Worker.RabbitURL, CAFile: cfg.Worker.RabbitCAFile, CertFile: cfg.Worker.RabbitCertFile,
		KeyFile: cfg.Worker.RabbitKeyFile, StatusExpires: time.Hour}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := broker.Dial(ctx, qcfg)
	if err != nil {
		t.Fatalf("TLS dial with CA, client certificate and password file: %v", err)
	}
	if err := conn.PublishJob(ctx, []byte(`{"id":"tls1","language":"python","code":"print(1)"}`)); err != nil {
		t.Fatalf("publish over TLS: %v", err)
	}
	conn.Close()

	for _, tc := range []struct {
		name string
		mod  func(*broker.Config)
	}{
		{"unknown CA", func(c *broker.Config) { c.CAFile = "" }},
		{"no client certificate", func(c *broker.Config) { c.CertFile, c.KeyFile = "", "" }},
		{"plain AMQP to the TLS port", func(c *broker.Config) {
			c.URL = strings.Replace(c.URL, "amqps://", "amqp://", 1)
			c.CAFile, c.CertFile, c.KeyFile = "", "", ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := qcfg
			tc.mod(&c)
			dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			conn, err := broker.Dial(dctx, c)
			if err == nil {
				conn.Close()
				t.Fatal("connected")
			}
			t.Logf("refused: %v", err)
			if strings.Contains(err.Error(), "admin:") {
				t.Fatalf("the error shows the credentials: %v", err)
			}
		})
	}
}
