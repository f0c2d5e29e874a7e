//go:build linux

package rstguard

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/internal/wiretest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

const (
	watchPortLo   = 61100
	watchPortHi   = 61107
	watchDstPort  = 8080
	otherMark     = testMark + 1    // a mark that is not ours, for control watches
	escapeTimeout = 2 * time.Second // longest wait for a RST to show
)

// rst is a RST from us (wiretest.V4A or wiretest.V6A) with source port sport.
func rst(src, dst netip.Addr, sport uint16, flags wire.TCPFlags) wire.Segment {
	return wire.Segment{Src: src, Dst: dst, TTL: 64, DF: true, SrcPort: sport, DstPort: 443,
		Seq: 0xc0ffee01, Ack: 0x01020305, Flags: flags}
}

func TestRSTFilterBodyIPv4(t *testing.T) {
	pkt := func(sport uint16, flags wire.TCPFlags) []byte {
		return wiretest.MustBuild(t, rst(wiretest.V4A, wiretest.V4B, sport, flags))
	}
	in := pkt(watchPortLo+3, wire.FlagRst)
	// A RST whose real source port is outside the range, with IP options
	// such that the bytes at offset 20 of a 20-byte header would be in
	// range: the filter must use the IHL.
	opt := wiretest.WithIPv4Options(pkt(80, wire.FlagRst), 4)
	opt[wire.IPv4MinimumSize], opt[wire.IPv4MinimumSize+1] = byte(watchPortLo>>8), byte(watchPortLo&0xff)
	opt[wire.IPv4MinimumSize+wire.TCPFlagsOffset] = byte(wire.FlagRst)
	wiretest.CheckFilter(t, rstFilterBody([]rawsock.PortRange{{Lo: watchPortLo, Hi: watchPortHi}}, false), []wiretest.FilterCase{
		{Name: "lo", Pkt: pkt(watchPortLo, wire.FlagRst), Accept: true},
		{Name: "hi", Pkt: pkt(watchPortHi, wire.FlagRst), Accept: true},
		{Name: "inside", Pkt: in, Accept: true},
		{Name: "RST-ACK", Pkt: pkt(watchPortLo, wire.FlagRst|wire.FlagAck), Accept: true},
		{Name: "every flag", Pkt: pkt(watchPortLo, 0xff), Accept: true},
		{Name: "below", Pkt: pkt(watchPortLo-1, wire.FlagRst), Accept: false},
		{Name: "above", Pkt: pkt(watchPortHi+1, wire.FlagRst), Accept: false},
		{Name: "port 0", Pkt: pkt(0, wire.FlagRst), Accept: false},
		{Name: "port 65535", Pkt: pkt(65535, wire.FlagRst), Accept: false},
		{Name: "SYN", Pkt: pkt(watchPortLo, wire.FlagSyn), Accept: false},
		{Name: "ACK", Pkt: pkt(watchPortLo, wire.FlagAck), Accept: false},
		{Name: "FIN-ACK", Pkt: pkt(watchPortLo, wire.FlagFin|wire.FlagAck), Accept: false},
		{Name: "every flag but RST", Pkt: pkt(watchPortLo, 0xff&^wire.FlagRst), Accept: false},
		{Name: "no flags", Pkt: pkt(watchPortLo, 0), Accept: false},
		{Name: "destination port in range only", Pkt: wiretest.MustBuild(t, wire.Segment{Src: wiretest.V4B, Dst: wiretest.V4A, TTL: 64, SrcPort: 443, DstPort: watchPortLo, Flags: wire.FlagRst}), Accept: false},
		{Name: "IHL 6", Pkt: wiretest.WithIPv4Options(in, 4), Accept: true},
		{Name: "IHL 15", Pkt: wiretest.WithIPv4Options(in, 40), Accept: true},
		{Name: "IHL 6, port beyond 20-byte header", Pkt: opt, Accept: false},
		{Name: "UDP", Pkt: wiretest.Edited(in, func(b []byte) { b[wire.IPv4ProtocolOffset] = 17 }), Accept: false},
		{Name: "ICMP", Pkt: wiretest.Edited(in, func(b []byte) { b[wire.IPv4ProtocolOffset] = 1 }), Accept: false},
		{Name: "first fragment", Pkt: wiretest.Edited(in, func(b []byte) { wire.IPv4(b).SetFlagsFragmentOffset(wire.IPv4FlagMoreFragments, 0) }), Accept: true},
		{Name: "non-first fragment", Pkt: wiretest.Edited(in, func(b []byte) { wire.IPv4(b).SetFlagsFragmentOffset(0, 8) }), Accept: false},
		{Name: "truncated before the flags", Pkt: in[:wire.IPv4MinimumSize+wire.TCPFlagsOffset], Accept: false},
		{Name: "IP header only", Pkt: in[:wire.IPv4MinimumSize], Accept: false},
		{Name: "empty", Pkt: nil, Accept: false},
	})
}

func TestRSTFilterBodyIPv6(t *testing.T) {
	pkt := func(sport uint16, flags wire.TCPFlags) []byte {
		return wiretest.MustBuild(t, rst(wiretest.V6A, wiretest.V6B, sport, flags))
	}
	in := pkt(watchPortLo+3, wire.FlagRst)
	wiretest.CheckFilter(t, rstFilterBody([]rawsock.PortRange{{Lo: watchPortLo, Hi: watchPortHi}}, true), []wiretest.FilterCase{
		{Name: "lo", Pkt: pkt(watchPortLo, wire.FlagRst), Accept: true},
		{Name: "hi", Pkt: pkt(watchPortHi, wire.FlagRst), Accept: true},
		{Name: "inside", Pkt: in, Accept: true},
		{Name: "RST-ACK", Pkt: pkt(watchPortLo, wire.FlagRst|wire.FlagAck), Accept: true},
		{Name: "below", Pkt: pkt(watchPortLo-1, wire.FlagRst), Accept: false},
		{Name: "above", Pkt: pkt(watchPortHi+1, wire.FlagRst), Accept: false},
		{Name: "port 0", Pkt: pkt(0, wire.FlagRst), Accept: false},
		{Name: "port 65535", Pkt: pkt(65535, wire.FlagRst), Accept: false},
		{Name: "SYN", Pkt: pkt(watchPortLo, wire.FlagSyn), Accept: false},
		{Name: "ACK", Pkt: pkt(watchPortLo, wire.FlagAck), Accept: false},
		{Name: "every flag but RST", Pkt: pkt(watchPortLo, 0xff&^wire.FlagRst), Accept: false},
		{Name: "destination port in range only", Pkt: wiretest.MustBuild(t, wire.Segment{Src: wiretest.V6B, Dst: wiretest.V6A, TTL: 64, SrcPort: 443, DstPort: watchPortLo, Flags: wire.FlagRst}), Accept: false},
		{Name: "hop-by-hop header", Pkt: wiretest.WithExtHeaders(in, wiretest.ExtHeader{Kind: 0, Body: make([]byte, 6)}), Accept: false},
		{Name: "fragment header", Pkt: wiretest.WithExtHeaders(in, wiretest.ExtHeader{Kind: wire.IPv6FragmentHeader, Body: make([]byte, 6)}), Accept: false},
		{Name: "UDP", Pkt: wiretest.Edited(in, func(b []byte) { b[wire.IPv6NextHeaderOffset] = 17 }), Accept: false},
		{Name: "truncated before the flags", Pkt: in[:wire.IPv6MinimumSize+wire.TCPFlagsOffset], Accept: false},
		{Name: "IP header only", Pkt: in[:wire.IPv6MinimumSize], Accept: false},
	})
}

// TestRSTWatchFilter runs the whole program, ancillary prefix and both
// bodies, with the packet type, mark and protocol the kernel would supply.
func TestRSTWatchFilter(t *testing.T) {
	prog := rstWatchFilter([]rawsock.PortRange{{Lo: watchPortLo, Hi: watchPortHi}}, testMark)
	if _, err := bpf.Assemble(prog); err != nil {
		t.Fatalf("Assemble: %v", err)
	}
	// The ancillary checks come first, in this order.
	for i, want := range map[int]bpf.Extension{0: bpf.ExtType, 2: bpf.ExtMark, 4: bpf.ExtProto} {
		if ext, ok := prog[i].(bpf.LoadExtension); !ok || ext.Num != want {
			t.Errorf("instruction %d is %v, want LoadExtension %d", i, prog[i], want)
		}
	}
	v4 := wiretest.MustBuild(t, rst(wiretest.V4A, wiretest.V4B, watchPortLo, wire.FlagRst))
	v6 := wiretest.MustBuild(t, rst(wiretest.V6A, wiretest.V6B, watchPortHi, wire.FlagRst|wire.FlagAck))
	v4out := wiretest.MustBuild(t, rst(wiretest.V4A, wiretest.V4B, watchPortHi+1, wire.FlagRst))
	v6out := wiretest.MustBuild(t, rst(wiretest.V6A, wiretest.V6B, watchPortLo-1, wire.FlagRst))
	v4syn := wiretest.MustBuild(t, rst(wiretest.V4A, wiretest.V4B, watchPortLo, wire.FlagSyn))
	v6syn := wiretest.MustBuild(t, rst(wiretest.V6A, wiretest.V6B, watchPortLo, wire.FlagSyn))
	const out = unix.PACKET_OUTGOING
	for _, tc := range []struct {
		name                 string
		pktType, mark, proto uint32
		pkt                  []byte
		accept               bool
	}{
		{"v4 kernel RST", out, 0, unix.ETH_P_IP, v4, true},
		{"v6 kernel RST", out, 0, unix.ETH_P_IPV6, v6, true},
		{"v4 RST with another mark", out, otherMark, unix.ETH_P_IP, v4, true},
		{"v4 our RST", out, testMark, unix.ETH_P_IP, v4, false},
		{"v6 our RST", out, testMark, unix.ETH_P_IPV6, v6, false},
		{"v4 incoming", unix.PACKET_HOST, 0, unix.ETH_P_IP, v4, false},
		{"v6 incoming", unix.PACKET_HOST, 0, unix.ETH_P_IPV6, v6, false},
		{"v4 to another host", unix.PACKET_OTHERHOST, 0, unix.ETH_P_IP, v4, false},
		{"v4 multicast", unix.PACKET_MULTICAST, 0, unix.ETH_P_IP, v4, false},
		{"v4 port outside", out, 0, unix.ETH_P_IP, v4out, false},
		{"v6 port outside", out, 0, unix.ETH_P_IPV6, v6out, false},
		{"v4 SYN", out, 0, unix.ETH_P_IP, v4syn, false},
		{"v6 SYN", out, 0, unix.ETH_P_IPV6, v6syn, false},
		{"ARP", out, 0, unix.ETH_P_ARP, v4, false},
		{"802.1Q", out, 0, unix.ETH_P_8021Q, v4, false},
	} {
		if got := wiretest.RunFilter(t, wiretest.WithAncillary(t, prog, tc.pktType, tc.mark, tc.proto), tc.pkt); got != tc.accept {
			t.Errorf("%s: accept = %v, want %v", tc.name, got, tc.accept)
		}
	}
}

func TestNewRSTWatchArgs(t *testing.T) {
	for _, a := range []struct {
		lo, hi uint16
		mark   uint32
	}{{0, 10, 1}, {10, 9, 1}, {10, 10, 0}} {
		if w, err := NewWatch(a.lo, a.hi, a.mark); err == nil {
			w.Close()
			t.Errorf("NewWatch(%d, %d, %#x) succeeded", a.lo, a.hi, a.mark)
		}
	}
}

// TestRSTWatchWithoutPrivileges: without CAP_NET_RAW the error says so,
// the way callers test for it.
func TestRSTWatchWithoutPrivileges(t *testing.T) {
	if hasCapability(unix.CAP_NET_RAW) {
		t.Skip("has CAP_NET_RAW; run without it to test the error (capsh --drop=cap_net_raw -- -c 'go test ./rawsock')")
	}
	w, err := NewWatch(watchPortLo, watchPortHi, testMark)
	if err == nil {
		w.Close()
		t.Fatal("NewWatch succeeded without CAP_NET_RAW")
	}
	if !errors.Is(err, os.ErrPermission) {
		t.Errorf("NewWatch: %v; want an error wrapping os.ErrPermission", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Net != "rawsock" {
		t.Errorf("NewWatch: %#v; want a *net.OpError", err)
	}
	t.Logf("NewWatch: %v", err)
}

// watchRig is a lab with a Conn in the prober namespace and a quiet
// listener at dst, for tests that provoke the kernel's RSTs.
type watchRig struct {
	lab      *netlab.Lab
	ns       string // where conn, watches and guards live
	conn     *rawsock.Conn
	src, dst netip.Addr
	isn      uint32
	id       uint32
	buf      [128]byte
}

// newWatchRig builds the rig for IPv4 or IPv6; with loopback, the
// listener is in the prober namespace too, and every packet goes through
// its lo device.
func newWatchRig(t *testing.T, v6, loopback bool) *watchRig {
	lab := netlab.New(t)
	r := &watchRig{lab: lab, ns: lab.Prober, src: lab.ProberV4, dst: lab.TargetV4, isn: rand.Uint32()}
	if v6 {
		r.src, r.dst = lab.ProberV6, lab.TargetV6
	}
	lns := lab.Target
	if loopback {
		r.src, r.dst, lns = netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.1"), lab.Prober
		if v6 {
			r.src, r.dst = netip.IPv6Loopback(), netip.IPv6Loopback()
		}
	}
	lab.Listen(t, lns, "tcp", netip.AddrPortFrom(r.dst, watchDstPort).String()) // never accepts: stays quiet
	err := lab.InNS(r.ns, func() (err error) {
		r.conn, err = rawsock.Listen(rawsock.Config{IPv4: true, IPv6: true, PortLo: watchPortLo, PortHi: watchPortHi, Mark: testMark})
		return err
	})
	if errors.Is(err, os.ErrPermission) {
		t.Skip(wiretest.NeedsNetRaw)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.conn.Close() })
	return r
}

// watch opens a Watch in the rig's namespace, closed at cleanup.
func (r *watchRig) watch(t *testing.T, lo, hi uint16, mark uint32) *Watch {
	t.Helper()
	var w *Watch
	err := r.lab.InNS(r.ns, func() (err error) {
		w, err = NewWatch(lo, hi, mark)
		return err
	})
	if errors.Is(err, os.ErrPermission) {
		t.Skip(wiretest.NeedsNetRaw)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if n := w.Escaped(); n != 0 {
		t.Fatalf("new watch %d-%d counts %d RSTs already", lo, hi, n)
	}
	return w
}

// send sends a segment with our mark from sport: a SYN with the rig's ISN,
// or a RST or anything else with ISN+1.
func (r *watchRig) send(t *testing.T, sport uint16, flags wire.TCPFlags) {
	t.Helper()
	seq := r.isn
	if flags != wire.FlagSyn {
		seq++
	}
	n, err := (&wire.Segment{Src: r.src, Dst: r.dst, TTL: 64, DF: true, SrcPort: sport, DstPort: watchDstPort,
		Seq: seq, Flags: flags, Window: 64240}).Build(r.buf[:])
	if err != nil {
		t.Fatal(err)
	}
	r.id++
	if err := r.conn.Send(r.buf[:n], r.id); err != nil {
		t.Fatal(err)
	}
}

// waitAtLeast polls count, bounded by escapeTimeout, until it reaches
// want, and returns its last value.
func waitAtLeast(count func() uint64, want uint64) uint64 {
	deadline := time.Now().Add(escapeTimeout)
	for {
		n := count()
		if n >= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func forFamilies(t *testing.T, loopback bool, test func(t *testing.T, r *watchRig)) {
	type family struct {
		name         string
		v6, loopback bool
	}
	fams := []family{{"ipv4", false, false}, {"ipv6", true, false}}
	if loopback {
		fams = append(fams, family{"ipv4/loopback", false, true}, family{"ipv6/loopback", true, true})
	}
	for _, f := range fams {
		t.Run(f.name, func(t *testing.T) { test(t, newWatchRig(t, f.v6, f.loopback)) })
	}
}

// TestIntegrationRSTWatchEscape: without a guard, the kernel's RST to the
// SYN-ACK is counted once (on loopback too, where the packet socket sees
// it leave and come back), and our own, marked, RST is not.
func TestIntegrationRSTWatchEscape(t *testing.T) {
	forFamilies(t, true, func(t *testing.T, r *watchRig) {
		w := r.watch(t, watchPortLo, watchPortHi, testMark)
		control := r.watch(t, watchPortLo, watchPortHi, otherMark) // counts our RSTs as well
		r.send(t, watchPortLo, wire.FlagSyn)
		if n := waitAtLeast(w.Escaped, 1); n != 1 {
			t.Fatalf("Escaped = %d within %v of the SYN, want 1", n, escapeTimeout)
		}
		r.send(t, watchPortLo, wire.FlagRst)
		if n := waitAtLeast(control.Escaped, 2); n != 2 {
			t.Errorf("control watch (another mark) counts %d, want 2: the kernel's RST and ours", n)
		}
		time.Sleep(wiretest.Settle)
		if n := w.Escaped(); n != 1 {
			t.Errorf("Escaped = %d after our own RST, want 1", n)
		}
		if n := control.Escaped(); n != 2 {
			t.Errorf("control watch counts %d at the end, want 2", n)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if n := w.Escaped(); n != 1 {
			t.Errorf("Escaped = %d after Close, want 1", n)
		}
	})
}

// TestIntegrationRSTWatchGuarded: with the guard, the kernel's RST never
// reaches the packet socket: nothing escapes, while the guard counts a
// drop and our own RST passes (as the control watch shows).
func TestIntegrationRSTWatchGuarded(t *testing.T) {
	forFamilies(t, false, func(t *testing.T, r *watchRig) {
		g := newGuardIn(t, r.lab, r.ns, Config{PortLo: watchPortLo, PortHi: watchPortHi, Mark: testMark})
		w := r.watch(t, watchPortLo, watchPortHi, testMark)
		control := r.watch(t, watchPortLo, watchPortHi, otherMark)
		r.send(t, watchPortLo, wire.FlagSyn)
		dropped := func() uint64 {
			n, err := g.Dropped()
			if err != nil {
				t.Errorf("Dropped: %v", err)
			}
			return n
		}
		if n := waitAtLeast(dropped, 1); n < 1 {
			t.Fatalf("the guard dropped nothing within %v of the SYN", escapeTimeout)
		}
		r.send(t, watchPortLo, wire.FlagRst) // ends the exchange: no retransmitted SYN-ACK
		if n := waitAtLeast(control.Escaped, 1); n != 1 {
			t.Errorf("control watch (another mark) counts %d, want 1: our RST", n)
		}
		time.Sleep(wiretest.Settle)
		if n := w.Escaped(); n != 0 {
			t.Errorf("Escaped = %d with the guard, want 0", n)
		}
		t.Logf("Dropped = %d, control = %d", dropped(), control.Escaped())
	})
}

// TestIntegrationRSTWatchOtherPorts: the kernel's RSTs from ports just
// outside the range are not counted; a watch over the wider range shows
// they were sent.
func TestIntegrationRSTWatchOtherPorts(t *testing.T) {
	forFamilies(t, false, func(t *testing.T, r *watchRig) {
		w := r.watch(t, watchPortLo, watchPortHi, testMark)
		wide := r.watch(t, watchPortLo-1, watchPortHi+1, testMark)
		r.send(t, watchPortHi+1, wire.FlagSyn)
		r.send(t, watchPortLo-1, wire.FlagSyn)
		if n := waitAtLeast(wide.Escaped, 2); n != 2 {
			t.Fatalf("wide watch %d-%d counts %d, want 2", watchPortLo-1, watchPortHi+1, n)
		}
		time.Sleep(wiretest.Settle)
		if n := w.Escaped(); n != 0 {
			t.Errorf("Escaped = %d for RSTs from ports %d and %d, want 0", n, watchPortHi+1, watchPortLo-1)
		}
	})
}

// TestIntegrationRSTWatchOverflow: RSTs that pass the filter while the
// socket's queue is full are counted too, from the socket's statistics.
// The watch counts our own RSTs here (its mark is not ours), sent in a
// burst at a queue shrunk to the minimum.
func TestIntegrationRSTWatchOverflow(t *testing.T) {
	const burst = 300
	r := newWatchRig(t, false, false)
	w := r.watch(t, watchPortLo, watchPortHi, otherMark)
	if err := unix.SetsockoptInt(w.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 0); err != nil { // rounded up to the minimum
		t.Fatal(err)
	}
	for range burst {
		r.send(t, watchPortLo, wire.FlagRst) // the target ignores them: no such connection
	}
	if n := waitAtLeast(w.Escaped, burst); n != burst {
		t.Errorf("Escaped = %d after a burst of %d, want %d", n, burst, burst)
	}
}

// TestIntegrationGuardHoles: a guard and a watch over a block with a hole
// (ports another socket holds) cover exactly the block's ranges: the
// kernel's RST from a port in the block is dropped and not counted, the
// one from the hole leaves, and only a watch over the whole span counts
// it.
func TestIntegrationGuardHoles(t *testing.T) {
	ranges := []rawsock.PortRange{{Lo: watchPortLo, Hi: watchPortLo + 1}, {Lo: watchPortLo + 4, Hi: watchPortHi}}
	const hole = watchPortLo + 2
	forFamilies(t, false, func(t *testing.T, r *watchRig) {
		g := newGuardIn(t, r.lab, r.ns, Config{Ranges: ranges, Mark: testMark})
		var w *Watch
		if err := r.lab.InNS(r.ns, func() (err error) {
			w, err = NewWatchPorts(ranges, testMark)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		span := r.watch(t, watchPortLo, watchPortHi, testMark)
		dropped := func() uint64 {
			n, err := g.Dropped()
			if err != nil {
				t.Errorf("Dropped: %v", err)
			}
			return n
		}
		r.send(t, watchPortLo+5, wire.FlagSyn) // in the second range: the second rule drops
		if n := waitAtLeast(dropped, 1); n < 1 {
			t.Fatalf("the guard dropped nothing within %v of the SYN", escapeTimeout)
		}
		r.send(t, hole, wire.FlagSyn)
		if n := waitAtLeast(span.Escaped, 1); n != 1 {
			t.Fatalf("the watch over the span counts %d RSTs, want 1: the hole's", n)
		}
		r.send(t, watchPortLo+5, wire.FlagRst)
		r.send(t, hole, wire.FlagRst)
		time.Sleep(wiretest.Settle)
		if n := w.Escaped(); n != 0 {
			t.Errorf("the block's watch counts %d RSTs, want 0: the hole is not ours", n)
		}
		if n := dropped(); n < 1 {
			t.Errorf("Dropped = %d", n)
		}
	})
}
