//go:build linux

package rawsock

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/rawsock/internal/wiretest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

const (
	ringPortLo   = 61200
	ringPortHi   = 61215
	ringOpenPort = 8081
	ringShutPort = 8082 // nobody listens: the target answers with a RST
)

func TestRingFilter(t *testing.T) {
	prog := ringFilter([]netip.Addr{wiretest.V4A, wiretest.V6A}, wiretest.FilterLo, wiretest.FilterHi, false)
	if _, err := bpf.Assemble(prog); err != nil {
		t.Fatalf("Assemble: %v", err)
	}
	v4 := wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V4B, wiretest.V4A, 40500))
	v6 := wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V6B, wiretest.V6A, 40500))
	v4icmp := wiretest.ICMP4Error(3, 1, wiretest.V4R, wiretest.V4A, wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V4A, wiretest.V4B, 40500))[:28])
	v6icmp := wiretest.ICMP6Error(1, 4, wiretest.V6R, wiretest.V6A, wiretest.MustBuild(t, wiretest.ProbeSYN(wiretest.V6A, wiretest.V6B, 40500)))
	const in = unix.PACKET_HOST
	for _, tc := range []struct {
		name           string
		pktType, proto uint32
		pkt            []byte
		accept         bool
	}{
		{"v4 SYN-ACK", in, unix.ETH_P_IP, v4, true},
		{"v6 SYN-ACK", in, unix.ETH_P_IPV6, v6, true},
		{"v4 ICMP error", in, unix.ETH_P_IP, v4icmp, true},
		{"v6 ICMPv6 error", in, unix.ETH_P_IPV6, v6icmp, true},
		{"v4 outgoing", unix.PACKET_OUTGOING, unix.ETH_P_IP, v4, false},
		{"v6 outgoing", unix.PACKET_OUTGOING, unix.ETH_P_IPV6, v6, false},
		{"v4 to another host", unix.PACKET_OTHERHOST, unix.ETH_P_IP, v4, false},
		{"v4 broadcast", unix.PACKET_BROADCAST, unix.ETH_P_IP, v4, false},
		{"v6 multicast", unix.PACKET_MULTICAST, unix.ETH_P_IPV6, v6, false},
		{"IPv6 packet labelled IPv4", in, unix.ETH_P_IP, v6, false},
		{"IPv4 packet labelled IPv6", in, unix.ETH_P_IPV6, v4, false},
		{"ARP", in, unix.ETH_P_ARP, v4, false},
	} {
		if got := wiretest.RunFilter(t, wiretest.WithAncillary(t, prog, tc.pktType, 0, tc.proto), tc.pkt); got != tc.accept {
			t.Errorf("%s: accept = %v, want %v", tc.name, got, tc.accept)
		}
	}
	// One family only: the other's packets are dropped.
	if wiretest.RunFilter(t, wiretest.WithAncillary(t, ringFilter([]netip.Addr{wiretest.V4A}, wiretest.FilterLo, wiretest.FilterHi, false), in, 0, unix.ETH_P_IPV6), v6) {
		t.Error("an IPv4-only ring accepts IPv6")
	}
}

// TestRingFilterOutgoing: with Outgoing, our probes leaving are taken (SYN
// alone, from one of our addresses and ports), and nothing else that
// leaves; what comes in is judged as without it.
func TestRingFilterOutgoing(t *testing.T) {
	extra := netip.MustParseAddr("192.0.2.99")
	addrs := []netip.Addr{wiretest.V4A, wiretest.V6A, extra}
	prog := ringFilter(addrs, wiretest.FilterLo, wiretest.FilterHi, true)
	if _, err := bpf.Assemble(prog); err != nil {
		t.Fatalf("Assemble: %v", err)
	}
	syn := func(src, dst netip.Addr, sport uint16, edit func(*wire.Segment)) []byte {
		s := wiretest.ProbeSYN(src, dst, sport)
		if edit != nil {
			edit(&s)
		}
		return wiretest.MustBuild(t, s)
	}
	withOpts := func(b []byte) []byte { // IPv4 options: the TCP header moves
		out := make([]byte, len(b)+4)
		copy(out, b[:wire.IPv4MinimumSize])
		out[0] = 0x46
		out[wire.IPv4MinimumSize] = 1 // NOPs
		out[wire.IPv4MinimumSize+1], out[wire.IPv4MinimumSize+2], out[wire.IPv4MinimumSize+3] = 1, 1, 1
		copy(out[wire.IPv4MinimumSize+4:], b[wire.IPv4MinimumSize:])
		return out
	}
	const out, in = unix.PACKET_OUTGOING, unix.PACKET_HOST
	for _, tc := range []struct {
		name           string
		pktType, proto uint32
		pkt            []byte
		accept         bool
	}{
		{"v4 probe leaving", out, unix.ETH_P_IP, syn(wiretest.V4A, wiretest.V4B, 40500, nil), true},
		{"v6 probe leaving", out, unix.ETH_P_IPV6, syn(wiretest.V6A, wiretest.V6B, 40500, nil), true},
		{"v4 probe from another of ours", out, unix.ETH_P_IP, syn(extra, wiretest.V4B, 40500, nil), true},
		{"v4 probe with IP options", out, unix.ETH_P_IP, withOpts(syn(wiretest.V4A, wiretest.V4B, 40500, nil)), true},
		{"lowest and highest port", out, unix.ETH_P_IP, syn(wiretest.V4A, wiretest.V4B, wiretest.FilterLo, nil), true},
		{"highest port", out, unix.ETH_P_IPV6, syn(wiretest.V6A, wiretest.V6B, wiretest.FilterHi, nil), true},
		{"v4 port below", out, unix.ETH_P_IP, syn(wiretest.V4A, wiretest.V4B, wiretest.FilterLo-1, nil), false},
		{"v6 port above", out, unix.ETH_P_IPV6, syn(wiretest.V6A, wiretest.V6B, wiretest.FilterHi+1, nil), false},
		{"v4 from another address", out, unix.ETH_P_IP, syn(wiretest.V4B, wiretest.V4A, 40500, nil), false},
		{"v6 from another address", out, unix.ETH_P_IPV6, syn(wiretest.V6B, wiretest.V6A, 40500, nil), false},
		{"our RST", out, unix.ETH_P_IP, syn(wiretest.V4A, wiretest.V4B, 40500, func(s *wire.Segment) { s.Flags = wire.FlagRst }), false},
		{"our ACK", out, unix.ETH_P_IPV6, syn(wiretest.V6A, wiretest.V6B, 40500, func(s *wire.Segment) { s.Flags = wire.FlagAck }), false},
		{"a SYN-ACK leaving", out, unix.ETH_P_IP, syn(wiretest.V4A, wiretest.V4B, 40500, func(s *wire.Segment) { s.Flags = wire.FlagSyn | wire.FlagAck }), false},
		{"SYN with ECN flags", out, unix.ETH_P_IP, syn(wiretest.V4A, wiretest.V4B, 40500, func(s *wire.Segment) { s.Flags = wire.FlagSyn | wire.FlagEce | wire.FlagCwr }), true},
		{"v4 non-first fragment", out, unix.ETH_P_IP, wiretest.Edited(syn(wiretest.V4A, wiretest.V4B, 40500, nil), func(b []byte) { b[7] = 1 }), false},
		{"v4 UDP", out, unix.ETH_P_IP, wiretest.Edited(syn(wiretest.V4A, wiretest.V4B, 40500, nil), func(b []byte) { b[9] = 17 }), false},
		{"v6 packet labelled IPv4", out, unix.ETH_P_IP, syn(wiretest.V6A, wiretest.V6B, 40500, nil), false},
		{"ARP", out, unix.ETH_P_ARP, syn(wiretest.V4A, wiretest.V4B, 40500, nil), false},
		{"a SYN coming in: TCP to our port, as before", in, unix.ETH_P_IP, syn(wiretest.V4B, wiretest.V4A, 443, func(s *wire.Segment) { s.DstPort = 40500 }), true},
		{"v4 SYN-ACK in", in, unix.ETH_P_IP, wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V4B, wiretest.V4A, 40500)), true},
		{"v6 SYN-ACK in", in, unix.ETH_P_IPV6, wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V6B, wiretest.V6A, 40500)), true},
		{"SYN-ACK to another host", unix.PACKET_OTHERHOST, unix.ETH_P_IP, wiretest.MustBuild(t, wiretest.SYNACK(wiretest.V4B, wiretest.V4A, 40500)), false},
	} {
		if got := wiretest.RunFilter(t, wiretest.WithAncillary(t, prog, tc.pktType, 0, tc.proto), tc.pkt); got != tc.accept {
			t.Errorf("%s: accept = %v, want %v", tc.name, got, tc.accept)
		}
	}
	// One family only: the other's probes are not taken.
	if wiretest.RunFilter(t, wiretest.WithAncillary(t, ringFilter([]netip.Addr{wiretest.V4A}, wiretest.FilterLo, wiretest.FilterHi, true), out, 0, unix.ETH_P_IPV6), syn(wiretest.V6A, wiretest.V6B, 40500, nil)) {
		t.Error("an IPv4-only ring takes IPv6 probes")
	}
	// As many addresses as the filter checks, and more: any source.
	var many []netip.Addr
	for i := range wire.MaxFilterAddrs + 1 {
		many = append(many, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}))
	}
	for _, n := range []int{wire.MaxFilterAddrs, wire.MaxFilterAddrs + 1} {
		p := ringFilter(append([]netip.Addr{wiretest.V4A}, many[:n]...), wiretest.FilterLo, wiretest.FilterHi, true)
		if !wiretest.RunFilter(t, wiretest.WithAncillary(t, p, out, 0, unix.ETH_P_IPV6), syn(many[n-1], wiretest.V6B, 40500, nil)) {
			t.Errorf("%d addresses: the last one's probe is not taken", n)
		}
		if got := wiretest.RunFilter(t, wiretest.WithAncillary(t, p, out, 0, unix.ETH_P_IPV6), syn(wiretest.V6B, wiretest.V6A, 40500, nil)); got != (n > wire.MaxFilterAddrs) {
			t.Errorf("%d addresses: another source's SYN taken = %v", n, got)
		}
	}
}

func TestListenRingArgs(t *testing.T) {
	ok := RingConfig{Src4: wiretest.V4A, PortLo: 1000, PortHi: 1001}
	for _, tc := range []struct {
		name string
		edit func(c *RingConfig)
		want string
	}{
		{"no ports", func(c *RingConfig) { c.PortLo, c.PortHi = 0, 0 }, "bad port range"},
		{"reversed ports", func(c *RingConfig) { c.PortLo, c.PortHi = 1001, 1000 }, "bad port range"},
		{"no address", func(c *RingConfig) { c.Src4 = netip.Addr{} }, "without an address"},
		{"IPv6 as Src4", func(c *RingConfig) { c.Src4 = wiretest.V6A }, "wrong family"},
		{"IPv4 as Src6", func(c *RingConfig) { c.Src6 = wiretest.V4B }, "wrong family"},
		{"block not a power of two", func(c *RingConfig) { c.BlockSize = 3 * os.Getpagesize() }, "bad ring size"},
		{"block below a page", func(c *RingConfig) { c.BlockSize = 1024 }, "bad ring size"},
		{"one block", func(c *RingConfig) { c.Blocks = 1 }, "bad ring size"},
	} {
		cfg := ok
		tc.edit(&cfg)
		if _, err := ListenRing(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// ringRig is a lab whose prober namespace has a Ring and a send-only Conn,
// and whose target listens on ringOpenPort.
type ringRig struct {
	lab      *netlab.Lab
	src, dst netip.Addr
	conn     *Conn
	ring     *Ring
	isn      uint32
	id       uint32
	buf      [128]byte
}

func newRingRig(t *testing.T, v6 bool, cfg RingConfig) *ringRig {
	t.Helper()
	lab := netlab.New(t)
	r := &ringRig{lab: lab, src: lab.ProberV4, dst: lab.TargetV4, isn: rand.Uint32()}
	if v6 {
		r.src, r.dst = lab.ProberV6, lab.TargetV6
	}
	lab.Listen(t, lab.Target, "tcp", netip.AddrPortFrom(r.dst, ringOpenPort).String())
	cfg.Src4, cfg.Src6 = lab.ProberV4, lab.ProberV6
	cfg.PortLo, cfg.PortHi = ringPortLo, ringPortHi
	err := lab.InNS(lab.Prober, func() (err error) {
		if r.conn, err = Listen(Config{IPv4: true, IPv6: true, PortLo: ringPortLo, PortHi: ringPortHi, SendOnly: true}); err != nil {
			return err
		}
		r.ring, err = ListenRing(cfg)
		return err
	})
	if r.conn != nil {
		t.Cleanup(func() { r.conn.Close() })
	}
	if errors.Is(err, os.ErrPermission) {
		t.Skip(wiretest.NeedsNetRaw)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.ring.Close() })
	return r
}

// syn sends a SYN from sport to dport with the rig's ISN plus sport.
func (r *ringRig) syn(t *testing.T, sport, dport uint16) {
	t.Helper()
	n, err := (&wire.Segment{Src: r.src, Dst: r.dst, TTL: 64, DF: true, SrcPort: sport, DstPort: dport,
		Seq: r.isn + uint32(sport), Flags: wire.FlagSyn, Window: 64240}).Build(r.buf[:])
	if err != nil {
		t.Fatal(err)
	}
	r.id++
	if err := r.conn.Send(r.buf[:n], r.id); err != nil {
		t.Fatal(err)
	}
}

type ringPacket struct {
	pkt wire.Packet
	rx  time.Time
}

// read reads until want packets have come or the deadline passes.
func (r *ringRig) read(t *testing.T, want int, deadline time.Time) []ringPacket {
	t.Helper()
	var got []ringPacket
	for len(got) < want {
		_, err := r.ring.Read(deadline, func(b []byte, rx time.Time) {
			var p ringPacket
			if err := wire.Parse(b, &p.pkt); err != nil {
				t.Errorf("the ring delivered a packet Parse rejects (%v): % x", err, b)
				return
			}
			p.rx = rx
			got = append(got, p)
		})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
	}
	return got
}

// TestIntegrationRing: the ring delivers the SYN-ACK and the RST that
// answer probes from our ports, with the kernel's receive times (checked
// against a capture's), and not the answer to a probe from another port,
// nor our own packets or the kernel's RST to the SYN-ACK.
func TestIntegrationRing(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) {
			r := newRingRig(t, v6, RingConfig{})
			capture := r.lab.StartCapture(t, r.lab.Prober, r.lab.ProberIf, "tcp")
			before := time.Now()
			r.syn(t, ringPortHi+1, ringShutPort) // its RST is not ours
			r.syn(t, ringPortLo, ringOpenPort)
			r.syn(t, ringPortHi, ringShutPort)
			got := r.read(t, 2, time.Now().Add(2*time.Second))
			after := time.Now()
			got = append(got, r.read(t, 1, time.Now().Add(wiretest.Settle))...)
			if len(got) != 2 {
				t.Fatalf("the ring delivered %d packets, want 2 (SYN-ACK, RST): %+v", len(got), got)
			}
			bySport := map[uint16]*ringPacket{}
			for i := range got {
				p := &got[i].pkt
				if p.Src != r.dst || p.Dst != r.src {
					t.Errorf("packet %v -> %v, want %v -> %v", p.Src, p.Dst, r.dst, r.src)
				}
				bySport[p.SrcPort] = &got[i]
			}
			sa, rst := bySport[ringOpenPort], bySport[ringShutPort]
			if sa == nil || sa.pkt.Flags != wire.FlagSyn|wire.FlagAck || sa.pkt.DstPort != ringPortLo || sa.pkt.Ack != r.isn+ringPortLo+1 {
				t.Errorf("SYN-ACK: %+v", sa)
			}
			if rst == nil || rst.pkt.Flags != wire.FlagRst|wire.FlagAck || rst.pkt.DstPort != ringPortHi || rst.pkt.Ack != r.isn+ringPortHi+1 {
				t.Errorf("RST: %+v", rst)
			}
			pkts, err := capture.Stop()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range got {
				if p.rx.Before(before) || p.rx.After(after) {
					t.Errorf("%v from port %d received at %v, outside [%v, %v]", p.pkt.Flags, p.pkt.SrcPort, p.rx, before, after)
				}
				var seen bool
				for _, c := range pkts {
					var cp wire.Packet
					if wire.Parse(c.Data, &cp) != nil || cp.Src != p.pkt.Src || cp.SrcPort != p.pkt.SrcPort || cp.DstPort != p.pkt.DstPort {
						continue
					}
					seen = true
					if d := p.rx.Sub(c.Time).Abs(); d > 200*time.Microsecond {
						t.Errorf("%v from port %d: ring time %v, capture %v: %v apart", p.pkt.Flags, p.pkt.SrcPort, p.rx, c.Time, d)
					}
				}
				if !seen {
					t.Errorf("%v from port %d is not in the capture", p.pkt.Flags, p.pkt.SrcPort)
				}
			}
			if n := r.ring.Dropped(); n != 0 {
				t.Errorf("Dropped = %d", n)
			}
		})
	}
}

// TestIntegrationRingWait: Read's deadline, Wake and Close.
func TestIntegrationRingWait(t *testing.T) {
	r := newRingRig(t, false, RingConfig{})
	noop := func([]byte, time.Time) {}
	if _, err := r.ring.Read(time.Unix(1, 0), noop); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read with a past deadline: %v", err)
	}
	start := time.Now()
	if _, err := r.ring.Read(start.Add(20*time.Millisecond), noop); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Read with a deadline: %v", err)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("Read returned after %v, before its deadline", d)
	}
	r.ring.Wake()
	if _, err := r.ring.Read(time.Time{}, noop); !errors.Is(err, ErrWoken) {
		t.Errorf("Read after Wake: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := r.ring.Read(time.Time{}, noop)
		done <- err
	}()
	time.Sleep(wiretest.Settle)
	if err := r.ring.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("blocked Read after Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not end a blocked Read")
	}
	if _, err := r.ring.Read(time.Time{}, noop); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close: %v", err)
	}
	if err := r.ring.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if p := r.ring.Pending(); p != 0 {
		t.Errorf("Pending after Close = %v", p)
	}
}

// TestIntegrationRingFull: a ring of two small blocks, not read while a
// burst of RSTs comes in, fills up (Pending 1), and counts what it had no
// room for: read and dropped add up to the burst.
func TestIntegrationRingFull(t *testing.T) {
	const burst = 300
	r := newRingRig(t, false, RingConfig{BlockSize: os.Getpagesize(), Blocks: 2})
	for i := range burst {
		r.syn(t, ringPortLo+uint16(i%16), ringShutPort)
	}
	deadline := time.Now().Add(2 * time.Second)
	for r.ring.Dropped() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if p := r.ring.Pending(); p != 1 {
		t.Errorf("Pending = %v with both blocks full, want 1", p)
	}
	if r.ring.ReadTo(r.ring.Mark()) {
		t.Error("ReadTo(Mark()) with both blocks unread")
	}
	got := r.read(t, burst, time.Now().Add(wiretest.Settle))
	dropped := r.ring.Dropped()
	if len(got) == 0 || dropped == 0 || uint64(len(got))+dropped != burst {
		t.Errorf("read %d, dropped %d: want both, adding up to %d", len(got), dropped, burst)
	}
	if p := r.ring.Pending(); p != 0 {
		t.Errorf("Pending = %v after reading all, want 0", p)
	}
	if !r.ring.ReadTo(r.ring.Mark()) {
		t.Error("not ReadTo(Mark()) after reading all")
	}
}

// TestIntegrationRingReadTo: a packet in a block the kernel has not
// handed over yet (Retire is long) is not read, and ReadTo says so; once
// it is read, a packet that came after the mark does not count.
func TestIntegrationRingReadTo(t *testing.T) {
	r := newRingRig(t, false, RingConfig{Retire: 500 * time.Millisecond})
	if m := r.ring.Mark(); m != 0 || !r.ring.ReadTo(m) {
		t.Fatalf("a new ring: Mark %d, ReadTo %v; want 0, true", m, r.ring.ReadTo(m))
	}
	r.syn(t, ringPortLo, ringShutPort)
	deadline := time.Now().Add(2 * time.Second)
	for r.ring.Mark() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	mark := r.ring.Mark()
	if mark != 1 || r.ring.ReadTo(mark) {
		t.Fatalf("after a RST came in: Mark %d, ReadTo %v; want 1, false", mark, r.ring.ReadTo(mark))
	}
	if got := r.read(t, 1, time.Now().Add(2*time.Second)); len(got) != 1 || got[0].pkt.Flags != wire.FlagRst|wire.FlagAck {
		t.Fatalf("read %+v, want the RST", got)
	}
	if !r.ring.ReadTo(mark) {
		t.Error("not ReadTo(mark) after reading the RST")
	}
	r.syn(t, ringPortLo, ringShutPort)
	for r.ring.Mark() == mark && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if later := r.ring.Mark(); later != mark+1 || !r.ring.ReadTo(mark) || r.ring.ReadTo(later) {
		t.Errorf("a second RST: Mark %d, ReadTo(first mark) %v, ReadTo(Mark) %v; want %d, true, false", later, r.ring.ReadTo(mark), r.ring.ReadTo(later), mark+1)
	}
}

// TestIntegrationRingOutgoing: with Outgoing, the ring delivers each probe
// as it leaves, at the time a capture on the interface gives it, before
// the answer to it; not our RSTs, nor a SYN from another port.
func TestIntegrationRingOutgoing(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) {
			r := newRingRig(t, v6, RingConfig{Outgoing: true})
			capture := r.lab.StartCapture(t, r.lab.Prober, r.lab.ProberIf, "tcp")
			r.syn(t, ringPortHi+1, ringShutPort) // not from our ports
			r.syn(t, ringPortLo, ringOpenPort)
			r.syn(t, ringPortHi, ringShutPort)
			got := r.read(t, 4, time.Now().Add(2*time.Second))
			got = append(got, r.read(t, 1, time.Now().Add(wiretest.Settle))...)
			pkts, err := capture.Stop()
			if err != nil {
				t.Fatal(err)
			}
			// Each probe, then its answer (the kernel RSTs the SYN-ACK
			// from our port: that RST is not delivered).
			var order []string
			for _, p := range got {
				order = append(order, fmt.Sprintf("%v %d>%d", p.pkt.Flags, p.pkt.SrcPort, p.pkt.DstPort))
			}
			wantProbes := map[uint16]bool{ringPortLo: true, ringPortHi: true}
			seen := map[uint16]bool{}
			for _, p := range got {
				switch {
				case p.pkt.Flags == wire.FlagSyn && p.pkt.Src == r.src:
					if !wantProbes[p.pkt.SrcPort] || seen[p.pkt.SrcPort] {
						t.Errorf("probe from port %d delivered (%v)", p.pkt.SrcPort, order)
					}
					seen[p.pkt.SrcPort] = true
					var in bool
					for _, c := range pkts {
						var cp wire.Packet
						if wire.Parse(c.Data, &cp) == nil && cp.Src == r.src && cp.Flags == wire.FlagSyn && cp.SrcPort == p.pkt.SrcPort {
							in = true
							if d := p.rx.Sub(c.Time).Abs(); d > 50*time.Microsecond {
								t.Errorf("probe from port %d: ring time %v, capture %v: %v apart", p.pkt.SrcPort, p.rx, c.Time, d)
							}
						}
					}
					if !in {
						t.Errorf("probe from port %d is not in the capture", p.pkt.SrcPort)
					}
				case p.pkt.Src == r.dst:
					if !seen[p.pkt.DstPort] {
						t.Errorf("the answer to port %d came before its probe: %v", p.pkt.DstPort, order)
					}
				default:
					t.Errorf("delivered %v", order)
				}
			}
			if len(got) != 4 || len(seen) != 2 {
				t.Errorf("delivered %v, want two probes and their answers", order)
			}
		})
	}
}
