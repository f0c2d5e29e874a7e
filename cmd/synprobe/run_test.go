package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/synprobe/synprobe/internal/cli"
	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/rstguard"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// fakeSystem is a network where 198.18.0.2 and 2001:db8::2 listen on port
// 80, refuse 81 (RST) and drop everything else; 198.18.7.7 is behind a
// router that answers admin-prohibited.
type fakeSystem struct {
	listenErr error
	guardErr  error
	rangeErr  error // portRange's
	conn      *probetest.Conn
	guards    []*fakeGuard
	listenCfg rawsock.Config
	clientCfg probe.ClientConfig
	escaped   uint64

	held        map[uint16]bool // ports other sockets hold
	portReq     rawsock.PortRequest
	portsClosed bool
	watchRanges []rawsock.PortRange

	// privileges_test.go
	uid     int               // real uid: 0 is root
	env     map[string]string // SUDO_UID, ...
	addrs   []netip.Addr      // the host's addresses (nil: 198.18.0.1, 2001:db8::1)
	drops   []cli.DropSpec    // dropPrivileges calls
	dropErr error
	events  []string // set-up steps and the drop, in order

	unownedGuard bool
	bcastCalls   int // broadcasts() calls
}

type fakeGuard struct {
	cfg     rstguard.Config
	closed  bool
	unowned bool // a kernel without owned tables (Linux < 5.12)
}

func (g *fakeGuard) Table() string            { return "synprobe_1_00000000" }
func (g *fakeGuard) Owned() bool              { return !g.unowned }
func (g *fakeGuard) Dropped() (uint64, error) { return 7, nil }
func (g *fakeGuard) Close() error             { g.closed = true; return nil }

// client opens what a client holds as probe.NewClient would, in
// the same order: ports (--sport's alone, or a block), sockets (marked
// unless NoGuard), the guard and, counting, its watch.
func (f *fakeSystem) client(cfg *probe.ClientConfig) (pingClient, error) {
	f.clientCfg = *cfg
	var b portBlock
	var err error
	if cfg.SourcePort != 0 {
		b, err = f.reservePort(cfg.SourcePort)
	} else {
		var lo, hi uint16
		if lo, hi, err = f.portRange(); err == nil {
			b, err = f.reservePorts(rawsock.PortRequest{Lo: lo, Hi: hi, Min: cfg.MinPorts, Max: cfg.Ports})
		}
	}
	if err != nil {
		return nil, &probe.OpenError{What: "source ports", Err: err}
	}
	fc := &fakeClient{block: b, escaped: -1}
	rc := rawsock.Config{IPv4: cfg.Network != "ip6", IPv6: cfg.Network != "ip4", PortLo: b.Lo(), PortHi: b.Hi(), Interface: cfg.Interface, Mark: cfg.Mark,
		RecvBuffer: cfg.RecvBuffer, NoTxStamps: cfg.NoTxStamps, SendOnly: cfg.SendOnly}
	if cfg.Mark == 0 && !cfg.NoGuard {
		rc.Mark = probe.DefaultMark
	}
	c, err := f.listen(rc)
	if err != nil {
		fc.Close()
		return nil, &probe.OpenError{What: "raw sockets", Err: err}
	}
	if cfg.Guard {
		if f.guardErr != nil {
			fc.Close()
			return nil, &probe.OpenError{What: "RST guard", Err: f.guardErr}
		}
		fc.guard = &fakeGuard{cfg: rstguard.Config{Ranges: b.Ranges(), Mark: rc.Mark}, unowned: f.unownedGuard}
		f.guards = append(f.guards, fc.guard)
		if cfg.CountRSTs {
			f.watchRanges, fc.escaped = b.Ranges(), int64(f.escaped)
		}
	}
	fc.Client, err = probe.NewClient(&probe.ClientConfig{
		Conn: c, SourcePorts: b.Ports(), RotatePorts: cfg.RotatePorts, Guard: cfg.Guard, NoGuard: cfg.NoGuard,
		Source: cfg.Source, Broadcasts: cfg.Broadcasts, Recorder: cfg.Recorder, Options: cfg.Options, Options6: cfg.Options6,
	})
	if err != nil {
		fc.Close()
		return nil, err
	}
	return fc, nil
}

// fakeClient is a probe.Client on the fake network, with the fake
// guard's report.
type fakeClient struct {
	*probe.Client
	block   portBlock
	guard   *fakeGuard
	escaped int64
}

func (c *fakeClient) base() *probe.Client { return c.Client }

func (c *fakeClient) Info() probe.ClientInfo {
	in := c.Client.Info()
	if c.guard != nil {
		in.GuardTable, in.GuardOwned = c.guard.Table(), c.guard.Owned()
		in.RSTsDropped, in.RSTsEscaped = 7, -1
		if c.escaped >= 0 {
			in.RSTsEscaped = c.escaped
		}
	}
	return in
}

// Close closes in probe.Client's order: sockets, guard, ports.
func (c *fakeClient) Close() error {
	if c.Client != nil {
		c.Client.Close()
	}
	if c.guard != nil {
		c.guard.Close()
	}
	return c.block.Close()
}

// portBlock is what the fake client holds: a rawsock.PortBlock's
// methods.
type portBlock interface {
	Len() int
	Ports() []uint16
	Lo() uint16
	Hi() uint16
	Ranges() []rawsock.PortRange
	Close() error
}

// fakeBlock holds ports in name only.
type fakeBlock struct {
	ports  []uint16
	closed *bool
}

func (b fakeBlock) Len() int        { return len(b.ports) }
func (b fakeBlock) Ports() []uint16 { return b.ports }
func (b fakeBlock) Lo() uint16      { return b.ports[0] }
func (b fakeBlock) Hi() uint16      { return b.ports[len(b.ports)-1] }
func (b fakeBlock) Ranges() []rawsock.PortRange {
	var rs []rawsock.PortRange
	for _, p := range b.ports {
		if n := len(rs); n > 0 && rs[n-1].Hi+1 == p {
			rs[n-1].Hi = p
		} else {
			rs = append(rs, rawsock.PortRange{Lo: p, Hi: p})
		}
	}
	return rs
}
func (b fakeBlock) Close() error { *b.closed = true; return nil }

// reservePorts gives the first free ports from req.Lo; f.held are taken.
func (f *fakeSystem) reservePorts(req rawsock.PortRequest) (portBlock, error) {
	f.portReq = req
	b := fakeBlock{closed: &f.portsClosed}
	for p := int(req.Lo); p <= int(req.Hi) && len(b.ports) < req.Max; p++ {
		if !f.held[uint16(p)] {
			b.ports = append(b.ports, uint16(p))
		}
	}
	if len(b.ports) < req.Min {
		return nil, fmt.Errorf("fake: only %d ports free: %w", len(b.ports), rawsock.ErrPortsInUse)
	}
	return b, nil
}

func (f *fakeSystem) reservePort(port uint16) (portBlock, error) {
	if f.held[port] {
		return nil, fmt.Errorf("fake: port %d: %w", port, rawsock.ErrPortsInUse)
	}
	return fakeBlock{ports: []uint16{port}, closed: &f.portsClosed}, nil
}

func (f *fakeSystem) directPath([]netip.Prefix, int) (rawsock.NextHop, error) {
	return rawsock.NextHop{}, errors.New("fake: no link layer")
}

func (f *fakeSystem) packetSender(rawsock.NextHop, bool) (packetSender, error) {
	return nil, errors.New("fake: no link layer")
}

func (f *fakeSystem) ring(rawsock.RingConfig) (receiver, error) {
	return nil, errors.New("fake: no ring")
}

func (f *fakeSystem) cleanup() ([]string, error) { return []string{"synprobe_99_deadbeef"}, nil }

// The prober's subnet is 198.18.0.0/24 on veth0.
func (f *fakeSystem) broadcasts() (map[netip.Addr]string, error) {
	f.bcastCalls++
	return map[netip.Addr]string{netip.MustParseAddr("198.18.0.255"): "veth0"}, nil
}

func (f *fakeSystem) lookup(ctx context.Context, network, host string) ([]netip.Addr, error) {
	if host == "lab.test" {
		var out []netip.Addr
		if network != "ip6" {
			out = append(out, netip.MustParseAddr("198.18.0.2"))
		}
		if network != "ip4" {
			out = append(out, netip.MustParseAddr("2001:db8::2"))
		}
		return out, nil
	}
	if host == "mcast.test" { // mDNS's groups
		var out []netip.Addr
		if network != "ip6" {
			out = append(out, netip.MustParseAddr("224.0.0.251"))
		}
		if network != "ip4" {
			out = append(out, netip.MustParseAddr("ff02::fb"))
		}
		return out, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (f *fakeSystem) source(dst netip.Addr, iface string) (netip.Addr, error) {
	if dst.Is4() {
		return netip.MustParseAddr("198.18.0.1"), nil
	}
	return netip.MustParseAddr("2001:db8::1"), nil
}

func (f *fakeSystem) policyRules(bool) (bool, error) { return false, nil }

func (f *fakeSystem) route(netip.Addr, netip.Addr, int) (rawsock.Route, error) {
	return rawsock.Route{}, errors.New("fake: no routes")
}

func (f *fakeSystem) portRange() (uint16, uint16, error) {
	if f.rangeErr != nil {
		return 0, 0, f.rangeErr
	}
	return 61000, 65535, nil
}

func (f *fakeSystem) listen(cfg rawsock.Config) (conn, error) {
	if f.listenErr != nil {
		return nil, f.listenErr
	}
	f.listenCfg = cfg
	f.conn = probetest.NewConn(func(p *wire.Packet, b []byte, id uint32) []probetest.Reply {
		if p.SrcPort < cfg.PortLo || p.SrcPort > cfg.PortHi {
			return nil
		}
		if p.Flags == wire.FlagAck && p.DstPort == 90 { // a listener whose accept queue is full: SYNs dropped, a bare ACK answered
			rst := probetest.Build(wire.Segment{Src: p.Dst, Dst: p.Src, TTL: 64, DF: true, SrcPort: p.DstPort, DstPort: p.SrcPort, Seq: p.Ack, Flags: wire.FlagRst})
			return []probetest.Reply{{Packet: rst, After: 20 * time.Microsecond}}
		}
		if p.Flags != wire.FlagSyn {
			return nil
		}
		if a := p.Dst.As16(); p.Dst.Is4() && a[14] == 1 && a[15] >= 8 {
			return nil // 198.18.1.8 and above: no host
		}
		if p.DstPort >= 200 && p.DstPort < 300 { // closed, the RST as far away as the SYN-ACKs
			rst := probetest.Build(wire.Segment{Src: p.Dst, Dst: p.Src, TTL: 61, DF: true, SrcPort: p.DstPort, DstPort: p.SrcPort, Ack: p.Seq + 1, Flags: wire.FlagRst | wire.FlagAck})
			return []probetest.Reply{{Packet: rst, After: 15 * time.Microsecond}}
		}
		if a := p.Dst.As16(); p.Dst.Is4() && a[14] == 9 { // 198.18.9.0/24: beyond a router at TTL 1
			return []probetest.Reply{{Packet: probetest.ICMPError(b, netip.MustParseAddr("198.18.0.254"), 11, 0), After: 30 * time.Microsecond}}
		}
		if p.Dst == netip.MustParseAddr("198.18.7.7") {
			return []probetest.Reply{{Packet: probetest.ICMPError(b, netip.MustParseAddr("198.18.7.1"), 3, 13), After: 90 * time.Microsecond}}
		}
		switch p.DstPort {
		case 80:
			return []probetest.Reply{{Packet: probetest.SYNACK(p, wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true, TSVal: 5}), After: 41237 * time.Nanosecond}}
		case 81:
			return []probetest.Reply{{Packet: probetest.RST(p), After: 12 * time.Microsecond}}
		}
		return nil
	})
	return sharingConn{f.conn}, nil
}

// sharingConn is the client's fake Conn, which a scan sends through
// beside the client's probes, as through a rawsock.Conn that can share
// its sends (Linux 6.13 and later).
type sharingConn struct{ *probetest.Conn }

func (sharingConn) ShareSends() bool { return true }

func runCLI(t *testing.T, sys network, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code = run(ctx, args, &out, &errb, sys)
	return code, out.String(), errb.String()
}

func TestBadInput(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string // in the one-line error
	}{
		{[]string{}, "no target given (try: synprobe host:port)"},
		{[]string{"scan"}, "no target given (try: synprobe scan host:1-1024)"},
		{[]string{"scan", "-w", "1"}, "no target given (try: synprobe scan"},
		{[]string{"host:"}, "missing port"},
		{[]string{":80"}, "missing host"},
		{[]string{"host"}, "missing port"},
		{[]string{"host:0"}, "out of range"},
		{[]string{"host:65536"}, "out of range"},
		{[]string{"host:http"}, "not a number"},
		{[]string{"host:-1"}, `port range has no start: "-1"`},
		{[]string{"[2001:db8::1:80"}, "unbalanced '['"},
		{[]string{"2001:db8::1]:80"}, "unbalanced ']'"},
		{[]string{"[2001:db8::1]80"}, "missing ':' after ']'"},
		{[]string{"[2001:db8::/64]:80"}, "larger than a /112"},
		{[]string{"198.18.0.0/33:80"}, "prefix"},
		{[]string{"host:90-80"}, "90-80"},
		{[]string{"host:80=maybe"}, "maybe"},
		{[]string{"scan", "--expect", "up", "lab.test:80"}, "--expect"},
		{[]string{"scan", "--rate", "-5", "lab.test:80"}, "--rate"},
		{[]string{"scan", "--retries", "-1", "lab.test:80"}, "--retries -1: must be 0 to 100"},
		{[]string{"scan", "--retries", "101", "lab.test:80"}, "--retries 101: must be 0 to 100"},
		{[]string{"scan", "-c", "1", "lab.test:80"}, "-c/--count is a ping flag, not a scan one: a scan probes each pair once"},
		{[]string{"scan", "-i", "1", "lab.test:80"}, "-i/--interval is a ping flag, not a scan one"},
		{[]string{"--open", "lab.test:80"}, "--open is a scan flag, not a ping one"},
		{[]string{"-c", "1", "--expect", "open", "lab.test:80"}, "--expect is a scan flag, not a ping one"},
		{[]string{"-c", "1", "lab.test:80=open"}, "expectations (TARGET=STATE) are checked by scans, not by ping: synprobe scan"},
		{[]string{"scan", "--mismatches", "lab.test:80"}, "--mismatches prints the pairs that differ from their expectation, and none is given"},
		{[]string{"--json", "scan", "lab.test:80"}, `"scan": the verb comes first, before any flag: synprobe scan [flags] ...`},
		{[]string{"scna", "lab.test:80"}, `(did you mean the verb scan? synprobe scan --help)`},
		{[]string{"listner", "lab.test:80"}, `(did you mean the verb listener? synprobe listener --help)`},
		{[]string{"-c", "1", "serve", "lab.test:80"}, `"serve": the verb comes first`},
		{[]string{"-f", "/nonexistent/targets"}, "no such file"},
		{[]string{"198.18.0.0/16:1-100"}, "6553500 address and port pairs is too many to ping (at most 4096): scan them: synprobe scan"},
		{[]string{"[lab.test]:80"}, "not an IPv6 address"},
		{[]string{"2001:db8::1:80"}, "need brackets"},
		{[]string{"nowhere.invalid:80"}, "cannot resolve"},
		{[]string{"-c", "-1", "lab.test:80"}, "--count -1: must be 0 to 2147483647"},
		{[]string{"-c", "99999999999999999999", "lab.test:80"}, "--count 99999999999999999999: must be 0 to 2147483647"},
		{[]string{"-i", "0", "lab.test:80"}, "--interval 0: must be positive"},
		{[]string{"--mode", "fin", "--close-timeout", "-1s", "lab.test:80"}, "--close-timeout -1s: must be positive"},
		{[]string{"-i", "0", "lab.test:80"}, "must be positive"},
		{[]string{"-i", "-1s", "lab.test:80"}, "must be positive"},
		{[]string{"-w", "0", "lab.test:80"}, "must be positive"},
		{[]string{"-w", "soon", "lab.test:80"}, "--timeout soon: not a duration (use e.g. 0.2, 200ms or 1s)"},
		{[]string{"-i", "NaN", "lab.test:80"}, "not a duration"},
		{[]string{"-4", "-6", "lab.test:80"}, "exclude each other"},
		{[]string{"-4", "[2001:db8::2]:80"}, "an IPv6 address, but -4 was given"},
		{[]string{"-6", "198.18.0.2:80"}, "an IPv4 address, but -6 was given"},
		{[]string{"scan", "--expect", "closed", "lab.test:1-1024=closed", "198.18.0.2:443=open", "lab.test:443=filtered"}, "expecting open and filtered"},
		{[]string{"scan", "--expect", "closed", "198.18.0.2:22", "198.18.0.2:22=open"}, "expecting closed and open"},
		{[]string{"scan", "64.0.0.0/2:1-5"}, "a scan holds at most 4294967296"},
		{[]string{"scan", "--mode", "fin", "--data", "x", "198.18.0.0/30:80"}, "--mode is a ping flag, not a scan one: a scan runs in rst mode; to complete or close connections with many pairs, ping them in rounds: synprobe --mode fin -c 1 TARGET..."},
		{[]string{"scan", "--mode", "ack", "198.18.0.2:22,80"}, "--mode is a ping flag, not a scan one"},
		{[]string{"scan", "--trace", "198.18.0.0/30:80"}, "--trace is a ping flag, not a scan one: a scan draws no ladders"},
		{[]string{"-I", "nosuchif0", "198.18.0.2:80"}, "-I nosuchif0: no such interface"},
		{[]string{"-I", "lo", "198.18.0.2:80"}, "-I lo is a loopback interface, which reaches only loopback addresses: a probe of 198.18.0.2 would never leave this host"},
		{[]string{"scan", "-I", "lo", "198.18.0.0/30:80"}, "-I lo is a loopback interface, which reaches only loopback addresses: a probe of 198.18.0.0/30 would never leave this host"},
		{[]string{"[fe80::1]:80"}, "link-local IPv6 addresses are not supported"},
		{[]string{"-f", "/"}, "is a directory"},
		{[]string{"--wscale", "15", "lab.test:80"}, "--wscale 15: must be 0-14, or -1 for none"},
		{[]string{"--ttl", "0", "lab.test:80"}, "--ttl 0: must be 1 to 255"},
		{[]string{"--ttl", "256", "lab.test:80"}, "--ttl 256: must be 1 to 255"},
		{[]string{"--ttl", "ten", "lab.test:80"}, "--ttl ten: not a number"},
		{[]string{"--tos", "0x1ff", "lab.test:80"}, "--tos 0x1ff: must be 0 to 255"},
		{[]string{"--sport", "70000", "lab.test:80"}, "--sport 70000: must be 1 to 65535"},
		{[]string{"--mode", "fin", "--sport", "40000", "-i", "0.5", "lab.test:80"}, "--sport 40000 with --mode fin: each probe holds the port for its connection (--hold 0 and the close) and a quiet second after it (a minute if the server declines timestamps), so -i 0.5 is too short: give -i above 1"},
		{[]string{"--mode", "fin", "--sport", "40000", "-c", "3", "lab.test:80"}, "so -i 1 is too short"},
		{[]string{"--mode", "fin", "--sport", "40000", "-c", "3", "-i", "1.1", "--hold", "0.5", "lab.test:80"}, "(--hold 0.5 and the close) and a quiet second after it (a minute if the server declines timestamps), so -i 1.1 is too short: give -i above 1.5"},
		{[]string{"--mode", "fin", "--sport", "40000", "-c", "1", "198.18.0.2:80,81"}, "--sport 40000 with --mode fin: the port carries one connection at a time, and 2 targets would share it"},
		{[]string{"--mss", "-1", "lab.test:80"}, "--mss -1: must be 0 to 65535"},
		{[]string{"--count", "x", "lab.test:80"}, "--count x: not a number"},
		{[]string{"scan", "--rate", "fast", "lab.test:80"}, "--rate fast: not a number"},
		{[]string{"scan", "--senders", "300", "lab.test:80"}, "--senders 300: must be 0 (one per CPU) to 256"},
		{[]string{"--mark", "0x1ffffffff", "lab.test:80"}, "--mark 0x1ffffffff: must be 1 to 0xffffffff"},
		{[]string{"--mode", "syn", "lab.test:80"}, `unknown mode "syn"`},
		{[]string{"--hold", "1s", "lab.test:80"}, "--hold needs --mode fin"},
		{[]string{"--mode", "ack", "--data", "x", "lab.test:80"}, "--data needs --mode fin"},
		{[]string{"--mode", "fin", "--data", "", "lab.test:80"}, "--data is empty"},
		{[]string{"--mode", "fin", "--data", `a\`, "lab.test:80"}, "trailing backslash"},
		{[]string{"--mode", "fin", "--data", `\x4`, "lab.test:80"}, "two hex digits"},
		{[]string{"--mode", "fin", "--data", `\xzz`, "lab.test:80"}, "not a hex byte"},
		{[]string{"--mode", "fin", "--data", `\q`, "lab.test:80"}, `unknown escape \q`},
		{[]string{"--mode", "fin", "--hold", "-1s", "lab.test:80"}, "must be positive"},
		{[]string{"--mode", "fin", "--close-timeout", "0", "lab.test:80"}, "must be positive"},
		{[]string{"--mode", "ack", "--mark", "0", "lab.test:80"}, "--mark 0: must be 1 to 0xffffffff: the RST guard tells our RSTs from the kernel's by it"},
		{[]string{"-S", "not-an-ip", "lab.test:80"}, "not an IP address"},
		{[]string{"-S", "2001:db8::1", "198.18.0.2:80"}, "different address families"},
		{[]string{"--bogus", "lab.test:80"}, "unknown flag"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, &fakeSystem{}, tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if !strings.HasPrefix(stderr, "synprobe: ") || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q, want one line with %q", stderr, tt.want)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"0.2": 200 * time.Millisecond, "1": time.Second, "200ms": 200 * time.Millisecond, "1.5s": 1500 * time.Millisecond, "1e-3": time.Millisecond} {
		if got, err := parseDuration(in); err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

func TestExitCodes(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"-c", "2", "-i", "0.001", "198.18.0.2:80"}, exitOK},
		{[]string{"-c", "1", "lab.test:80", "[2001:db8::2]:80"}, exitOK},
		{[]string{"-c", "1", "198.18.0.2:81"}, exitNotOpen},
		{[]string{"-c", "1", "-w", "0.02", "198.18.0.2:82"}, exitNotOpen},
		{[]string{"-c", "1", "198.18.7.7:80"}, exitNotOpen},
		{[]string{"-c", "1", "-w", "0.02", "198.18.0.2:80", "198.18.0.2:82"}, exitNotOpen},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, &fakeSystem{}, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout, stderr)
			}
		})
	}
}

func TestPrivilegeError(t *testing.T) {
	// What rawsock.Listen returns without CAP_NET_RAW.
	sys := &fakeSystem{listenErr: &net.OpError{Op: "socket", Net: "rawsock", Err: os.NewSyscallError("socket", syscall.EPERM)}}
	code, _, stderr := runCLI(t, sys, "-c", "1", "198.18.0.2:80")
	if code != exitFailure || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "sudo") || !strings.Contains(stderr, "setcap cap_net_raw,cap_net_admin+ep") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// TestJSON checks the JSON Lines schema: field names, types and values.
func TestJSON(t *testing.T) {
	code, stdout, _ := runCLI(t, &fakeSystem{}, "-c", "2", "-i", "0.001", "-w", "0.05", "--json", "lab.test:80", "198.18.0.2:81", "198.18.7.7:80", "198.18.0.2:99")
	if code != exitNotOpen {
		t.Errorf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 4*2+4 {
		t.Fatalf("%d lines:\n%s", len(lines), stdout)
	}
	byState := map[string]map[string]any{}
	summaries := map[string]map[string]any{}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("bad JSON %q: %v", l, err)
		}
		switch m["type"] {
		case "probe":
			byState[m["reason"].(string)] = m
		case "summary":
			summaries[m["target"].(string)] = m
		default:
			t.Fatalf("unknown type in %q", l)
		}
	}
	open := byState["syn-ack"]
	want := map[string]any{"target": "lab.test:80", "addr": "198.18.0.2", "port": 80.0, "state": "open", "rtt_us": 41.237,
		"clock": "kernel", "ttl": 61.0, "hops": 3.0, "ip_id": 4660.0, "df": true, "flags": "SA", "win": 65160.0,
		"mss": 1460.0, "wscale": 7.0, "sack": true, "ts": true, "tsval": 5.0, "ece": false, "from": "198.18.0.2", "src": "198.18.0.1"}
	for k, v := range want {
		if open[k] != v {
			t.Errorf("open probe %s = %v, want %v", k, open[k], v)
		}
	}
	if !strings.Contains(stdout, `"rtt_us":41.237,`) {
		t.Error("rtt_us not printed with three decimals")
	}
	if m := byState["rst"]; m["state"] != "closed" || m["rtt_us"] != 12.0 || m["flags"] != "RA" {
		t.Errorf("closed probe %v", m)
	}
	if m := byState["icmp-admin-prohibited"]; m["state"] != "filtered" || m["from"] != "198.18.7.1" || m["icmp_type"] != 3.0 || m["icmp_code"] != 13.0 || m["rtt_us"] != 90.0 {
		t.Errorf("icmp probe %v", m)
	}
	if m := byState["timeout"]; m["state"] != "filtered" || m["rtt_us"] != nil {
		t.Errorf("timeout probe %v", m)
	}
	s := summaries["lab.test:80"]
	for k, v := range map[string]any{"sent": 2.0, "open": 2.0, "closed": 0.0, "filtered": 0.0, "loss_pct": 0.0, "min_us": 41.237, "max_us": 41.237, "mdev_us": 0.0, "p99_us": 41.237} {
		if s[k] != v {
			t.Errorf("summary %s = %v, want %v", k, s[k], v)
		}
	}
	if s := summaries["198.18.0.2:99"]; s["loss_pct"] != 100.0 || s["min_us"] != nil {
		t.Errorf("silent summary %v", s)
	}
}

func TestTextOutput(t *testing.T) {
	code, stdout, _ := runCLI(t, &fakeSystem{}, "-c", "2", "-i", "0.001", "lab.test:80")
	if code != exitOK {
		t.Errorf("exit %d", code)
	}
	for _, want := range []string{
		"SYNPROBE lab.test (198.18.0.2) port 80 from 198.18.0.1",
		"open     198.18.0.2:80  seq=0",
		"rtt=0.041 ms  reason=syn-ack ttl=61 hops=3 id=4660 DF flags=SA win=65160 mss=1460 ws=7 sack ts=5 clock=kernel",
		"--- lab.test:80 synprobe statistics ---\n2 probes sent, 2 open, 0 closed, 0 filtered, 0% loss\n",
		"rtt min/avg/max/mdev = 0.041/0.041/0.041/0.000 ms  p50/p90/p99 = 0.041/0.041/0.041 ms  clock=kernel",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	_, quiet, _ := runCLI(t, &fakeSystem{}, "-q", "-c", "1", "lab.test:80")
	if strings.Contains(quiet, "SYNPROBE") || strings.Contains(quiet, "seq=") || !strings.Contains(quiet, "statistics") {
		t.Errorf("-q output:\n%s", quiet)
	}
}

// TestBroadcastsIPv4Only: the host's broadcast addresses are asked of the
// kernel for IPv4 targets only, once; IPv6 has no broadcast.
func TestBroadcastsIPv4Only(t *testing.T) {
	for _, tt := range []struct {
		args  []string
		calls int
	}{
		{[]string{"-c", "1", "[2001:db8::2]:80"}, 0},
		{[]string{"-6", "-c", "1", "lab.test:80"}, 0},
		{[]string{"scan", "[2001:db8::2]:80-81", "[2001:db8::/126]:22"}, 0},
		{[]string{"-c", "1", "198.18.0.2:80"}, 1},
		{[]string{"scan", "198.18.0.0/30:22", "198.18.0.2:80-81", "[2001:db8::2]:80"}, 1},
	} {
		sys := &fakeSystem{}
		if code, _, stderr := runCLI(t, sys, tt.args...); code == exitUsage || code == exitFailure {
			t.Fatalf("%v: exit %d: %s", tt.args, code, stderr)
		}
		if sys.bcastCalls != tt.calls {
			t.Errorf("%v: broadcasts asked %d times, want %d", tt.args, sys.bcastCalls, tt.calls)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	code, stdout, _ := runCLI(t, &fakeSystem{}, "--help")
	if code != 0 || !strings.Contains(stdout, "Examples:") || !strings.Contains(stdout, "--count") {
		t.Errorf("help: exit %d\n%s", code, stdout)
	}
	if code, stdout, _ := runCLI(t, &fakeSystem{}, "-V"); code != 0 || !strings.HasPrefix(stdout, "synprobe ") {
		t.Errorf("version: %d %q", code, stdout)
	}
}

// TestHelpText: the help fits 80 columns, says each default once, and
// prints the mark in hex as the docs do.
func TestHelpText(t *testing.T) {
	// Every verb's help fits, and names its own flags only.
	for _, v := range verbs {
		_, help, _ := runCLI(t, &fakeSystem{}, string(v), "--help")
		for i, line := range strings.Split(help, "\n") {
			if n := utf8.RuneCountInString(line); n > helpColumns {
				t.Errorf("%s: line %d is %d columns: %q", v, i+1, n, line)
			}
		}
		for name, only := range onlyFor {
			if shown := strings.Contains(help, "--"+name+" "); shown != (only.verb == v) {
				t.Errorf("%s --help shows --%s: %v", v, name, shown)
			}
		}
		if !strings.HasPrefix(help, "Usage: synprobe ") || !strings.Contains(help, "Examples:\n  sudo synprobe "+map[verb]string{verbPing: "", verbScan: "scan "}[v]) {
			t.Errorf("%s --help:\n%s", v, help)
		}
	}
	_, help, _ := runCLI(t, &fakeSystem{}, "--help")
	if _, ping, _ := runCLI(t, &fakeSystem{}, "ping", "--help"); ping != help {
		t.Errorf("synprobe --help and synprobe ping --help differ")
	}
	// One flag's text runs from its name to the next flag's.
	flags := regexp.MustCompile(`(?m)^  (?:-\w, |    )--`).Split(help[strings.Index(help, "Flags:"):strings.Index(help, "Exit status")], -1)
	if len(flags) < 30 {
		t.Fatalf("%d flags found in the help", len(flags))
	}
	for _, f := range flags {
		if n := strings.Count(f, "default"); n > 1 {
			t.Errorf("defaults said %d times: %q", n, f)
		}
	}
	flat := strings.Join(strings.Fields(help), " ")
	for _, want := range []string{"(default 0x53594e50)", `\0`, "(default 1s)", "(default 3s)", "(default: none)", "(default 64)"} {
		if !strings.Contains(flat, want) {
			t.Errorf("help lacks %q", want)
		}
	}
	if strings.Contains(help, "(default 0s)") || strings.Contains(help, "1398361680") {
		t.Errorf("help:\n%s", help)
	}
}

// TestVersionPlainBuild: a plain go build (no -ldflags) reports the
// revision it was built from.
func TestVersionPlainBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	if st, err := os.Stat(filepath.Join(strings.TrimSpace(string(top)), ".git")); err != nil || !st.IsDir() {
		t.Skip("a git worktree (.git is a file): go build stamps no VCS information there")
	}
	bin := filepath.Join(t.TempDir(), "synprobe")
	cmd := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if rev := strings.TrimSpace(string(head))[:12]; !strings.Contains(string(out), rev) {
		t.Errorf("--version says %q, want the revision %s", out, rev)
	}
}

func TestUnescape(t *testing.T) {
	got, err := unescape(`GET / HTTP/1.0\r\n\r\n\x41\t\\\0`)
	if err != nil || string(got) != "GET / HTTP/1.0\r\n\r\nA\t\\\x00" {
		t.Errorf("unescape = %q, %v", got, err)
	}
}

// TestGuardUse: rst mode makes no firewall rule; ack and fin modes guard
// exactly this run's ports with the mark their packets carry, and close
// the guard at the end.
func TestGuardUse(t *testing.T) {
	sys := &fakeSystem{}
	// What the command line asks of its client, mode by mode.
	if code, _, stderr := runCLI(t, sys, "-c", "1", "198.18.0.2:80"); code != exitOK || len(sys.guards) != 0 || sys.listenCfg.Mark != 0 {
		t.Errorf("rst mode: exit %d (%s), %d guards, mark %#x", code, stderr, len(sys.guards), sys.listenCfg.Mark)
	}
	if c := sys.clientCfg; !c.NoGuard || c.Guard || c.CountRSTs || c.Mark != 0 || !c.RotatePorts || c.Network != "ip4" {
		t.Errorf("rst mode: client %+v: want no guard, no mark, ports in turn, IPv4 alone", c)
	}
	sys = &fakeSystem{}
	code, stdout, stderr := runCLI(t, sys, "--mode", "ack", "-c", "1", "--mark", "0x1234", "198.18.0.2:80", "[2001:db8::2]:80")
	if code != exitOK || len(sys.guards) != 1 {
		t.Fatalf("ack mode: exit %d (%s), %d guards", code, stderr, len(sys.guards))
	}
	if c := sys.clientCfg; c.NoGuard || !c.Guard || !c.CountRSTs || c.Mark != 0x1234 || !c.RotatePorts || c.Network != "ip" {
		t.Errorf("ack mode: client %+v: want the guard made at once and counting, mark 0x1234, ports in turn, both families", c)
	}
	fin := &fakeSystem{}
	if code, _, stderr := runCLI(t, fin, "--mode", "fin", "-c", "1", "[2001:db8::2]:80"); code != exitOK || fin.clientCfg.RotatePorts || !fin.clientCfg.Guard || fin.clientCfg.Network != "ip6" {
		t.Errorf("fin mode: exit %d (%s), client %+v: want a port per connection, the guard, IPv6 alone", code, stderr, fin.clientCfg)
	}
	g := sys.guards[0]
	one := []rawsock.PortRange{{Lo: sys.listenCfg.PortLo, Hi: sys.listenCfg.PortHi}}
	if g.cfg.Mark != 0x1234 || sys.listenCfg.Mark != 0x1234 || !slices.Equal(g.cfg.Ranges, one) || !slices.Equal(sys.watchRanges, one) || !g.closed || !sys.portsClosed {
		t.Errorf("guard %+v closed=%v, sockets %+v, watch %v, ports closed %v", g.cfg, g.closed, sys.listenCfg, sys.watchRanges, sys.portsClosed)
	}
	if !strings.Contains(stdout, "RST guard: nftables table inet synprobe_1_00000000, owned") || !strings.Contains(stdout, "kept 7 kernel RSTs") {
		t.Errorf("no guard report:\n%s", stdout)
	}
	sys = &fakeSystem{escaped: 2}
	code, stdout, _ = runCLI(t, sys, "--mode", "ack", "-c", "1", "198.18.0.2:80")
	if code != exitOK || !strings.Contains(stdout, "WARNING: 2 kernel RSTs escaped the guard") {
		t.Errorf("escaped RSTs not reported: exit %d\n%s", code, stdout)
	}
	_, stdout, _ = runCLI(t, &fakeSystem{}, "--mode", "ack", "--json", "-c", "1", "198.18.0.2:80")
	if !strings.Contains(stdout, `{"type":"guard","table":"synprobe_1_00000000","owned":true,"kernel_rsts_dropped":7,"kernel_rsts_escaped":0}`) {
		t.Errorf("JSON guard line missing:\n%s", stdout)
	}
	sys = &fakeSystem{guardErr: &net.OpError{Op: "nftables", Net: "rawsock", Err: os.NewSyscallError("NFNL_MSG_BATCH_BEGIN", syscall.EPERM)}}
	code, _, stderr = runCLI(t, sys, "--mode", "fin", "-c", "1", "198.18.0.2:80")
	if code != exitFailure || !strings.Contains(stderr, "CAP_NET_ADMIN") || !strings.Contains(stderr, "setcap") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("guard without privileges: exit %d, %q", code, stderr)
	}
}

func TestCleanup(t *testing.T) {
	code, stdout, _ := runCLI(t, &fakeSystem{}, "--cleanup")
	if code != exitOK || stdout != "removed nftables table inet synprobe_99_deadbeef\n" {
		t.Errorf("--cleanup: exit %d, %q", code, stdout)
	}
}

// TestScanCLI: more than one pair is scanned: one result per pair,
// --open filters, --expect judges and sets the exit status.
func TestScanCLI(t *testing.T) {
	// Pairs without an expectation match trivially: exit 0. lab.test is
	// 198.18.0.2: its 80 is named once, by the narrower target.
	code, stdout, stderr := runCLI(t, &fakeSystem{}, "scan", "--json", "-w", "0.05", "--retries", "0", "198.18.0.2:79-81", "lab.test:80=open")
	if code != exitOK {
		t.Errorf("exit %d (%s)", code, stderr)
	}
	var results, summaries int
	states := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("bad JSON %q", l)
		}
		switch m["type"] {
		case "result":
			results++
			states[fmt.Sprintf("%v:%v", m["addr"], m["port"])] = m["state"].(string) + "/" + m["reason"].(string)
			if m["port"] == 80.0 && m["target"] == "lab.test:80=open" && m["expected"] != "open" {
				t.Errorf("result without its expectation: %v", m)
			}
		case "scan-summary":
			summaries++
			if m["pairs"] != 3.0 || m["open"] != 1.0 || m["closed"] != 1.0 || m["filtered"] != 1.0 || m["mismatches"] != 0.0 {
				t.Errorf("summary %v", m)
			}
		}
	}
	want := map[string]string{"198.18.0.2:79": "filtered/timeout", "198.18.0.2:80": "open/syn-ack", "198.18.0.2:81": "closed/rst"}
	for k, v := range want {
		if states[k] != v {
			t.Errorf("%s: %s, want %s", k, states[k], v)
		}
	}
	if results != 3 || summaries != 1 {
		t.Errorf("%d results, %d summaries:\n%s", results, summaries, stdout)
	}

	// --open prints open pairs only.
	_, stdout, _ = runCLI(t, &fakeSystem{}, "scan", "--open", "-w", "0.05", "--retries", "0", "198.18.0.2:79-81")
	if strings.Count(stdout, "open     ") != 1 || strings.Contains(stdout, "closed   ") || !strings.Contains(stdout, "--- scan of 3 pairs: 1 open, 1 closed, 1 filtered") {
		t.Errorf("--open output:\n%s", stdout)
	}

	// -q: the summary only.
	_, stdout, _ = runCLI(t, &fakeSystem{}, "scan", "-q", "-w", "0.05", "--retries", "0", "198.18.0.2:79-81")
	if strings.Contains(stdout, "open     ") || strings.Contains(stdout, "closed   ") || !strings.Contains(stdout, "--- scan of 3 pairs: 1 open, 1 closed, 1 filtered") {
		t.Errorf("-q output:\n%s", stdout)
	}

	// Expectations: all met -> 0; one missed -> 1, with the evidence.
	if code, out, _ := runCLI(t, &fakeSystem{}, "scan", "-w", "0.05", "--retries", "0", "198.18.0.2:80=open", "198.18.0.2:81=closed", "198.18.0.2:82=filtered"); code != exitOK || !strings.Contains(out, "every pair is as expected") {
		t.Errorf("expectations met: exit %d\n%s", code, out)
	}
	code, stdout, _ = runCLI(t, &fakeSystem{}, "scan", "-w", "0.05", "--retries", "0", "--expect", "closed", "198.18.0.2:80-81", "198.18.7.7:80")
	if code != exitNotOpen {
		t.Errorf("expectations missed: exit %d", code)
	}
	for _, want := range []string{
		"MISMATCH 198.18.0.2:80 (198.18.0.2:80-81): expected closed, got open: syn-ack from 198.18.0.2, ttl 61",
		"MISMATCH 198.18.7.7:80 (198.18.7.7:80): expected closed, got filtered: icmp-admin-prohibited from 198.18.7.1 (a router, not the target), ttl 64; likely a middlebox (icmp-from-other-address)",
		"2 pairs differ from what was expected",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
}

func TestTargetFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "targets")
	os.WriteFile(f, []byte("# lab\n198.18.0.2:80   # web\n\n[2001:db8::2]:80=open\n"), 0o644)
	code, stdout, stderr := runCLI(t, &fakeSystem{}, "scan", "-f", f, "-w", "0.05")
	if code != exitOK || !strings.Contains(stdout, "--- scan of 2 pairs: 2 open") {
		t.Errorf("exit %d (%s)\n%s", code, stderr, stdout)
	}
	os.WriteFile(f, []byte("198.18.0.2:80\nbad:port\n"), 0o644)
	// The error names the file, the line and the problem, and never
	// shows what the file holds.
	os.WriteFile(f, []byte("198.18.0.2:80\nroot:$6$secret:19000:0:99999:7:::\n"), 0o644)
	if code, _, stderr := runCLI(t, &fakeSystem{}, "scan", "-f", f); code != exitUsage || stderr != "synprobe: "+f+":2: IPv6 addresses need brackets, as in [2001:db8::1]:443\n" {
		t.Errorf("bad file: exit %d, %q", code, stderr)
	}
}

// TestTargetFileMemory: a target file that would take more than half of
// the memory available is refused as it is read, in one line naming the
// file and the line where it got too big, never what it holds.
func TestTargetFileMemory(t *testing.T) {
	defer func(f func() (uint64, bool)) { memAvailableFn = f }(memAvailableFn)
	memAvailableFn = func() (uint64, bool) { return 4 << 20, true } // room for 16384 targets
	f := filepath.Join(t.TempDir(), "targets")
	var b strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&b, "198.19.%d.%d:80\n", i/200, i%200+1)
	}
	os.WriteFile(f, []byte(b.String()), 0o644)
	code, stdout, stderr := runCLI(t, &fakeSystem{}, "scan", "-f", f)
	want := "synprobe: " + f + ":16385: 16385 targets would take about 2 MiB, more than half of the memory available (4 MiB): split the file, or name ranges (ADDR/PREFIX:PORTS)\n"
	if code != exitUsage || stdout != "" || stderr != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q", code, stdout, stderr, exitUsage, want)
	}
}

// lockedBuffer is a bytes.Buffer safe for the lineBuffer's flusher.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	n  int // writes
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A scan's output is gathered into few writes, yet shows up within the
// flush interval, and all of it by Close.
func TestLineBuffer(t *testing.T) {
	var out lockedBuffer
	b := newLineBuffer(&out, 20*time.Millisecond)
	for i := range 1000 {
		fmt.Fprintf(b, "line %d\n", i)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.HasSuffix(out.String(), "line 999\n") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.HasSuffix(out.String(), "line 999\n") {
		t.Fatalf("not flushed within 2 s of the interval: %d bytes out", len(out.String()))
	}
	if out.n > 2 {
		t.Errorf("%d writes for 1000 lines", out.n)
	}
	fmt.Fprint(b, "last\n")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out.String(), "line 999\nlast\n") {
		t.Errorf("Close did not flush: ...%q", out.String()[len(out.String())-20:])
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestPortBlockUse: the run's ports come from the reservation, whose holes
// (ports other sockets hold) the probes, the guard and the watch all
// leave alone; the block is released at the end.
func TestPortBlockUse(t *testing.T) {
	sys := &fakeSystem{held: map[uint16]bool{61001: true, 61003: true}}
	code, stdout, stderr := runCLI(t, sys, "--mode", "ack", "--json", "-c", "4", "-i", "0.01", "198.18.0.2:80")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if c := sys.clientCfg; c.Ports != 4 || c.MinPorts != 4 || c.SourcePort != 0 {
		t.Errorf("client %+v: want 4 ports (4 probes)", c)
	}
	if r := sys.portReq; r.Lo != 61000 || r.Hi != 65535 || r.Max != 4 || r.Min != 4 {
		t.Errorf("port request %+v: want 4 ports (4 probes) from 61000-65535", r)
	}
	want := []rawsock.PortRange{{Lo: 61000, Hi: 61000}, {Lo: 61002, Hi: 61002}, {Lo: 61004, Hi: 61005}}
	if !slices.Equal(sys.guards[0].cfg.Ranges, want) || !slices.Equal(sys.watchRanges, want) || !sys.portsClosed {
		t.Errorf("guard %v, watch %v, want %v; ports closed %v", sys.guards[0].cfg.Ranges, sys.watchRanges, want, sys.portsClosed)
	}
	var sports []uint16
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["type"] == "probe" {
			sports = append(sports, uint16(m["sport"].(float64)))
		}
	}
	if !slices.Equal(sports, []uint16{61000, 61002, 61004, 61005}) {
		t.Errorf("source ports %v", sports)
	}

	// Too few free ports, and --sport on a held port: exit 3, one line.
	for _, args := range [][]string{
		{"-c", "1", "--sport", "61001", "198.18.0.2:80"},
		{"-c", "1", "--sport", "61001", "198.18.0.0/30:80,81"},
	} {
		code, stdout, stderr = runCLI(t, sys, args...)
		if code != exitFailure || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "--sport 61001: another socket on this host holds the port") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
	// An ephemeral range that leaves too few ports outside it: the fix,
	// and --sport.
	_, _, rangeErr := rawsock.PortRangeOutside(1024, 65000)
	code, _, stderr = runCLI(t, &fakeSystem{rangeErr: rangeErr}, "-c", "1", "198.18.0.2:80")
	if code != exitFailure || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "narrow it") || !strings.Contains(stderr, "--sport") {
		t.Errorf("too few ports outside the ephemeral range: exit %d, %q", code, stderr)
	}
	sys = &fakeSystem{held: map[uint16]bool{}}
	for p := 61000; p < 65535; p++ {
		sys.held[uint16(p)] = true
	}
	code, _, stderr = runCLI(t, sys, "198.18.0.2:80")
	if code != exitFailure || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "source ports: fake: only 1 ports free") || !strings.Contains(stderr, "wait for them to end") {
		t.Errorf("no free ports: exit %d, %q", code, stderr)
	}
}

// TestPingPorts: rst and ack runs hold up to 512 ports, no more than they
// send probes; fin runs as many as their rate keeps taken for a close
// and its minute of TIME_WAIT, up to 2048.
func TestPingPorts(t *testing.T) {
	for _, tt := range []struct {
		args     []string
		targets  int
		min, max int
		needed   int
	}{
		{[]string{"h:1"}, 1, 64, 512, 0},
		{[]string{"-c", "3", "h:1"}, 1, 3, 3, 0},
		{[]string{"-c", "3", "h:1"}, 300, 64, 512, 0},
		{[]string{"--mode", "fin", "-c", "700", "-i", "0.1", "h:1"}, 1, 64, 640, 640},
		{[]string{"--mode", "fin", "-c", "100", "-i", "0.1", "h:1"}, 1, 64, 100, 100},
		{[]string{"--mode", "fin", "-i", "0.01", "h:1"}, 1, 64, 2048, 6400},
		{[]string{"--mode", "fin", "--hold", "10", "-c", "1", "h:1"}, 5, 5, 5, 5},
		{[]string{"--mode", "fin", "h:1"}, 2, 64, 128, 128},
	} {
		o, err := parseArgs(tt.args)
		if err != nil {
			t.Fatal(err)
		}
		pl := pingPorts(o, tt.targets)
		if pl.min != tt.min || pl.max != tt.max || pl.needed != tt.needed {
			t.Errorf("%v, %d targets: %+v, want min %d max %d needed %d", tt.args, tt.targets, pl, tt.min, tt.max, tt.needed)
		}
	}
	for _, tt := range []struct {
		pairs    uint64
		retries  string
		min, max int
	}{
		{1, "1", 2, 2},
		{100, "1", 64, 200},
		{100000, "1", 64, 512},
		{3, "100", 101, 303},
		{100000, "100", 101, 512},
	} {
		o, _ := parseArgs([]string{"scan", "--retries", tt.retries, "h:1"})
		if pl := scanPorts(o, tt.pairs); pl.min != tt.min || pl.max != tt.max {
			t.Errorf("scan of %d pairs, %s retries: %+v, want %d-%d", tt.pairs, tt.retries, pl, tt.min, tt.max)
		}
	}
}

// TestFINPortsReport: a fin run says how many ports it holds and why,
// and at the end how often it reused one in TIME_WAIT, in text and JSON.
func TestFINPortsReport(t *testing.T) {
	_, stdout, _ := runCLI(t, &fakeSystem{}, "--mode", "fin", "--close-timeout", "0.1", "-c", "2", "-i", "0.01", "198.18.0.2:80")
	if want := "source ports: 2 held (61000-61001): each is taken for a close and its minute of TIME_WAIT, and 100 probes/s need 2\n"; !strings.Contains(stdout, want) || strings.Contains(stdout, "reused") {
		t.Errorf("want %q and no end line (nothing reused) in:\n%s", want, stdout)
	}
	// 64 ports free of the 100 planned, whose connections stay open
	// (the fake never closes): the last 36 probes find no port.
	held := map[uint16]bool{}
	for p := 61064; p <= 65535; p++ {
		held[uint16(p)] = true
	}
	code, stdout, _ := runCLI(t, &fakeSystem{held: held}, "--mode", "fin", "-c", "100", "-i", "0.001", "--close-timeout", "1", "198.18.0.2:80")
	if want := "source ports: 64 held, 0 reused from TIME_WAIT (RFC 6191); 36 probes found every port busy (open, closed less than a second ago, or in TIME_WAIT without timestamps): probe less often\n"; code != exitFailure || !strings.Contains(stdout, want) {
		t.Errorf("exit %d, want 3 and %q in:\n%s", code, want, stdout)
	}
	_, stdout, _ = runCLI(t, &fakeSystem{}, "--mode", "fin", "--close-timeout", "0.1", "-c", "1", "198.18.0.2:80")
	if strings.Contains(stdout, "source ports") {
		t.Errorf("a one-round run reports its ports:\n%s", stdout)
	}
	_, stdout, _ = runCLI(t, &fakeSystem{}, "--mode", "fin", "--close-timeout", "0.1", "--json", "-c", "2", "-i", "0.01", "198.18.0.2:80")
	if !strings.Contains(stdout, `{"type":"ports","held":2,"ranges":"61000-61001","needed":2,"reused":0,"exhausted":0}`) {
		t.Errorf("no ports record:\n%s", stdout)
	}
	_, stdout, _ = runCLI(t, &fakeSystem{}, "--mode", "ack", "--json", "-c", "2", "-i", "0.01", "198.18.0.2:80")
	if strings.Contains(stdout, `"ports"`) {
		t.Errorf("a ports record in ack mode:\n%s", stdout)
	}
}

// TestUnusableTargets: the unspecified address, multicast and broadcast
// addresses are refused (exit 2, one line naming the target and what the
// address is), in ping mode and in scans, alone, in a block or behind a
// name; a block that only touches this host's subnet broadcast is probed
// without it, and says so.
func TestUnusableTargets(t *testing.T) {
	f := filepath.Join(t.TempDir(), "targets")
	os.WriteFile(f, []byte("198.18.0.2:80\n224.0.0.9:520\n"), 0o644)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"0.0.0.0:80"}, `target "0.0.0.0:80": 0.0.0.0 is the unspecified address`},
		{[]string{"[::]:80"}, `target "[::]:80": :: is the unspecified address`},
		{[]string{"[::ffff:0.0.0.0]:80"}, "0.0.0.0 is the unspecified address"},
		{[]string{"224.0.0.1:80"}, `target "224.0.0.1:80": 224.0.0.1 is a multicast address`},
		{[]string{"239.255.255.250:1900"}, "239.255.255.250 is a multicast address"},
		{[]string{"[ff02::1]:80"}, "ff02::1 is a multicast address"},
		{[]string{"[ff05::1:3]:547"}, "ff05::1:3 is a multicast address"},
		{[]string{"255.255.255.255:80"}, "255.255.255.255 is the limited broadcast address"},
		{[]string{"198.18.0.255:80"}, "198.18.0.255 is the broadcast address of a subnet on veth0"},
		{[]string{"198.18.0.255/32:80"}, "198.18.0.255 is the broadcast address of a subnet on veth0"},
		{[]string{"-c", "3", "224.0.0.1:80"}, "224.0.0.1 is a multicast address"},
		{[]string{"-c", "1", "198.18.0.2:80", "198.18.0.255:80"}, "198.18.0.255 is the broadcast address"},
		{[]string{"--mode", "fin", "255.255.255.255:80"}, "limited broadcast"},
		{[]string{"scan", "224.0.0.1:80=filtered"}, "224.0.0.1 is a multicast address"},
		{[]string{"scan", "--expect", "closed", "198.18.0.2:1-1024", "0.0.0.0:22"}, "0.0.0.0 is the unspecified address"},
		{[]string{"224.0.0.0/24:80"}, `target "224.0.0.0/24:80": the block holds 224.0.0.0, a multicast address`},
		{[]string{"239.0.0.0/8:80"}, "the block holds 239.0.0.0, a multicast address"},
		{[]string{"192.0.0.0/2:80"}, "the block holds 224.0.0.0, a multicast address"},
		{[]string{"0.0.0.0/8:80"}, "the block holds 0.0.0.0, the unspecified address"},
		{[]string{"0.0.0.0/0:80"}, "the block holds 0.0.0.0, the unspecified address"},
		{[]string{"255.255.255.0/24:80"}, "the block holds 255.255.255.255, the limited broadcast address"},
		{[]string{"[ff02::/120]:80"}, "the block holds ff02::, a multicast address"},
		{[]string{"[::/112]:80"}, "the block holds ::, the unspecified address"},
		{[]string{"mcast.test:5353"}, `mcast.test resolves to 224.0.0.251, a multicast address`},
		{[]string{"-6", "mcast.test:5353"}, "mcast.test resolves to ff02::fb, a multicast address"},
		// A file's line is named by number, never quoted.
		{[]string{"-f", f}, f + `:2: an address that is never a destination (a multicast address)`},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runCLI(t, &fakeSystem{}, tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if !strings.HasPrefix(stderr, "synprobe: ") || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q, want one line with %q", stderr, tt.want)
			}
		})
	}

	// A block that holds the prober's subnet broadcast: probed without it.
	// (The fake network answers port 80 on every address.)
	// A wait generous enough for a loaded machine under -race: 20 ms
	// once left 43 of the 255 answers unread.
	code, stdout, stderr := runCLI(t, &fakeSystem{}, "scan", "--json", "--rate", "0", "-w", "2", "--retries", "0", "198.18.0.0/24:80")
	if code != exitOK || stderr != "synprobe: leaving out 198.18.0.255, the broadcast address of a subnet on veth0\n" {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	results := 0
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("bad JSON %q", l)
		}
		switch m["type"] {
		case "result":
			results++
			if m["addr"] == "198.18.0.255" || m["target"] != "198.18.0.0/24:80" {
				t.Errorf("result %v", m)
			}
		case "scan-summary":
			if m["pairs"] != 255.0 || m["open"] != 255.0 {
				t.Errorf("summary %v", m)
			}
		}
	}
	if results != 255 {
		t.Errorf("%d results, want 255", results)
	}
	// A name that resolves to a multicast and a unicast address: the
	// unicast one is probed.
	if code, stdout, stderr := runCLI(t, &fakeSystem{}, "-c", "1", "lab.test:80"); code != exitOK || stderr != "" || !strings.Contains(stdout, "1 open") {
		t.Errorf("lab.test: exit %d, %q", code, stderr)
	}
}

// TestScanText: a scan's text output is grouped by host in address order,
// ports in order; more than a few plain refusals or silent ports of a host
// take one line each; hosts that never answered take one line.
func TestScanText(t *testing.T) {
	code, stdout, stderr := runCLI(t, &fakeSystem{}, "scan", "-w", "0.5", "--retries", "0", "198.18.1.6/31:79-80,100-102,200-240", "198.18.1.8/29:80", "lab.test:80,200-201", "198.18.7.7:80")
	if code != exitOK || stderr != "" {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	want := `198.18.0.2 (lab.test): 1 open, 2 closed, 0 filtered
open     198.18.0.2:80  rtt=0.041 ms  reason=syn-ack ttl=61 hops=3 flags=SA win=65160 mss=1460 ws=7 sack ts=5 clock=kernel
closed   198.18.0.2:200  rtt=0.015 ms  reason=rst ttl=61 hops=3 flags=RA win=0 clock=kernel
closed   198.18.0.2:201  rtt=0.015 ms  reason=rst ttl=61 hops=3 flags=RA win=0 clock=kernel
198.18.1.6: 1 open, 41 closed, 4 filtered
filtered 198.18.1.6:79  reason=timeout
open     198.18.1.6:80  rtt=0.041 ms  reason=syn-ack ttl=61 hops=3 flags=SA win=65160 mss=1460 ws=7 sack ts=5 clock=kernel
filtered 198.18.1.6:100  reason=timeout
filtered 198.18.1.6:101  reason=timeout
filtered 198.18.1.6:102  reason=timeout
closed   198.18.1.6:200-240  reason=rst (41 ports)
198.18.1.7: 1 open, 41 closed, 4 filtered
filtered 198.18.1.7:79  reason=timeout
open     198.18.1.7:80  rtt=0.041 ms  reason=syn-ack ttl=61 hops=3 flags=SA win=65160 mss=1460 ws=7 sack ts=5 clock=kernel
filtered 198.18.1.7:100  reason=timeout
filtered 198.18.1.7:101  reason=timeout
filtered 198.18.1.7:102  reason=timeout
closed   198.18.1.7:200-240  reason=rst (41 ports)
198.18.7.7: 0 open, 0 closed, 1 filtered
filtered 198.18.7.7:80  rtt=0.090 ms  reason=icmp-admin-prohibited from=198.18.7.1 ttl=64 hint=icmp-from-other-address clock=kernel
8 of 12 addresses never answered (every probe timed out): 198.18.1.8-198.18.1.15
--- scan of 104 pairs: 3 open, 84 closed, 17 filtered (icmp-admin-prohibited 1, rst 84, syn-ack 3, timeout 16) ---
`
	if !strings.HasPrefix(stdout, want) {
		t.Errorf("output:\n%s\nwant it to begin with:\n%s", stdout, want)
	}
}

// TestScanFilters: --open and --mismatches leave out what they filter, in
// text and JSON alike; -q leaves the summary alone, in both.
func TestScanFilters(t *testing.T) {
	targets := []string{"-w", "0.5", "--retries", "0", "198.18.0.2:79-81=closed", "198.18.1.8:80"}
	for _, tt := range []struct {
		args       []string
		want, lack []string
	}{
		{[]string{"--open"}, []string{"open     198.18.0.2:80  rtt=0.041 ms", "MISMATCH 198.18.0.2:80", "1 of 2 addresses never answered", "--- scan of 4 pairs"},
			[]string{"closed   ", "filtered 198.18.0.2:79", "MISMATCH 198.18.0.2:79"}},
		{[]string{"--mismatches"}, []string{"MISMATCH 198.18.0.2:79 (198.18.0.2:79-81=closed): expected closed, got filtered: no answer to 1 probe", "MISMATCH 198.18.0.2:80", "--- scan of 4 pairs"},
			[]string{"open     ", "closed   ", "never answered"}},
		{[]string{"-q"}, []string{"--- scan of 4 pairs", "2 pairs differ from what was expected"}, []string{"MISMATCH", "open     ", "198.18.0.2: "}},
		{[]string{"--json", "--open"}, []string{`"type":"result"`, `"type":"mismatch","target":"198.18.0.2:79-81=closed","addr":"198.18.0.2","port":80`, `"type":"scan-summary"`},
			[]string{`"state":"closed"`, `"port":79,"expected"`}},
		{[]string{"--json", "--mismatches"}, []string{`"type":"mismatch"`, `"type":"scan-summary"`}, []string{`"type":"result"`}},
		{[]string{"--json", "-q"}, []string{`"type":"scan-summary"`}, []string{`"type":"result"`, `"type":"mismatch"`}},
	} {
		code, stdout, stderr := runCLI(t, &fakeSystem{}, append(append([]string{"scan"}, tt.args...), targets...)...)
		if code != exitNotOpen || stderr != "" {
			t.Errorf("%v: exit %d, stderr %q", tt.args, code, stderr)
		}
		for _, w := range tt.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("%v: output lacks %q:\n%s", tt.args, w, stdout)
			}
		}
		for _, l := range tt.lack {
			if strings.Contains(stdout, l) {
				t.Errorf("%v: output has %q:\n%s", tt.args, l, stdout)
			}
		}
	}
}

// TestQuiet: -q is the summary only, in every verb and format: no header,
// no probe lines, no guard line (unless it warns), no source ports line.
func TestQuiet(t *testing.T) {
	for _, args := range [][]string{
		{"-q", "-c", "2", "-i", "0.01", "lab.test:80", "198.18.0.2:81"},
		{"-q", "--mode", "ack", "-c", "1", "198.18.0.2:80"},
		{"-q", "--mode", "fin", "--close-timeout", "0.05", "-c", "1", "198.18.0.2:80"},
	} {
		_, stdout, _ := runCLI(t, &fakeSystem{}, args...)
		for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
			if !strings.HasPrefix(l, "---") && !regexp.MustCompile(`^(\d+ probes? sent|rtt |close|peer bytes|--data|closes with)`).MatchString(l) {
				t.Errorf("%v: not a summary line: %q\n%s", args, l, stdout)
			}
		}
		_, stdout, _ = runCLI(t, &fakeSystem{}, append([]string{"--json"}, args...)...)
		for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
			if !strings.HasPrefix(l, `{"type":"summary"`) {
				t.Errorf("--json %v: not a summary: %q", args, l)
			}
		}
	}
	// A warning is no detail: escaped RSTs are said under -q too.
	_, stdout, _ := runCLI(t, &fakeSystem{escaped: 2}, "-q", "--mode", "ack", "-c", "1", "198.18.0.2:80")
	if !strings.Contains(stdout, "WARNING: 2 kernel RSTs escaped the guard") || strings.Contains(stdout, "RST guard:") {
		t.Errorf("-q with escaped RSTs:\n%s", stdout)
	}
}

// TestTTLExceeded: an ICMP time exceeded says so, names the router, and
// never meets an expectation of filtered: the SYN never reached the
// target.
func TestTTLExceeded(t *testing.T) {
	code, stdout, _ := runCLI(t, &fakeSystem{}, "-c", "1", "--ttl", "1", "198.18.9.9:80")
	if code != exitNotOpen || !strings.Contains(stdout, "filtered 198.18.9.9:80  seq=0 sport=") ||
		!strings.Contains(stdout, "reason=icmp-ttl-exceeded from=198.18.0.254 ttl=64 (ttl exceeded at 198.18.0.254: the SYN never reached 198.18.9.9) clock=kernel") {
		t.Errorf("ping: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = runCLI(t, &fakeSystem{}, "scan", "--ttl", "1", "-w", "0.5", "198.18.9.9:80=filtered", "198.18.9.9:81=closed", "198.18.0.2:82=filtered")
	for _, want := range []string{
		"filtered 198.18.9.9:80  rtt=0.030 ms  reason=icmp-ttl-exceeded from=198.18.0.254 ttl=64 (ttl exceeded at 198.18.0.254: the SYN never reached 198.18.9.9) clock=kernel MISMATCH(expected filtered)\n",
		"MISMATCH 198.18.9.9:80 (198.18.9.9:80=filtered): expected filtered, got no answer from the target: ttl exceeded at 198.18.0.254, ttl 64: the SYN (--ttl 1) never reached 198.18.9.9, whose port was not tested\n",
		"MISMATCH 198.18.9.9:81 (198.18.9.9:81=closed): expected closed, got no answer from the target: ttl exceeded at",
		"2 pairs differ from what was expected",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("scan output lacks %q:\n%s", want, stdout)
		}
	}
	if code != exitNotOpen || strings.Contains(stdout, "hint=") || strings.Contains(stdout, "MISMATCH 198.18.0.2:82") {
		t.Errorf("scan: exit %d\n%s", code, stdout)
	}
	_, stdout, _ = runCLI(t, &fakeSystem{}, "scan", "--json", "--ttl", "1", "-w", "0.5", "198.18.9.9:80=filtered")
	if !strings.Contains(stdout, `"type":"mismatch","target":"198.18.9.9:80=filtered","addr":"198.18.9.9","port":80,"expected":"filtered","got":"filtered","reason":"icmp-ttl-exceeded","from":"198.18.0.254","ttl":64,"evidence":"ttl exceeded at 198.18.0.254`) ||
		strings.Contains(stdout, `"hint"`) {
		t.Errorf("JSON:\n%s", stdout)
	}
}

// TestExplain: --explain sends one bare ACK, at the end, to each target
// whose SYNs got silence, and only to those: a RST to it (port 90 of the
// fake: SYNs dropped, a bare ACK answered) and silence (port 79) are told
// apart in the summaries, text and JSON; an open target gets no ACK.
func TestExplain(t *testing.T) {
	sys := &fakeSystem{}
	code, stdout, stderr := runCLI(t, sys, "-c", "2", "-i", "0.001", "-w", "0.05", "--explain", "--json", "198.18.0.2:90", "198.18.0.2:79", "198.18.0.2:80")
	if code != exitNotOpen {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		if m["type"] == "summary" {
			e, _ := m["explain"].(string)
			got[m["target"].(string)] = e
		}
	}
	if !strings.Contains(got["198.18.0.2:90"], "drew a RST") || !strings.Contains(got["198.18.0.2:79"], "no answer either") || got["198.18.0.2:80"] != "" {
		t.Errorf("explanations %q", got)
	}
	if !strings.Contains(stdout, `"explain_reply":"rst-to-ack"`) || !strings.Contains(stdout, `"explain_reply":"timeout"`) {
		t.Errorf("explain_reply missing:\n%s", stdout)
	}
	acks := 0
	for _, b := range sys.conn.Sent() {
		var p wire.Packet
		if wire.Parse(b, &p) == nil && p.Flags == wire.FlagAck {
			acks++
			if p.DstPort == 80 || p.Seq != p.Ack {
				t.Errorf("bare ACK to port %d seq %d ack %d", p.DstPort, p.Seq, p.Ack)
			}
		}
	}
	if acks != 2 {
		t.Errorf("%d bare ACKs sent, want 2 (one per silent target)", acks)
	}
	_, text, _ := runCLI(t, &fakeSystem{}, "-c", "1", "-w", "0.05", "--explain", "198.18.0.2:90")
	if !strings.Contains(text, "\nexplain: SYNs got silence while a bare ACK drew a RST") {
		t.Errorf("text summary:\n%s", text)
	}
}

// TestExplainInterrupted: ping is usually ended by Ctrl-C; --explain still
// sends its bare ACK then, and the summary says what came back.
func TestExplainInterrupted(t *testing.T) {
	sys := &fakeSystem{}
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	run(ctx, []string{"-i", "0.05", "-w", "0.05", "--explain", "198.18.0.2:90"}, &out, &errb, sys)
	if !strings.Contains(out.String(), "\nexplain: SYNs got silence while a bare ACK drew a RST") {
		t.Errorf("interrupted run, no explanation:\n%s%s", out.String(), errb.String())
	}
}

// TestUsableForClient: the client gets the run's list of broadcast
// addresses as it opens (one address dump per run, not two), and the
// kernel's own when it asks again; nothing when the run read none.
func TestUsableForClient(t *testing.T) {
	f := &fakeSystem{}
	u := &usable{sys: f}
	if u.forClient() != nil {
		t.Fatal("a client's Broadcasts before any list was read")
	}
	u.broadcasts()
	fc := u.forClient()
	for i, want := range []int{1, 2, 3} {
		m, err := fc()
		if err != nil || m[netip.MustParseAddr("198.18.0.255")] != "veth0" {
			t.Errorf("call %d: %v, %v", i, m, err)
		}
		if f.bcastCalls != want {
			t.Errorf("call %d: %d reads of the kernel's list, want %d", i, f.bcastCalls, want)
		}
	}
}

// TestPingOrder: a ping's summaries come in the order its targets were
// given, not by address and port (the Set's order).
func TestPingOrder(t *testing.T) {
	code, stdout, stderr := runCLI(t, &fakeSystem{}, "--json", "-c", "2", "-i", "0.01", "-w", "0.1", "198.18.0.2:81", "[2001:db8::2]:80", "198.18.0.2:80,22")
	if code != exitNotOpen || stderr != "" { // 81 is closed, 22 dropped
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var summaries []string
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		dst := netip.AddrPortFrom(netip.MustParseAddr(m["addr"].(string)), uint16(m["port"].(float64))).String()
		if m["type"] == "summary" {
			summaries = append(summaries, dst)
		}
	}
	want := []string{"198.18.0.2:81", "[2001:db8::2]:80", "198.18.0.2:22", "198.18.0.2:80"}
	if !slices.Equal(summaries, want) {
		t.Errorf("summaries %v; want them in the order given, %v", summaries, want)
	}
}
