//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// nsClient is an HTTP client whose connections are dialled inside
// namespace ns (the sockets stay there).
func nsClient(l *netlab.Lab, ns string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var c net.Conn
				err := l.InNS(ns, func() (err error) {
					var d net.Dialer
					c, err = d.DialContext(ctx, network, addr)
					return err
				})
				return c, err
			},
		},
	}
}

func httpGet(t *testing.T, c *http.Client, method, u string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startIn starts a long-running command in namespace ns, killed and
// waited for at cleanup whatever happens; its output goes to a file that
// the test logs when it fails.
func startIn(t *testing.T, l *netlab.Lab, ns, logName string, name string, args ...string) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	cmd, done, _ := startInOut(t, l, ns, logName, name, args...)
	return cmd, done
}

// startInOut is startIn, and returns the command's output, to be read
// once done is closed.
func startInOut(t *testing.T, l *netlab.Lab, ns, logName string, name string, args ...string) (*exec.Cmd, <-chan struct{}, *bytes.Buffer) {
	t.Helper()
	cmd := l.Command(context.Background(), ns, name, args...)
	out := new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = out, out // read only after Wait
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", logName, out.String())
		}
	})
	return cmd, done, out
}

// waitFor polls fn until it returns true or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// promQuery runs an instant query on the Prometheus at base and returns
// each series' labels and value.
func promQuery(t *testing.T, c *http.Client, base, q string) []promSample {
	t.Helper()
	code, body := httpGet(t, c, "GET", base+"/api/v1/query?query="+url.QueryEscape(q))
	if code != 200 {
		t.Fatalf("query %s: %d %s", q, code, body)
	}
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v %s", q, err, body)
	}
	var out []promSample
	for _, s := range r.Data.Result {
		v, _ := strconv.ParseFloat(s.Value[1].(string), 64)
		out = append(out, promSample{s.Metric, v})
	}
	return out
}

type promSample struct {
	labels map[string]string
	value  float64
}

// TestIntegrationServePrometheus runs synprobe serve in the prober's
// namespace with a real Prometheus beside it: blackbox-style relabelling
// for /probe over open, closed, rejected and dropped lab ports, a static
// job for /metrics; it reads Prometheus's API, checks both endpoints with
// promtool, refuses bad input, reloads a good and a bad configuration,
// and ends with SIGTERM while fin-mode connections are held, which the
// target's own socket table must show reset.
func TestIntegrationServePrometheus(t *testing.T) {
	for _, tool := range []string{"prometheus", "promtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found: install Debian's prometheus package (scripts/deps.sh does)", tool)
		}
	}
	l := verdictLab(t)
	// Port 85 holds each connection until the peer closes: the fin
	// module's connections stay ESTABLISHED through their hold.
	ln := l.Listen(t, l.Target, "tcp", hostPort(l.TargetV4, 85))
	netlab.Serve(ln, func(c net.Conn) { io.Copy(io.Discard, c); c.Close() })

	dir, err := os.MkdirTemp("", "synprobe-serve-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755) // serve reads its configuration as nobody after set-up
	v4, v6 := l.TargetV4.String(), "["+l.TargetV6.String()+"]"
	cfgPath := filepath.Join(dir, "serve.yml")
	writeCfg := func(s string) {
		t.Helper()
		if err := os.WriteFile(cfgPath, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	baseCfg := fmt.Sprintf(`
modules:
  rst: {mode: rst, timeout: 300ms}
  hold: {mode: fin, timeout: 1s, hold: 3s, close_timeout: 1s}
targets:
  - hosts: ["%[1]s:80", "%[2]s:80", "%[1]s:84"]
    interval: 100ms
    module: rst
    labels: {service: lab}
  - hosts: ["%[1]s:85"]
    interval: 500ms
    module: hold
`, v4, v6)
	writeCfg(baseCfg)
	const serveAddr, promAddr = "127.0.0.1:9516", "127.0.0.1:9090"
	serveCmd, serveDone := startIn(t, l, l.Prober, "synprobe serve", synprobeBinary(t), "serve",
		"--config.file", cfgPath, "--web.listen-address", serveAddr, "--log.level", "debug")
	c := nsClient(l, l.Prober)
	waitFor(t, "synprobe serve", 20*time.Second, func() bool {
		resp, err := c.Get("http://" + serveAddr + "/-/healthy")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})

	promCfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(promCfg, fmt.Appendf(nil, `
global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: synprobe
    static_configs: [{targets: ["%[1]s"]}]
  - job_name: probe
    metrics_path: /probe
    params: {module: [rst]}
    static_configs:
      - targets: ["%[2]s:80", "%[3]s:80", "%[2]s:84", "%[2]s:81", "%[2]s:82", "%[2]s:83"]
    relabel_configs:
      - {source_labels: [__address__], target_label: __param_target}
      - {source_labels: [__param_target], target_label: instance}
      - {target_label: __address__, replacement: "%[1]s"}
`, serveAddr, v4, v6), 0o644)
	startIn(t, l, l.Prober, "prometheus", "prometheus", "--config.file", promCfg,
		"--storage.tsdb.path", filepath.Join(t.TempDir(), "tsdb"), "--web.listen-address", promAddr)
	prom := "http://" + promAddr
	waitFor(t, "prometheus", 30*time.Second, func() bool {
		resp, err := c.Get(prom + "/-/ready")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})

	// probe_success for every lab target, through Prometheus.
	want := map[string]float64{v4 + ":80": 1, v6 + ":80": 1, v4 + ":84": 0, v4 + ":81": 0, v4 + ":82": 0, v4 + ":83": 0}
	var got map[string]float64
	waitFor(t, "probe_success of every target in Prometheus", 30*time.Second, func() bool {
		got = map[string]float64{}
		for _, s := range promQuery(t, c, prom, `probe_success{job="probe"}`) {
			got[s.labels["instance"]] = s.value
		}
		return len(got) == len(want)
	})
	for inst, w := range want {
		if got[inst] != w {
			t.Errorf("probe_success{instance=%q} = %v, want %v", inst, got[inst], w)
		}
	}
	// The answer behind each verdict: the lab's listener, RST, ICMP
	// admin-prohibited (nft reject), silence (nft drop), nft's RST.
	results := map[string]string{v4 + ":80": "syn-ack", v6 + ":80": "syn-ack", v4 + ":84": "rst", v4 + ":81": "timeout", v4 + ":82": "icmp-admin-prohibited", v4 + ":83": "rst"}
	for _, s := range promQuery(t, c, prom, `probe_tcp_result{job="probe"} == 1`) {
		inst := s.labels["instance"]
		if results[inst] != s.labels["result"] {
			t.Errorf("%s: result %s, want %s", inst, s.labels["result"], results[inst])
		}
		delete(results, inst)
	}
	if len(results) > 0 {
		t.Errorf("no result of 1 for %v", results)
	}
	for _, s := range promQuery(t, c, prom, `probe_tcp_reply_hop_limit{job="probe"}`) {
		if s.value != 64 {
			t.Errorf("%s: hop limit %v, want 64 (no router between)", s.labels["instance"], s.value)
		}
	}

	// The background targets' RTT histogram, through histogram_quantile.
	q := fmt.Sprintf(`histogram_quantile(0.5, sum by (le) (rate(synprobe_response_duration_seconds_bucket{job="synprobe",ip=%q,port="80"}[5s])))`, l.TargetV4.String())
	var median float64
	waitFor(t, "a median RTT from Prometheus", 30*time.Second, func() bool {
		s := promQuery(t, c, prom, q)
		if len(s) == 1 && !math.IsNaN(s[0].value) {
			median = s[0].value
			return true
		}
		return false
	})
	// Kernel-stamped over a veth: tens of µs; 10 ms is a generous bound
	// for a loaded machine, and no bucket below 50 µs can hold a median
	// of 0.
	if median <= 0 || median > 0.01 {
		t.Errorf("median RTT %v s", median)
	}
	t.Logf("median RTT of %s:80 from Prometheus: %.1f µs", l.TargetV4, median*1e6)
	for _, s := range promQuery(t, c, prom, `synprobe_responses_total{job="synprobe"}`) {
		wantResult := map[string]string{"80": "syn-ack", "84": "rst", "85": "syn-ack"}[s.labels["port"]]
		if s.labels["result"] != wantResult {
			t.Errorf("background %s:%s: result %s, want %s", s.labels["ip"], s.labels["port"], s.labels["result"], wantResult)
		}
		if s.labels["port"] != "85" && s.labels["service"] != "lab" {
			t.Errorf("background %s: target label service=%q", s.labels["ip"], s.labels["service"])
		}
	}

	// promtool on both endpoints' exposition.
	for _, path := range []string{"/metrics", "/probe?module=hold&target=" + v4 + ":85", "/probe?target=" + v4 + ":82"} {
		code, body := httpGet(t, c, "GET", "http://"+serveAddr+path)
		if code != 200 {
			t.Fatalf("%s: %d", path, code)
		}
		cmd := exec.Command("promtool", "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("promtool check metrics %s: %v\n%s", path, err, out)
		}
		if strings.HasPrefix(path, "/probe?module=hold") && !strings.Contains(body, `probe_tcp_close{pattern="3-way"} 1`) && !strings.Contains(body, `probe_tcp_close{pattern="4-way"} 1`) {
			t.Errorf("fin probe: no close pattern\n%s", body)
		}
	}

	// Bad input: 400 and one line. The prober's subnet broadcast is
	// refused by the client, as the command line refuses it.
	b := l.ProberV4.As4()
	b[3] = 255
	bc := netip.AddrFrom4(b)
	for path, w := range map[string]string{
		"/probe?target=" + v4:                       "target: want host:port or [ipv6]:port\n",
		"/probe?target=" + v4 + ":80&module=absent": "unknown module \"absent\"\n",
		"/probe?target=" + bc.String() + ":80":      "target: " + bc.String() + " is the broadcast address of a subnet on " + l.ProberIf + "; a probe goes to one host: give a unicast address\n",
	} {
		if code, body := httpGet(t, c, "GET", "http://"+serveAddr+path); code != 400 || body != w {
			t.Errorf("%s: %d %q, want 400 %q", path, code, body, w)
		}
	}

	metric := func(name string) string {
		_, body := httpGet(t, c, "GET", "http://"+serveAddr+"/metrics")
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				return v
			}
		}
		return ""
	}
	// A good reload (SIGHUP) brings a new target; a bad one (POST) is
	// refused and the good one stays.
	writeCfg(baseCfg + fmt.Sprintf("  - hosts: [\"%s:83\"]\n    interval: 100ms\n    module: rst\n", v4))
	serveCmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reloaded configuration", 10*time.Second, func() bool { return metric("synprobe_targets") == "5" })
	if v := metric("synprobe_config_last_reload_successful"); v != "1" {
		t.Errorf("after a good reload: last_reload_successful %s", v)
	}
	writeCfg("modules:\n  rst: {mode: hunter2}\n")
	code, body := httpGet(t, c, "POST", "http://"+serveAddr+"/-/reload")
	if code != 500 || !strings.Contains(body, cfgPath+":2: mode: rst, ack or fin") || strings.Contains(body, "hunter2") {
		t.Errorf("bad reload: %d %q", code, body)
	}
	if metric("synprobe_config_last_reload_successful") != "0" || metric("synprobe_targets") != "5" {
		t.Errorf("after a bad reload: successful %s, targets %s", metric("synprobe_config_last_reload_successful"), metric("synprobe_targets"))
	}
	if code, _ := httpGet(t, c, "GET", "http://"+serveAddr+"/probe?target="+v4+":80&module=rst"); code != 200 {
		t.Errorf("/probe after a refused reload: %d", code)
	}

	// SIGTERM with fin-mode connections held: the target's socket table
	// (ss, the witness) shows them ESTABLISHED before and gone after, and
	// the RST guard's table is gone from the prober's namespace.
	estab := func() string {
		return strings.TrimSpace(l.Run(t, l.Target, "ss", "-Htn", "state", "established", "( sport = :85 )"))
	}
	waitFor(t, "a held connection on the target", 10*time.Second, func() bool { return estab() != "" })
	if tables := l.Run(t, l.Prober, "nft", "list", "tables"); !strings.Contains(tables, "synprobe") {
		t.Errorf("no RST guard while serving: %q", tables)
	}
	serveCmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-serveDone:
	case <-time.After(15 * time.Second):
		t.Fatal("synprobe serve did not end within 15 s of SIGTERM")
	}
	if code := serveCmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
	waitFor(t, "the held connections reset", 5*time.Second, func() bool { return estab() == "" })
	if s := strings.TrimSpace(l.Run(t, l.Target, "ss", "-Htan", "exclude", "listening", "( sport = :85 )")); s != "" {
		t.Errorf("the target still holds: %s", s)
	}
	if tables := l.Run(t, l.Prober, "nft", "list", "tables"); strings.Contains(tables, "synprobe") {
		t.Errorf("the RST guard outlived the run: %q", tables)
	}
}

// TestIntegrationServeWebConfig: --web.config.file through
// exporter-toolkit: TLS with a certificate made here, and basic
// authentication with a bcrypt hash; plain HTTP, no password and a wrong
// one are refused.
func TestIntegrationServeWebConfig(t *testing.T) {
	l := verdictLab(t)
	dir, err := os.MkdirTemp("", "synprobe-serve-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "synprobe test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	// Readable by nobody, whom serve becomes: a test's key only.
	os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o644)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webCfg := filepath.Join(dir, "web.yml")
	os.WriteFile(webCfg, fmt.Appendf(nil, "tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prom: %s\n",
		filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), hash), 0o644)
	cfgPath := filepath.Join(dir, "serve.yml")
	os.WriteFile(cfgPath, []byte("modules:\n  rst: {timeout: 300ms}\n"), 0o644)
	const addr = "127.0.0.1:9516"
	serveCmd, serveDone, serveOut := startInOut(t, l, l.Prober, "synprobe serve", synprobeBinary(t), "serve",
		"--config.file", cfgPath, "--web.listen-address", addr, "--web.config.file", webCfg)

	c := nsClient(l, l.Prober)
	pool := x509.NewCertPool()
	pool.AddCert(must(x509.ParseCertificate(der)))
	c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool}
	probeURL := "https://" + addr + "/probe?target=" + hostPort(l.TargetV4, 80)
	do := func(u, user, pass string) (int, string) {
		req, _ := http.NewRequest("GET", u, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, "synprobe serve over TLS", 20*time.Second, func() bool {
		code, _ := do(probeURL, "prom", "s3cret")
		return code == 200
	})
	if code, body := do(probeURL, "prom", "s3cret"); code != 200 || !strings.Contains(body, "\nprobe_success 1\n") {
		t.Errorf("with TLS and the password: %d\n%s", code, body)
	}
	if code, _ := do(probeURL, "", ""); code != 401 {
		t.Errorf("without a password: %d, want 401", code)
	}
	if code, _ := do(probeURL, "prom", "wrong"); code != 401 {
		t.Errorf("with a wrong password: %d, want 401", code)
	}
	if code, body := do("http://"+addr+"/metrics", "prom", "s3cret"); code == 200 {
		t.Errorf("plain HTTP answered: %s", body)
	}

	// The file is read again for every connection (exporter-toolkit): one
	// broken after start-up fails closed, every handshake refused, and the
	// log says what is wrong in one line without its text; mended, it
	// serves again.
	good, _ := os.ReadFile(webCfg)
	os.WriteFile(webCfg, []byte("tls_server_config:\n  min_version: hunter2\n"), 0o644)
	c.Transport.(*http.Transport).CloseIdleConnections()
	if code, body := do(probeURL, "prom", "s3cret"); code != 0 {
		t.Errorf("with a broken web configuration: %d %s", code, body)
	}
	os.WriteFile(webCfg, good, 0o644)
	if code, _ := do(probeURL, "prom", "s3cret"); code != 200 {
		t.Errorf("mended: %d", code)
	}
	serveCmd.Process.Signal(syscall.SIGTERM)
	<-serveDone
	log := serveOut.String()
	want := "file=" + webCfg + ` problem="tls_server_config: min_version, max_version: TLS10, TLS11, TLS12 or TLS13"`
	if strings.Contains(log, "hunter2") || strings.Count(log, want) < 1 {
		t.Errorf("log, want a line with %s:\n%s", want, log)
	}

	// A broken file at start: exit 2 and one line, before anything is
	// opened.
	os.WriteFile(webCfg, []byte("basic_auth_users:\n  prom: hunter2\n"), 0o644)
	r := runIn(t, l, l.Prober, "serve", "--config.file", cfgPath, "--web.listen-address", addr, "--web.config.file", webCfg)
	if want := "synprobe serve: --web.config.file " + webCfg + ": basic_auth_users: a password that is not a bcrypt hash (htpasswd -nBC 10 USER makes one)\n"; r.code != 2 || r.stderr != want {
		t.Errorf("broken at start: exit %d, %q; want 2, %q", r.code, r.stderr, want)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestIntegrationServeBesideBlackbox: Debian's blackbox_exporter (tcp
// prober, a connect()) and synprobe serve on the same lab targets give
// the same probe_success; after 100 probes of each to the open port, the
// namespaces' socket tables (ss, the witness) hold the TIME_WAITs
// blackbox_exporter's connections leave and none from synprobe's.
func TestIntegrationServeBesideBlackbox(t *testing.T) {
	bb, err := exec.LookPath("prometheus-blackbox-exporter")
	if err != nil {
		t.Skip("prometheus-blackbox-exporter not found: install Debian's prometheus-blackbox-exporter (scripts/deps.sh does)")
	}
	l := verdictLab(t)
	dir, err := os.MkdirTemp("", "synprobe-serve-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "serve.yml"), []byte("modules:\n  rst: {mode: rst, timeout: 500ms}\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "blackbox.yml"), []byte("modules:\n  tcp: {prober: tcp, timeout: 500ms}\n"), 0o644)
	const serveAddr, bbAddr = "127.0.0.1:9516", "127.0.0.1:9115"
	startIn(t, l, l.Prober, "synprobe serve", synprobeBinary(t), "serve", "--config.file", filepath.Join(dir, "serve.yml"), "--web.listen-address", serveAddr)
	startIn(t, l, l.Prober, "blackbox_exporter", bb, "--config.file", filepath.Join(dir, "blackbox.yml"), "--web.listen-address", bbAddr)
	c := nsClient(l, l.Prober)
	for _, a := range []string{serveAddr, bbAddr} {
		waitFor(t, a, 20*time.Second, func() bool {
			resp, err := c.Get("http://" + a + "/-/healthy")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil && resp.StatusCode == 200
		})
	}
	success := func(body string) string {
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(line, "probe_success "); ok {
				return v
			}
		}
		return "absent"
	}
	bbProbe := func(target string) string {
		_, body := httpGet(t, c, "GET", "http://"+bbAddr+"/probe?module=tcp&target="+url.QueryEscape(target))
		return success(body)
	}
	spProbe := func(target string) string {
		_, body := httpGet(t, c, "GET", "http://"+serveAddr+"/probe?module=rst&target="+url.QueryEscape(target))
		return success(body)
	}
	for _, target := range []string{hostPort(l.TargetV4, 80), hostPort(l.TargetV6, 80), hostPort(l.TargetV4, 84), hostPort(l.TargetV4, 81), hostPort(l.TargetV4, 82), hostPort(l.TargetV4, 83)} {
		b, s := bbProbe(target), spProbe(target)
		want := "0"
		if strings.HasSuffix(target, ":80") {
			want = "1"
		}
		if b != want || s != want {
			t.Errorf("%s: probe_success blackbox %s, synprobe %s; want %s", target, b, s, want)
		}
	}
	// TIME_WAIT on port 80, in the target's table and the prober's, once
	// every connection has finished closing (the last one's FINs may
	// still be on their way when the probe's answer comes back).
	timeWait := func() (target, prober int) {
		waitFor(t, "the connections on port 80 closed", 10*time.Second, func() bool {
			return strings.TrimSpace(l.Run(t, l.Target, "ss", "-Htan", "exclude", "listening", "exclude", "time-wait", "( sport = :80 )")) == "" &&
				strings.TrimSpace(l.Run(t, l.Prober, "ss", "-Htan", "exclude", "time-wait", "( dport = :80 )")) == ""
		})
		count := func(ns, filter string) int {
			out := strings.TrimSpace(l.Run(t, ns, "ss", "-Htan", "state", "time-wait", filter))
			if out == "" {
				return 0
			}
			return len(strings.Split(out, "\n"))
		}
		return count(l.Target, "( sport = :80 )"), count(l.Prober, "( dport = :80 )")
	}
	t0, p0 := timeWait() // the two probes above: one of blackbox's
	target := hostPort(l.TargetV4, 80)
	for i := 0; i < 100; i++ {
		if s := spProbe(target); s != "1" {
			t.Fatalf("synprobe probe %d: probe_success %s", i, s)
		}
	}
	t1, p1 := timeWait()
	if t1 != t0 || p1 != p0 {
		t.Errorf("100 synprobe probes left TIME_WAITs: target %d -> %d, prober %d -> %d", t0, t1, p0, p1)
	}
	for i := 0; i < 100; i++ {
		if s := bbProbe(target); s != "1" {
			t.Fatalf("blackbox probe %d: probe_success %s", i, s)
		}
	}
	t2, p2 := timeWait()
	t.Logf("TIME_WAIT on port 80 after 100 probes each: synprobe +%d on the target, +%d on the prober; blackbox_exporter +%d on the target, +%d on the prober", t1-t0, p1-p0, t2-t1, p2-p1)
	if (t2-t1)+(p2-p1) < 100 {
		t.Errorf("100 blackbox probes left %d TIME_WAITs on the target and %d on the prober: want one a connection\ntarget:\n%s\nprober:\n%s", t2-t1, p2-p1,
			l.Run(t, l.Target, "ss", "-tan", "( sport = :80 )"), l.Run(t, l.Prober, "ss", "-tan", "( dport = :80 )"))
	}
}

// TestIntegrationServeService: serve as the systemd unit of docs/serve.md
// runs it (an unprivileged user given CAP_NET_RAW and CAP_NET_ADMIN as
// ambient capabilities) keeps none once set up and still probes in fin
// mode (its RST guard made at set-up); without capabilities, or with its
// address taken, it fails with exit 3 and one line.
func TestIntegrationServeService(t *testing.T) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("needs setpriv")
	}
	l := verdictLab(t)
	dir, err := os.MkdirTemp("", "synprobe-serve-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	cfg := filepath.Join(dir, "serve.yml")
	os.WriteFile(cfg, []byte("modules:\n  fin: {mode: fin, timeout: 500ms, close_timeout: 1s}\n"), 0o644)
	bin := synprobeBinary(t)
	const addr = "127.0.0.1:9516"

	r := runCmd(t, l, l.Prober, nil, asNobody(bin, "serve", "--config.file", cfg, "--web.listen-address", addr)...)
	if r.code != exitFailure || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "setcap cap_net_raw,cap_net_admin+ep") {
		t.Errorf("without capabilities: exit %d, %q", r.code, r.stderr)
	}

	cmd, done := startIn(t, l, l.Prober, "synprobe serve", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=+net_raw,+net_admin", "--ambient-caps=+net_raw,+net_admin", bin, "serve", "--config.file", cfg, "--web.listen-address", addr)
	c := nsClient(l, l.Prober)
	waitFor(t, "synprobe serve", 20*time.Second, func() bool {
		resp, err := c.Get("http://" + addr + "/-/healthy")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	// ip netns exec and setpriv exec: the pid is synprobe's.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// synprobe execed synprobe-serve in its place: the same pid, as
	// systemd's MainPID.
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)); err != nil || exe != filepath.Join(filepath.Dir(bin), "synprobe-serve") {
		t.Errorf("pid %d runs %q (%v), want synprobe-serve beside %s", cmd.Process.Pid, exe, err, bin)
	}
	for _, want := range []string{"Uid:\t65534\t65534\t65534\t65534", "CapInh:\t0000000000000000", "CapPrm:\t0000000000000000", "CapEff:\t0000000000000000", "CapAmb:\t0000000000000000", "NoNewPrivs:\t1"} {
		if !strings.Contains(string(status), want+"\n") {
			t.Errorf("after set-up, the status lacks %q:\n%s", want, status)
		}
	}
	code, body := httpGet(t, c, "GET", "http://"+addr+"/probe?module=fin&target="+hostPort(l.TargetV4, 80))
	// A close of the peer's own (the listener closes at once, so which
	// FIN goes first is a race): had the guard not held, the kernel's RST
	// would have reset the connection, and the pattern would be rst.
	closed := false
	for _, p := range []string{"3-way", "4-way", "peer-first", "simultaneous"} {
		closed = closed || strings.Contains(body, "probe_tcp_close{pattern=\""+p+"\"} 1\n")
	}
	if code != 200 || !strings.Contains(body, "\nprobe_success 1\n") || !closed {
		t.Errorf("fin probe without capabilities: %d\n%s", code, body)
	}

	// Its address is now taken.
	r = runIn(t, l, l.Prober, "serve", "--config.file", cfg, "--web.listen-address", addr)
	_, port, _ := net.SplitHostPort(addr)
	if want := "synprobe serve: --web.listen-address " + addr + ": the address is taken: another program listens on it (ss -ltnp 'sport = :" + port + "' shows which): give another address, or stop that program\n"; r.code != exitFailure || r.stderr != want {
		t.Errorf("address taken: exit %d, %q", r.code, r.stderr)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("synprobe serve did not end within 15 s of SIGTERM")
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}

// TestIntegrationServeExec: `synprobe serve` runs synprobe-serve from
// beside synprobe, else from PATH, and without it fails with exit 3 and
// one line that names the file and the fix. A setcap'd synprobe never
// takes it from PATH, which its caller chooses.
func TestIntegrationServeExec(t *testing.T) {
	l := netlab.New(t)
	built := filepath.Dir(synprobeBinary(t))
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	alone := filepath.Join(dir, "synprobe")
	data, err := os.ReadFile(synprobeBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(alone, data, 0o755)
	sysPath := "PATH=/usr/sbin:/usr/bin:/sbin:/bin"
	withServe := "PATH=" + built + ":/usr/sbin:/usr/bin:/sbin:/bin"
	missing := "synprobe serve: " + filepath.Join(dir, "synprobe-serve") + " not found: serve is a binary of its own, installed beside synprobe (make install installs both)\n"

	r := runCmd(t, l, l.Prober, []string{sysPath}, alone, "serve", "--help")
	if r.code != exitFailure || r.stderr != missing || r.stdout != "" {
		t.Errorf("without synprobe-serve: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	r = runCmd(t, l, l.Prober, []string{withServe}, alone, "serve", "--help")
	if r.code != exitOK || !strings.HasPrefix(r.stdout, "Usage: synprobe serve") || r.stderr != "" {
		t.Errorf("synprobe-serve in PATH: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	// Beside it (synprobeBinary's directory) it is found whatever PATH.
	r = runCmd(t, l, l.Prober, []string{sysPath}, synprobeBinary(t), "serve", "--bogus")
	if r.code != exitUsage || r.stderr != "synprobe serve: unknown flag: --bogus\n" {
		t.Errorf("beside: exit %d, %q", r.code, r.stderr)
	}

	// One that cannot run: one line naming it.
	os.WriteFile(filepath.Join(dir, "synprobe-serve"), []byte("not a program\n"), 0o644)
	r = runCmd(t, l, l.Prober, []string{sysPath}, alone, "serve", "--help")
	if want := "synprobe serve: cannot run " + filepath.Join(dir, "synprobe-serve") + ": permission denied\n"; r.code != exitFailure || r.stderr != want {
		t.Errorf("synprobe-serve not executable: exit %d, %q; want 3, %q", r.code, r.stderr, want)
	}

	if _, err := exec.LookPath("setcap"); err != nil {
		t.Skip("needs setcap")
	}
	capped := setcapBinary(t, l)
	r = runCmd(t, l, l.Prober, []string{withServe}, asNobody(capped, "serve", "--help")...)
	want := "synprobe serve: " + filepath.Join(filepath.Dir(capped), "synprobe-serve") + " not found"
	if r.code != exitFailure || !strings.HasPrefix(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("setcap'd, synprobe-serve in PATH only: exit %d, %q; want 3, %q", r.code, r.stderr, want)
	}
}

// TestIntegrationServePacketCounters: /metrics's packet counters after a
// known number of /probe requests, against a capture on the prober's
// link: 10 open (SYN and RST out, SYN-ACK in), 5 closed (SYN out, RST in)
// and 5 admin-prohibited (SYN out, the ICMP error in).
func TestIntegrationServePacketCounters(t *testing.T) {
	l := verdictLab(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	cfgPath := filepath.Join(dir, "serve.yml")
	os.WriteFile(cfgPath, []byte("modules:\n  rst: {timeout: 300ms}\n"), 0o644)
	const addr = "127.0.0.1:9516"
	startIn(t, l, l.Prober, "synprobe serve", synprobeBinary(t), "serve", "--config.file", cfgPath, "--web.listen-address", addr)
	c := nsClient(l, l.Prober)
	waitFor(t, "synprobe serve", 20*time.Second, func() bool {
		resp, err := c.Get("http://" + addr + "/-/healthy")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	capt := l.StartCapture(t, l.Prober, l.ProberIf, "tcp or icmp")
	for i := range 20 {
		port := map[bool]uint16{true: 80, false: 83}[i < 10]
		if i >= 15 {
			port = 82
		}
		if code, body := httpGet(t, c, "GET", fmt.Sprintf("http://%s/probe?module=rst&target=%s", addr, hostPort(l.TargetV4, port))); code != 200 || !strings.Contains(body, "\nprobe_tcp_result{result=\"timeout\"} 0\n") {
			t.Fatalf("probe %d: %d\n%s", i, code, body)
		}
	}
	time.Sleep(100 * time.Millisecond)
	_, body := httpGet(t, c, "GET", "http://"+addr+"/metrics")
	pkts, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	var out, in int
	for _, p := range pkts {
		var w wire.Packet
		if wire.Parse(p.Data, &w) != nil {
			continue
		}
		switch {
		case w.Src == l.ProberV4:
			out++
		case w.Dst == l.ProberV4:
			in++
		}
	}
	for _, want := range []string{
		fmt.Sprintf("synprobe_packets_sent_total %d\n", out),
		fmt.Sprintf("synprobe_packets_received_total %d\n", in),
		"synprobe_packets_unmatched_total 0\n",
		"synprobe_send_errors_total 0\n",
	} {
		if !strings.Contains(body, "\n"+want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if out != 30 || in != 20 {
		t.Errorf("the capture saw %d packets out, %d in; want 30, 20", out, in)
	}
}
