package exporter

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// Config is a parsed configuration file (docs/serve.md).
type Config struct {
	// Modules by name. The module named DefaultModule, when the file has
	// none of that name, is the built-in rst module.
	Modules map[string]*Module
	// Targets are probed in the background, each every Interval.
	Targets []*Target
	// Buckets are the classic buckets of synprobe_response_duration_seconds
	// (seconds); NativeFactor the growth factor of its native buckets, 0
	// for none.
	Buckets      []float64
	NativeFactor float64

	file string // the file's name, for errors
}

// CheckBroadcasts refuses a target written as an address that bcast
// names as the broadcast address of a subnet of this host
// (rawsock.LocalBroadcasts): a probe goes to one host. Parse refuses the
// other addresses that are not unicast; which are a subnet's broadcast
// depends on the host. The error names the file and line.
func (c *Config) CheckBroadcasts(bcast map[netip.Addr]string) error {
	for _, t := range c.Targets {
		a, err := netip.ParseAddr(t.Host)
		if err != nil {
			continue // a name: checked when it resolves
		}
		if why := probe.Unusable(a, bcast); why != "" {
			return fmt.Errorf("%s:%d: target %s: not a unicast address: %s", c.file, t.line, net.JoinHostPort(t.Host, strconv.Itoa(int(t.Port))), why)
		}
	}
	return nil
}

// DefaultModule is the module a /probe request without module= uses.
const DefaultModule = "default"

// Module says how a target is probed.
type Module struct {
	Name string
	// Options are the probe's, as given to probe.Client.Probe; Timeout is
	// the SYN's wait, cut to the scrape's budget on /probe.
	Options probe.ProbeOptions
	// PreferIPv4 picks the family tried first when a host name resolves
	// to both; Fallback allows the other one.
	PreferIPv4 bool
	Fallback   bool
}

// Target is one host:port of a targets entry.
type Target struct {
	Host     string // host name or address, as written
	Port     uint16
	Module   *Module
	Interval time.Duration
	// Labels are the entry's own labels, sorted by name.
	Labels []Label
	line   int
}

// Label is a name and value pair.
type Label struct{ Name, Value string }

// Config defaults.
var (
	// DefaultBuckets span the kernel-stamped RTTs of a LAN (tens of µs)
	// to those of a lost SYN-ACK's retransmission (a second and more).
	DefaultBuckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}
	// DefaultNativeFactor: no native buckets unless asked for. They cost
	// memory per target (about 2.3 KB each with 10,000 targets, measured)
	// that a Prometheus without the native-histograms feature never
	// reads; 1.1 is client_golang's usual factor (buckets 10% apart).
	DefaultNativeFactor = 0.0
)

const (
	defaultInterval = time.Second
	defaultTimeout  = time.Second
	minInterval     = 10 * time.Millisecond
	maxData         = 65536
	maxTargets      = 1 << 20
)

// builtinDefault is the module of /probe requests without module= when
// the file defines no module named "default".
func builtinDefault() *Module {
	return &Module{Name: DefaultModule, Options: probe.ProbeOptions{Mode: probe.ModeRST, Timeout: defaultTimeout}, Fallback: true}
}

// Load reads and parses the configuration file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return Parse(b, path)
}

// Parse parses a configuration; name is the file's, for errors. Errors
// name the file and line of the problem but never show the file's text.
func Parse(data []byte, name string) (*Config, error) {
	p := &parser{file: name}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty configuration: it needs modules or targets", name)
		}
		return nil, p.syntax(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, p.errf(&extra, "a second YAML document: the configuration is one")
	}
	cfg, err := p.config(&doc)
	if err != nil {
		return nil, err
	}
	cfg.file = name
	return cfg, nil
}

// parser walks the YAML tree by hand, so that an unknown field is
// refused with its line (strictness) and no message quotes the file.
type parser struct{ file string }

// yamlLine is compiled when first needed: every synprobe run links this
// package, and a regexp at init would cost each of them.
var yamlLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^yaml: line (\d+): (.*)$`) })

// syntax rewrites a YAML syntax error as FILE:LINE: problem. The
// parser's messages describe the problem; none quotes the text.
func (p *parser) syntax(err error) error {
	msg := err.Error()
	if m := yamlLine().FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: not valid YAML: %s", p.file, m[1], m[2])
	}
	return fmt.Errorf("%s: not valid YAML: %s", p.file, strings.TrimPrefix(msg, "yaml: "))
}

func (p *parser) errf(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s", p.file, n.Line, fmt.Sprintf(format, args...))
}

// fields walks mapping n, calling the handler of each key; an unknown
// key is refused with the known ones (the key itself is not shown).
func (p *parser) fields(n *yaml.Node, what string, handlers map[string]func(*yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		return p.errf(n, "%s must be a mapping (key: value)", what)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		h, ok := handlers[k.Value]
		if k.Kind != yaml.ScalarNode || !ok {
			known := make([]string, 0, len(handlers))
			for name := range handlers {
				known = append(known, name)
			}
			slices.Sort(known)
			return p.errf(k, "unknown field in %s (known: %s)", what, strings.Join(known, ", "))
		}
		if seen[k.Value] {
			return p.errf(k, "%s given twice in %s", k.Value, what)
		}
		seen[k.Value] = true
		if err := h(v); err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) config(doc *yaml.Node) (*Config, error) {
	root := doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		root = doc.Content[0]
	}
	cfg := &Config{Modules: map[string]*Module{}, Buckets: DefaultBuckets, NativeFactor: DefaultNativeFactor}
	var targets *yaml.Node
	err := p.fields(root, "the configuration", map[string]func(*yaml.Node) error{
		"modules": func(n *yaml.Node) error {
			if n.Kind != yaml.MappingNode {
				return p.errf(n, "modules must map names to modules")
			}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if k.Kind != yaml.ScalarNode || !validName(k.Value) {
					return p.errf(k, "a module name is letters, digits, '_', '-' and '.', at most 64")
				}
				if cfg.Modules[k.Value] != nil {
					return p.errf(k, "module %s defined twice", k.Value)
				}
				m, err := p.module(k.Value, v)
				if err != nil {
					return err
				}
				cfg.Modules[k.Value] = m
			}
			return nil
		},
		"targets": func(n *yaml.Node) error { targets = n; return nil },
		"histogram": func(n *yaml.Node) error {
			return p.fields(n, "histogram", map[string]func(*yaml.Node) error{
				"buckets": func(n *yaml.Node) error {
					b, err := p.buckets(n)
					cfg.Buckets = b
					return err
				},
				"native_bucket_factor": func(n *yaml.Node) error {
					f, err := p.float(n, "native_bucket_factor")
					if err == nil && f != 0 && (f <= 1 || f > 2) {
						err = p.errf(n, "native_bucket_factor: more than 1 and at most 2, or 0 for no native buckets")
					}
					cfg.NativeFactor = f
					return err
				},
			})
		},
	})
	if err != nil {
		return nil, err
	}
	if cfg.Modules[DefaultModule] == nil {
		cfg.Modules[DefaultModule] = builtinDefault()
	}
	if targets != nil {
		if err := p.targets(cfg, targets); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// validName: a module name is [A-Za-z0-9_.-]{1,64}.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !isAlnum(c) && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// validLabel: a label name is [a-zA-Z_][a-zA-Z0-9_]*.
func validLabel(s string) bool {
	if s == "" || '0' <= s[0] && s[0] <= '9' {
		return false
	}
	for _, c := range []byte(s) {
		if !isAlnum(c) && c != '_' {
			return false
		}
	}
	return true
}

func (p *parser) module(name string, n *yaml.Node) (*Module, error) {
	m := &Module{Name: name, Fallback: true}
	o := &m.Options
	o.Timeout = defaultTimeout
	var syn *wire.SYNOptions
	err := p.fields(n, "module "+name, map[string]func(*yaml.Node) error{
		"mode": func(n *yaml.Node) error {
			mode, err := probe.ParseMode(n.Value)
			if n.Kind != yaml.ScalarNode || err != nil {
				return p.errf(n, "mode: rst, ack or fin")
			}
			o.Mode = mode
			return nil
		},
		"timeout": func(n *yaml.Node) error {
			d, err := p.duration(n, "timeout", time.Millisecond, time.Minute)
			o.Timeout = d
			return err
		},
		"hold": func(n *yaml.Node) error {
			d, err := p.duration(n, "hold", 0, time.Minute)
			o.Hold = d
			return err
		},
		"close_timeout": func(n *yaml.Node) error {
			d, err := p.duration(n, "close_timeout", time.Millisecond, time.Minute)
			o.CloseTimeout = d
			return err
		},
		"data": func(n *yaml.Node) error {
			if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
				return p.errf(n, "data: a string (in double quotes, YAML's escapes: \\r \\n \\x00)")
			}
			if len(n.Value) > maxData {
				return p.errf(n, "data is %d bytes; at most %d", len(n.Value), maxData)
			}
			o.Data = []byte(n.Value)
			return nil
		},
		"preferred_ip_protocol": func(n *yaml.Node) error {
			switch n.Value {
			case "ip4":
				m.PreferIPv4 = true
			case "ip6":
				m.PreferIPv4 = false
			default:
				return p.errf(n, "preferred_ip_protocol: ip4 or ip6")
			}
			return nil
		},
		"ip_protocol_fallback": func(n *yaml.Node) error {
			b, err := p.bool(n, "ip_protocol_fallback")
			m.Fallback = b
			return err
		},
		"source": func(n *yaml.Node) error {
			a, err := netip.ParseAddr(n.Value)
			if n.Kind != yaml.ScalarNode || err != nil || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
				return p.errf(n, "source: a unicast address of this host, without a zone")
			}
			o.Source = a.Unmap()
			return nil
		},
		"ttl": func(n *yaml.Node) error {
			v, err := p.uint(n, "ttl", 1, 255)
			o.TTL = uint8(v)
			return err
		},
		"tos": func(n *yaml.Node) error {
			v, err := p.uint(n, "tos", 0, 255)
			o.TOS = uint8(v)
			return err
		},
		"window": func(n *yaml.Node) error {
			v, err := p.uint(n, "window", 1, 65535)
			o.Window = uint16(v)
			return err
		},
		"ecn": func(n *yaml.Node) error {
			b, err := p.bool(n, "ecn")
			o.ECN = b
			return err
		},
		"syn_options": func(n *yaml.Node) error {
			if n.Kind == yaml.ScalarNode && n.Value == "none" {
				o.NoOptions = true
				return nil
			}
			syn = &wire.SYNOptions{MSS: 0, WScale: 7, SACKPermitted: true, Timestamps: true}
			return p.fields(n, "syn_options of module "+name, map[string]func(*yaml.Node) error{
				"mss": func(n *yaml.Node) error {
					v, err := p.uint(n, "mss", 1, 65535)
					syn.MSS = uint16(v)
					return err
				},
				"wscale": func(n *yaml.Node) error {
					v, err := p.uint(n, "wscale", 0, 14)
					syn.WScale = int(v)
					return err
				},
				"sack": func(n *yaml.Node) error {
					b, err := p.bool(n, "sack")
					syn.SACKPermitted = b
					return err
				},
				"timestamps": func(n *yaml.Node) error {
					b, err := p.bool(n, "timestamps")
					syn.Timestamps = b
					return err
				},
			})
		},
	})
	if err != nil {
		return nil, err
	}
	if syn != nil {
		o4, o6 := *syn, *syn
		if o4.MSS == 0 {
			o4.MSS, o6.MSS = 1460, 1440
		}
		o.Options, o.Options6 = &o4, &o6
	}
	if o.Mode != probe.ModeFIN && (o.Hold != 0 || o.Data != nil || o.CloseTimeout != 0) {
		return nil, p.errf(n, "module %s: hold, data and close_timeout are the fin mode's", name)
	}
	return m, nil
}

func (p *parser) targets(cfg *Config, n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return p.errf(n, "targets must be a list of entries (- hosts: [...])")
	}
	type key struct {
		host   string
		port   uint16
		module string
	}
	seen := map[key]int{}
	for _, e := range n.Content {
		var hosts []*yaml.Node
		interval := defaultInterval
		mod := cfg.Modules[DefaultModule]
		var labels []Label
		err := p.fields(e, "a targets entry", map[string]func(*yaml.Node) error{
			"hosts": func(n *yaml.Node) error {
				if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
					return p.errf(n, "hosts: a list of host:port, [ipv6]:port")
				}
				hosts = n.Content
				return nil
			},
			"interval": func(n *yaml.Node) error {
				d, err := p.duration(n, "interval", minInterval, time.Hour)
				interval = d
				return err
			},
			"module": func(n *yaml.Node) error {
				if n.Kind != yaml.ScalarNode || cfg.Modules[n.Value] == nil {
					return p.errf(n, "module: not one of the modules defined")
				}
				mod = cfg.Modules[n.Value]
				return nil
			},
			"labels": func(n *yaml.Node) error {
				l, err := p.labels(n)
				labels = l
				return err
			},
		})
		if err != nil {
			return err
		}
		if hosts == nil {
			return p.errf(e, "a targets entry needs hosts")
		}
		for _, h := range hosts {
			if h.Kind != yaml.ScalarNode {
				return p.errf(h, "hosts: each one host:port")
			}
			host, port, err := SplitTarget(h.Value)
			if err != nil {
				return p.errf(h, "hosts: %v", err)
			}
			k := key{host, port, mod.Name}
			if l, dup := seen[k]; dup {
				if l == h.Line {
					return p.errf(h, "hosts: the same host and port twice on this line")
				}
				return p.errf(h, "the same host, port and module as line %d", l)
			}
			seen[k] = h.Line
			if len(cfg.Targets) >= maxTargets {
				return p.errf(h, "more than %d targets", maxTargets)
			}
			cfg.Targets = append(cfg.Targets, &Target{Host: host, Port: port, Module: mod, Interval: interval, Labels: labels, line: h.Line})
		}
	}
	return nil
}

// reservedLabels are the series' own labels, which a target's may not
// replace.
var reservedLabels = []string{"host", "ip", "port", "module", "result", "pattern", "le", "instance", "job"}

func (p *parser) labels(n *yaml.Node) ([]Label, error) {
	if n.Kind != yaml.MappingNode {
		return nil, p.errf(n, "labels: a mapping of label names to values")
	}
	var out []Label
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode || !validLabel(k.Value) || strings.HasPrefix(k.Value, "__"):
			return nil, p.errf(k, "a label name is [a-zA-Z_][a-zA-Z0-9_]*, not starting with __")
		case slices.Contains(reservedLabels, k.Value):
			return nil, p.errf(k, "label %s is synprobe's own (reserved: %s)", k.Value, strings.Join(reservedLabels, ", "))
		case v.Kind != yaml.ScalarNode || !utf8.ValidString(v.Value) || len(v.Value) > 1024:
			return nil, p.errf(v, "label %s: a value is a string of valid UTF-8, at most 1024 bytes", k.Value)
		}
		for _, l := range out {
			if l.Name == k.Value {
				return nil, p.errf(k, "label %s given twice", k.Value)
			}
		}
		out = append(out, Label{k.Value, v.Value})
	}
	slices.SortFunc(out, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (p *parser) buckets(n *yaml.Node) ([]float64, error) {
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 || len(n.Content) > 100 {
		return nil, p.errf(n, "buckets: a list of 1 to 100 upper bounds in seconds, increasing")
	}
	var b []float64
	for _, e := range n.Content {
		f, err := p.float(e, "buckets")
		if err != nil {
			return nil, err
		}
		if f <= 0 || (len(b) > 0 && f <= b[len(b)-1]) {
			return nil, p.errf(e, "buckets: upper bounds in seconds, positive and increasing")
		}
		b = append(b, f)
	}
	return b, nil
}

// duration parses a Go duration ("100ms", "1.5s", "2m") within lo..hi.
func (p *parser) duration(n *yaml.Node, what string, lo, hi time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return 0, p.errf(n, "%s: a duration with its unit (100ms, 1.5s, 2m)", what)
	}
	if d < lo || d > hi {
		return 0, p.errf(n, "%s: from %v to %v", what, lo, hi)
	}
	return d, nil
}

func (p *parser) uint(n *yaml.Node, what string, lo, hi uint64) (uint64, error) {
	v, err := strconv.ParseUint(n.Value, 10, 32)
	if n.Kind != yaml.ScalarNode || err != nil || v < lo || v > hi {
		return 0, p.errf(n, "%s: a whole number from %d to %d", what, lo, hi)
	}
	return v, nil
}

func (p *parser) float(n *yaml.Node, what string) (float64, error) {
	f, err := strconv.ParseFloat(n.Value, 64)
	if n.Kind != yaml.ScalarNode || err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, p.errf(n, "%s: a number", what)
	}
	return f, nil
}

func (p *parser) bool(n *yaml.Node, what string) (bool, error) {
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!bool" && (n.Value == "true" || n.Value == "false"):
		return n.Value == "true", nil
	}
	return false, p.errf(n, "%s: true or false", what)
}

// SplitTarget parses host:port or [ipv6]:port. A literal address must be
// unicast and without a zone; the port is a number from 1 to 65535. Its
// errors do not quote s.
func SplitTarget(s string) (host string, port uint16, err error) {
	h, ps, err := net.SplitHostPort(s)
	if err != nil || h == "" {
		return "", 0, errors.New("want host:port or [ipv6]:port")
	}
	pn, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || pn == 0 {
		return "", 0, errors.New("the port is a number from 1 to 65535")
	}
	if a, err := netip.ParseAddr(h); err == nil {
		switch {
		case a.Zone() != "":
			return "", 0, errors.New("zoned addresses are not supported")
		}
		if why := probe.Unusable(a, nil); why != "" {
			return "", 0, errors.New("not a unicast address: " + why)
		}
		return a.Unmap().String(), uint16(pn), nil
	}
	if len(h) > 253 || strings.ContainsAny(h, " \t/\\@?#%") || !utf8.ValidString(h) {
		return "", 0, errors.New("not a host name or address")
	}
	return h, uint16(pn), nil
}
