package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/exporter-toolkit/web"
)

// TestWebConfigProblems: every refusal of a web configuration file is one
// line in the file's terms: no Go type, no YAML tag, never the file's text
// (here a secret in every file).
func TestWebConfigProblems(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.yml")
	for _, c := range []struct{ text, want string }{
		{"basic_auth_users: hunter2\n", "line 1: a string where the field wants basic_auth_users: a map of user: bcrypt hash"},
		{"hunter2: 1\n", "line 1: unknown field (the file's fields are tls_server_config, http_server_config, basic_auth_users, rate_limit)"},
		{"tls_server_config:\n  hunter2: x\n", "line 2: unknown field (tls_server_config's fields are cert, cert_file, key, key_file, client_ca, client_ca_file, client_auth_type, client_allowed_sans, cipher_suites, curve_preferences, min_version, max_version, prefer_server_cipher_suites)"},
		{"tls_server_config: [hunter2\n", "line 1: not valid YAML"},
		{"a: hunter2\n  c: d\n", "line 2: not valid YAML"},
		{"tls_server_config:\n  cert_file: /nonexistent/hunter2\n  key_file: /x\n", "tls_server_config: cert_file cannot be read: no such file or directory"},
		{"tls_server_config:\n  cert_file: hunter2\n", "tls_server_config: key or key_file is missing"},
		{"tls_server_config:\n  client_ca_file: /x\n", "tls_server_config: cert or cert_file is missing"},
		{"tls_server_config:\n  cert: hunter2\n  key: hunter2\n", "tls_server_config: the certificate and key are not a pair of PEM blocks that match: failed to find any PEM data in certificate input"},
		{"tls_server_config:\n  min_version: hunter2\n", "tls_server_config: min_version, max_version: TLS10, TLS11, TLS12 or TLS13"},
		{"tls_server_config:\n  cipher_suites: [hunter2]\n", "tls_server_config: cipher_suites: a cipher suite Go knows (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, ...)"},
		{"tls_server_config:\n  curve_preferences: [hunter2]\n", "tls_server_config: curve_preferences: CurveP256, CurveP384, CurveP521 or X25519"},
		{"tls_server_config:\n  prefer_server_cipher_suites: hunter2\n", "line 2: a string where the field wants true or false"},
		{"basic_auth_users:\n  alice: hunter2\n", "basic_auth_users: a password that is not a bcrypt hash (htpasswd -nBC 10 USER makes one)"},
		{"basic_auth_users:\n  alice: [hunter2]\n", "line 2: a list where the field wants a string"},
		{"http_server_config:\n  headers:\n    X-hunter2: x\n", "http_server_config: headers: a header that cannot be set (these can: Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy)"},
		{"http_server_config:\n  headers:\n    X-Frame-Options: hunter2\n", `http_server_config: headers: X-Frame-Options: one of "deny" "sameorigin"`},
		{"http_server_config:\n  http2: hunter2\n", "line 2: a string where the field wants true or false"},
		{"rate_limit:\n  interval: hunter2\n", "line 2: a string where the field wants a duration with its unit (10s, 1m)"},
		{"rate_limit:\n  burst: hunter2\n", "line 2: a string where the field wants a whole number"},
		{"rate_limit: hunter2\n", "line 1: a string where the field wants rate_limit: a map (burst, interval)"},
		{"hunter2\n", "line 1: a string where the field wants a map of tls_server_config, http_server_config, basic_auth_users, rate_limit"},
	} {
		if err := os.WriteFile(path, []byte(c.text), 0o600); err != nil {
			t.Fatal(err)
		}
		err := web.Validate(path)
		if err == nil {
			t.Errorf("%q: accepted", c.text)
			continue
		}
		got, known := webConfigProblem(path, err)
		if got != c.want || !known {
			t.Errorf("%q (%q):\n got %q (known %v)\nwant %q", c.text, err, got, known, c.want)
		}
		for _, bad := range []string{"hunter2", "\n", "map[", "web.", "config.", "!!", "unmarshal", "yaml"} {
			if strings.Contains(got, bad) {
				t.Errorf("%q: %q says %q", c.text, got, bad)
			}
		}
	}
	none := filepath.Join(dir, "none.yml")
	if got, _ := webConfigProblem(none, web.Validate(none)); got != "cannot be read: no such file or directory" {
		t.Errorf("missing file: %q", got)
	}
}

// TestWebLogHandler: the web configuration's errors met after start-up
// are logged as its problem, not as its decoder's words.
func TestWebLogHandler(t *testing.T) {
	var buf bytes.Buffer
	h := webLogHandler{slog.NewTextHandler(&buf, nil), "/etc/w.yml"}
	l := slog.New(h)
	l.Error("Unable to parse configuration", "err", "yaml: unmarshal errors:\n  line 1: cannot unmarshal !!str `hunter2` into map[string]config.Secret")
	slog.NewLogLogger(h, slog.LevelWarn).Print("http: TLS handshake error from 127.0.0.1:5555: unknown TLS version: hunter2")
	slog.NewLogLogger(h, slog.LevelWarn).Print("http: TLS handshake error from 127.0.0.1:5556: EOF")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines:\n%s", len(lines), buf.String())
	}
	for i, want := range []string{
		`level=ERROR msg="web configuration refused: requests answer 500 until it is fixed" file=/etc/w.yml problem="line 1: a string where the field wants basic_auth_users: a map of user: bcrypt hash"`,
		`level=ERROR msg="web configuration refused: TLS handshakes fail until it is fixed" file=/etc/w.yml problem="tls_server_config: min_version, max_version: TLS10, TLS11, TLS12 or TLS13" client=127.0.0.1:5555`,
		`level=WARN msg="http: TLS handshake error from 127.0.0.1:5556: EOF"`,
	} {
		if _, rest, _ := strings.Cut(lines[i], " "); rest != want {
			t.Errorf("line %d:\n got %s\nwant %s", i+1, rest, want)
		}
	}
	if strings.Contains(buf.String(), "hunter2") {
		t.Errorf("the log shows the file:\n%s", buf.String())
	}
}
