package exporter

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
)

const issueExample = `
modules:
  rst: {mode: rst, timeout: 5s}
  fin: {mode: fin, timeout: 2s, hold: 100ms}
targets:
  - hosts: ["198.18.0.2:443", "[2001:db8::2]:443"]
    interval: 100ms
    module: rst
    labels: {service: web}
`

func TestParseIssueExample(t *testing.T) {
	cfg, err := Parse([]byte(issueExample), "synprobe.yml")
	if err != nil {
		t.Fatal(err)
	}
	rst, fin := cfg.Modules["rst"], cfg.Modules["fin"]
	if rst == nil || fin == nil || cfg.Modules[DefaultModule] == nil {
		t.Fatalf("modules %v", cfg.Modules)
	}
	if rst.Options.Mode != probe.ModeRST || rst.Options.Timeout != 5*time.Second || !rst.Fallback || rst.PreferIPv4 {
		t.Errorf("rst module %+v", rst)
	}
	if fin.Options.Mode != probe.ModeFIN || fin.Options.Timeout != 2*time.Second || fin.Options.Hold != 100*time.Millisecond {
		t.Errorf("fin module %+v", fin.Options)
	}
	if len(cfg.Targets) != 2 {
		t.Fatalf("%d targets", len(cfg.Targets))
	}
	for i, want := range []string{"198.18.0.2", "2001:db8::2"} {
		tg := cfg.Targets[i]
		if tg.Host != want || tg.Port != 443 || tg.Module != rst || tg.Interval != 100*time.Millisecond ||
			!slices.Equal(tg.Labels, []Label{{"service", "web"}}) {
			t.Errorf("target %d: %+v", i, tg)
		}
	}
	if !slices.Equal(cfg.Buckets, DefaultBuckets) || cfg.NativeFactor != DefaultNativeFactor {
		t.Errorf("histogram %v %v", cfg.Buckets, cfg.NativeFactor)
	}
}

func TestParseEverything(t *testing.T) {
	cfg, err := Parse([]byte(`
modules:
  default: {mode: ack, timeout: 300ms}
  v4:
    mode: fin
    preferred_ip_protocol: ip4
    ip_protocol_fallback: false
    source: 198.18.0.1
    hold: 1s
    close_timeout: 2s
    data: "GET / HTTP/1.0\r\n\r\n"
    ttl: 9
    tos: 16
    window: 1000
    ecn: true
    syn_options: {mss: 1200, wscale: 3, sack: false, timestamps: false}
  bare: {syn_options: none}
targets:
  - hosts: [web.example:80]
histogram:
  buckets: [0.0001, 0.001, 0.01]
  native_bucket_factor: 1.5
`), "x.yml")
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Modules["default"]
	if d.Options.Mode != probe.ModeACK || d.Options.Timeout != 300*time.Millisecond {
		t.Errorf("default %+v", d.Options)
	}
	if cfg.Targets[0].Module != d || cfg.Targets[0].Interval != time.Second || cfg.Targets[0].Host != "web.example" {
		t.Errorf("target %+v", cfg.Targets[0])
	}
	v4 := cfg.Modules["v4"]
	o := v4.Options
	if !v4.PreferIPv4 || v4.Fallback || o.Source.String() != "198.18.0.1" || o.Hold != time.Second ||
		o.CloseTimeout != 2*time.Second || string(o.Data) != "GET / HTTP/1.0\r\n\r\n" || o.TTL != 9 || o.TOS != 16 ||
		o.Window != 1000 || !o.ECN || o.Options.MSS != 1200 || o.Options.WScale != 3 || o.Options.SACKPermitted ||
		o.Options.Timestamps || o.Options6.MSS != 1200 {
		t.Errorf("v4 %+v %+v", v4, o.Options)
	}
	if !cfg.Modules["bare"].Options.NoOptions {
		t.Error("syn_options: none")
	}
	if !slices.Equal(cfg.Buckets, []float64{0.0001, 0.001, 0.01}) || cfg.NativeFactor != 1.5 {
		t.Errorf("histogram %v %v", cfg.Buckets, cfg.NativeFactor)
	}
}

// TestParseRefusals: every refusal names the file and line, says what is
// wrong, and never shows the file's text (here a secret on the line).
func TestParseRefusals(t *testing.T) {
	const secret = "hunter2"
	cases := []struct {
		text, want string
	}{
		{"", "x.yml: empty configuration"},
		{"modules: [", "x.yml:1: not valid YAML"},
		{"hunter2: 1", "x.yml:1: unknown field in the configuration (known: histogram, modules, targets)"},
		{"modules:\n  a: {mode: rst, hunter2: 1}", "x.yml:2: unknown field in module a"},
		{"modules:\n  a: {mode: hunter2}", "x.yml:2: mode: rst, ack or fin"},
		{"modules:\n  a: {timeout: hunter2}", "x.yml:2: timeout: a duration"},
		{"modules:\n  a: {timeout: 0s}", "x.yml:2: timeout: from 1ms to 1m0s"},
		{"modules:\n  a: {hold: 1s}", "x.yml:2: module a: hold, data and close_timeout are the fin mode's"},
		{"modules:\n  a: {source: hunter2}", "x.yml:2: source: a unicast address"},
		{"modules:\n  a: {ttl: 0}", "x.yml:2: ttl: a whole number from 1 to 255"},
		{"modules:\n  a: {ecn: hunter2}", "x.yml:2: ecn: true or false"},
		{"modules:\n  a: {preferred_ip_protocol: hunter2}", "x.yml:2: preferred_ip_protocol: ip4 or ip6"},
		{"modules:\n  a: {mode: rst}\n  a: {mode: ack}", "x.yml:3: module a defined twice"},
		{"modules:\n  'hunter2 x': {}", "x.yml:2: a module name is"},
		{"targets:\n  - hosts: [hunter2]", "x.yml:2: hosts: want host:port"},
		{"targets:\n  - hosts: ['hunter2:0']", "x.yml:2: hosts: the port is a number from 1 to 65535"},
		{"targets:\n  - hosts: ['224.0.0.1:80']", "x.yml:2: hosts: not a unicast address: a multicast address"},
		{"targets:\n  - hosts: ['198.18.0.2:80']\n    module: hunter2", "x.yml:3: module: not one of the modules defined"},
		{"targets:\n  - hosts: ['198.18.0.2:80']\n    interval: 1ms", "x.yml:3: interval: from 10ms to 1h0m0s"},
		{"targets:\n  - hosts: ['198.18.0.2:80']\n    labels: {job: hunter2}", "x.yml:3: label job is synprobe's own"},
		{"targets:\n  - hosts: ['198.18.0.2:80']\n    labels: {__x: hunter2}", "x.yml:3: a label name is"},
		{"targets:\n  - hosts: ['198.18.0.2:80']\n  - hosts: ['198.18.0.2:80']", "x.yml:3: the same host, port and module as line 2"},
		{"targets:\n  - hosts: ['198.18.0.2:80', '198.18.0.3:80', '198.18.0.2:80']", "x.yml:2: hosts: the same host and port twice on this line"},
		{"targets:\n  - hosts: ['198.18.0.2:80']\n  - {hosts: ['198.18.0.3:80', '198.18.0.2:80']}", "x.yml:3: the same host, port and module as line 2"},
		{"targets:\n  - interval: 1s", "x.yml:2: a targets entry needs hosts"},
		{"targets: {hunter2: 1}", "x.yml:1: targets must be a list"},
		{"histogram: {buckets: [1, 0.5]}", "x.yml:1: buckets: upper bounds in seconds, positive and increasing"},
		{"histogram: {native_bucket_factor: 3}", "x.yml:1: native_bucket_factor: more than 1"},
		{"modules: {}\n---\nhunter2: 1", "x.yml:2: a second YAML document"},
		{"modules:\n  a: {data: \"" + strings.Repeat("x", 70000) + "\", mode: fin}", "x.yml:2: data is 70000 bytes; at most 65536"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.text), "x.yml")
		if err == nil {
			t.Errorf("%q: accepted", c.text)
			continue
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, c.want) {
			t.Errorf("%q:\n got %s\nwant %s...", c.text, msg, c.want)
		}
		if strings.Contains(msg, secret) || strings.Contains(msg, "\n") {
			t.Errorf("%q: the error shows the file or is not one line: %s", c.text, msg)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.yml")
	if _, err := Load(path); err == nil || err.Error() != path+": no such file or directory" {
		t.Errorf("missing file: %v", err)
	}
	os.WriteFile(path, []byte(issueExample), 0o600)
	if cfg, err := Load(path); err != nil || len(cfg.Targets) != 2 {
		t.Errorf("%v %v", cfg, err)
	}
}

func TestSplitTarget(t *testing.T) {
	for in, want := range map[string]string{
		"198.18.0.2:80":        "198.18.0.2 80",
		"[2001:db8::2]:443":    "2001:db8::2 443",
		"[::ffff:1.2.3.4]:1":   "1.2.3.4 1",
		"example.com:65535":    "example.com 65535",
		"example.com":          "",
		"[fe80::1%eth0]:80":    "",
		"0.0.0.0:80":           "",
		"255.255.255.255:80":   "",
		"198.18.0.2:http":      "",
		":80":                  "",
		"a/b:80":               "",
		"198.18.0.2:65536":     "",
		"[2001:db8::2]:0":      "",
		"ff02::1:80":           "",
		"198.18.0.2:80:80":     "",
		"[2001:db8::2]:443/x":  "",
		"exa mple.com:80":      "",
		"198.18.0.2:+80":       "",
		"198.18.0.2:0x50":      "",
		"[2001:db8::2]:-1":     "",
		"[2001:db8::2]:99999":  "",
		"[2001:db8::2]:080":    "2001:db8::2 80",
		"very.long.name.x:443": "very.long.name.x 443",
	} {
		h, p, err := SplitTarget(in)
		got := ""
		if err == nil {
			got = h + " " + strconv.Itoa(int(p))
		}
		if got != want {
			t.Errorf("SplitTarget(%q) = %q (%v), want %q", in, got, err, want)
		}
		if err != nil && strings.Contains(err.Error(), in) {
			t.Errorf("SplitTarget(%q): the error quotes its input", in)
		}
	}
}

func TestCheckBroadcasts(t *testing.T) {
	bcast := map[netip.Addr]string{netip.MustParseAddr("198.18.0.255"): "lab0"}
	cfg, err := Parse([]byte("targets:\n  - hosts: ['198.18.0.2:80', 'lab.test:80']\n  - hosts:\n      - '198.18.1.2:22'\n      - '198.18.0.255:443'\n"), "s.yml")
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.CheckBroadcasts(bcast)
	if want := "s.yml:5: target 198.18.0.255:443: not a unicast address: the broadcast address of a subnet on lab0"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want %q…", err, want)
	}
	if err := cfg.CheckBroadcasts(nil); err != nil {
		t.Errorf("no broadcasts known: %v", err)
	}
	ok, err := Parse([]byte("targets:\n  - hosts: ['198.18.0.2:80', 'lab.test:80', '[2001:db8::2]:80']\n"), "s.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := ok.CheckBroadcasts(bcast); err != nil {
		t.Errorf("unicast targets refused: %v", err)
	}
}
