package core_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe/internal/core"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/wire"
)

var (
	us4, them4 = netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	other4     = netip.MustParseAddr("198.18.0.3")
	router4    = netip.MustParseAddr("198.18.1.1")
	us6, them6 = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
)

const lo, hi = 40000, 40100

var cookie = wire.NewCookie([16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})

// syn is one of our SYNs: the connection and its keyed ISN (probe id 0).
func syn(local, remote netip.Addr, lport, rport uint16) (core.Tuple, uint32, []byte) {
	t := core.Tuple{Local: local, Remote: remote, LocalPort: lport, RemotePort: rport}
	isn := cookie.ISN(local, remote, lport, rport, 0)
	raw := probetest.Build(wire.Segment{Src: local, Dst: remote, TTL: 64, DF: true,
		SrcPort: lport, DstPort: rport, Seq: isn, Flags: wire.FlagSyn, Window: 64240})
	return t, isn, raw
}

// reply builds a TCP segment from remote to local.
func reply(t core.Tuple, flags wire.TCPFlags, ack uint32) []byte {
	return probetest.Build(wire.Segment{Src: t.Remote, Dst: t.Local, TTL: 61, DF: true,
		SrcPort: t.RemotePort, DstPort: t.LocalPort, Seq: 0x11223344, Ack: ack, Flags: flags, Window: 65160})
}

// resetAt is a host's answer to a bare ACK of ours that acknowledged
// seq: RST at that sequence number, no ACK.
func resetAt(t core.Tuple, seq uint32) []byte { return resetFlagsAt(t, wire.FlagRst, seq) }

func resetFlagsAt(t core.Tuple, flags wire.TCPFlags, seq uint32) []byte {
	return probetest.Build(wire.Segment{Src: t.Remote, Dst: t.Local, TTL: 61, DF: true,
		SrcPort: t.RemotePort, DstPort: t.LocalPort, Seq: seq, Flags: flags})
}

func parse(t *testing.T, b []byte) *wire.Packet {
	t.Helper()
	var p wire.Packet
	if err := wire.Parse(b, &p); err != nil {
		t.Fatalf("fixture does not parse: %v", err)
	}
	return &p
}

// ipLen is the IP header length of our packet b.
func ipLen(b []byte) int {
	if b[0]>>4 == 4 {
		return int(b[0]&0x0f) * 4
	}
	return 40
}

// shorten cuts n bytes off the end of the ICMP error b and fixes its
// outer length field and checksums.
func shorten(b []byte, n int) []byte {
	b = append([]byte(nil), b[:len(b)-n]...)
	if b[0]>>4 == 4 {
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		ip := wire.IPv4(b[:20])
		ip.SetChecksum(0)
		ip.SetChecksum(ip.CalculateChecksum())
		icmp := b[20:]
		icmp[2], icmp[3] = 0, 0
		binary.BigEndian.PutUint16(icmp[2:], ^wire.Checksum(icmp, 0))
		return b
	}
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	icmp := b[40:]
	icmp[2], icmp[3] = 0, 0
	src, dst := netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
	pseudo := wire.PseudoHeaderChecksum(wire.ProtocolICMPv6, src, dst, uint16(len(icmp)))
	binary.BigEndian.PutUint16(icmp[2:], ^wire.Checksum(icmp, pseudo))
	return b
}

// TestOf feeds the matcher genuine and hostile answers to one SYN of
// ours, for each family: only the genuine ones may be taken, each with
// the right kind.
func TestOf(t *testing.T) {
	for _, fam := range []struct {
		name                string
		us, them, other, rt netip.Addr
	}{
		{"v4", us4, them4, other4, router4},
		{"v6", us6, them6, netip.MustParseAddr("2001:db8::3"), netip.MustParseAddr("2001:db8:1::1")},
	} {
		tup, isn, raw := syn(fam.us, fam.them, 40007, 443)
		// Another connection of ours: same hosts, another source port.
		tup2, isn2, raw2 := syn(fam.us, fam.them, 40008, 443)
		// Ours from a port outside the range.
		_, _, rawOut := syn(fam.us, fam.them, 39999, 443)
		swapped := tup
		swapped.LocalPort, swapped.RemotePort = tup.RemotePort, tup.LocalPort
		other := tup
		other.Remote = fam.other
		icmpType := uint8(3)
		if fam.rt.Is6() {
			icmpType = 1
		}
		// A quote of 4 TCP bytes: the ports, no sequence number.
		full := probetest.ICMPError(raw, fam.rt, icmpType, 1)
		quote := len(full) - ipLen(full) - 8
		truncQuote := shorten(full, quote-(ipLen(raw)+4))
		for _, c := range []struct {
			name    string
			pkt     []byte
			kind    core.Kind // None: not taken
			keyed   bool      // passes the cookie check: an answer to a SYN of ours
			answers bool      // and to tup's
		}{
			{"syn-ack", reply(tup, wire.FlagSyn|wire.FlagAck, isn+1), core.SynAck, true, true},
			{"rst-ack", reply(tup, wire.FlagRst|wire.FlagAck, isn+1), core.RST, true, true},
			{"syn-rst-ack: the RST wins", reply(tup, wire.FlagSyn|wire.FlagRst|wire.FlagAck, isn+1), core.RST, true, true},
			{"icmp unreachable quoting our SYN", probetest.ICMPError(raw, fam.rt, icmpType, 1), core.ICMP, true, true},

			{"syn-ack acknowledging the ISN, not ISN+1", reply(tup, wire.FlagSyn|wire.FlagAck, isn), core.SynAck, false, false},
			{"syn-ack acknowledging ISN+2", reply(tup, wire.FlagSyn|wire.FlagAck, isn+2), core.SynAck, false, false},
			{"rst without ack, another sequence number: answers no SYN, nor a bare ACK of ours", reply(tup, wire.FlagRst, isn+1), core.ACKReset, false, false},
			{"rst without ack at the ISN: a bare ACK's answer", resetAt(tup, isn), core.ACKReset, true, true},
			{"rst-fin without ack at the ISN", resetFlagsAt(tup, wire.FlagRst|wire.FlagFin, isn), core.None, false, false},
			{"rst-syn without ack at the ISN", resetFlagsAt(tup, wire.FlagRst|wire.FlagSyn, isn), core.None, false, false},
			{"bare syn with ISN+1 in its ack field", reply(tup, wire.FlagSyn, isn+1), core.None, false, false},
			{"bare ack", reply(tup, wire.FlagAck, isn+1), core.None, false, false},
			{"fin-ack", reply(tup, wire.FlagFin|wire.FlagAck, isn+1), core.None, false, false},
			{"syn-ack to our port from the wrong remote port", reply(core.Tuple{Local: tup.Local, Remote: tup.Remote, LocalPort: tup.LocalPort, RemotePort: 444}, wire.FlagSyn|wire.FlagAck, isn+1), core.SynAck, false, false},
			{"syn-ack from another host with our ISN", reply(other, wire.FlagSyn|wire.FlagAck, isn+1), core.SynAck, false, false},
			{"syn-ack of another connection of ours", reply(tup2, wire.FlagSyn|wire.FlagAck, isn2+1), core.SynAck, true, false},
			{"syn-ack with the other connection's ISN on ours", reply(tup, wire.FlagSyn|wire.FlagAck, isn2+1), core.SynAck, false, false},
			{"syn-ack to a port outside the range", reply(swapped, wire.FlagSyn|wire.FlagAck, isn+1), core.None, false, false},
			{"icmp quoting another connection of ours", probetest.ICMPError(raw2, fam.rt, icmpType, 1), core.ICMP, true, false},
			{"icmp quoting a SYN from outside the range", probetest.ICMPError(rawOut, fam.rt, icmpType, 1), core.None, false, false},
			{"icmp whose quote stops before the sequence number", truncQuote, core.None, false, false},
		} {
			t.Run(fam.name+"/"+c.name, func(t *testing.T) {
				p := parse(t, c.pkt)
				a, ok := core.Of(p, lo, hi)
				if ok != (c.kind != core.None) || a.Kind != c.kind {
					t.Fatalf("Of = %v, %v; want kind %v", a.Kind, ok, c.kind)
				}
				if got := a.Keyed(&cookie, 0); got != c.keyed {
					t.Errorf("Keyed = %v, want %v (answer %+v)", got, c.keyed, a)
				}
				if got := a.Answers(tup, isn); got != c.answers {
					t.Errorf("Answers(our SYN) = %v, want %v", got, c.answers)
				}
				if c.keyed && !c.answers && (a.Tuple != tup2 || !a.Answers(tup2, isn2)) {
					t.Errorf("%+v: not taken for the connection it answers, %+v", a, tup2)
				}
				if a.Keyed(&cookie, 1) {
					t.Error("keyed for probe id 1 too")
				}
				isn := p.Ack - 1
				if c.kind == core.ACKReset {
					isn = p.Seq
				}
				if ok && c.kind != core.ICMP && (a.Local != p.Dst || a.LocalPort != p.DstPort || a.Remote != p.Src || a.ISN != isn) {
					t.Errorf("answer %+v does not name the segment's connection", a)
				}
			})
		}
	}
}

// FuzzOf: whatever Parse accepts, Of takes or leaves, never from a port
// outside the range.
func FuzzOf(f *testing.F) {
	tup, isn, raw := syn(us4, them4, 40007, 443)
	f.Add(reply(tup, wire.FlagSyn|wire.FlagAck, isn+1)) // a genuine SYN-ACK
	f.Add(probetest.ICMPError(raw, router4, 3, 13))     // a genuine ICMP error
	f.Fuzz(func(t *testing.T, b []byte) {
		var p wire.Packet
		if wire.Parse(b, &p) != nil {
			return
		}
		a, ok := core.Of(&p, lo, hi)
		if ok != (a.Kind != core.None) {
			t.Fatalf("Of = %+v, %v", a, ok)
		}
		if ok && (a.LocalPort < lo || a.LocalPort > hi) {
			t.Fatalf("taken from port %d", a.LocalPort)
		}
	})
}

func TestReset(t *testing.T) {
	tup, isn, _ := syn(us4, them4, 40007, 443)
	p := parse(t, probetest.Build(core.Reset(tup, isn, 64, 0x10)))
	if p.Flags != wire.FlagRst || p.Seq != isn+1 || p.Ack != 0 || p.Src != tup.Local || p.Dst != tup.Remote ||
		p.SrcPort != tup.LocalPort || p.DstPort != tup.RemotePort || p.TTL != 64 || p.TOS != 0x10 || !p.DF || p.Window != 0 {
		t.Errorf("reset %+v", p)
	}
}

func TestClock(t *testing.T) {
	c := core.NewClock(&cookie)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if d := c.TSval(t0.Add(1500*time.Millisecond)) - c.TSval(t0); d != 1500 {
		t.Errorf("1.5 s is %d ticks, want 1500 (milliseconds)", d)
	}
	other := wire.NewCookie([16]byte{1})
	if core.NewClock(&other).TSval(t0) == c.TSval(t0) {
		t.Error("two keys, one origin")
	}
}

func TestTSvalOffset(t *testing.T) {
	var b [wire.MaxOptionsSize]byte
	for _, c := range []struct {
		o    wire.SYNOptions
		want bool
	}{
		{wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true}, true},
		{wire.SYNOptions{MSS: 1460, WScale: -1}, false},
	} {
		n := c.o.Encode(b[:])
		off := core.TSvalOffset(b[:n])
		if (off >= 0) != c.want || off >= 0 && (b[off-2] != 8 || b[off-1] != 10) {
			t.Errorf("%+v: offset %d in % x", c.o, off, b[:n])
		}
	}
	for _, bad := range [][]byte{{8}, {8, 10, 0, 0}, {2, 0, 8, 10}, {2, 1}, {0, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if off := core.TSvalOffset(bad); off != -1 {
			t.Errorf("% x: offset %d", bad, off)
		}
	}
}

func TestFailures(t *testing.T) {
	var f core.Failures
	for _, c := range []struct {
		err  error
		want core.Outcome
	}{
		{nil, core.Packet},
		{fmt.Errorf("read: %w", os.ErrDeadlineExceeded), core.Idle},
		{rawsock.ErrWoken, core.Idle},
		{fmt.Errorf("x: %w", net.ErrClosed), core.Closed},
	} {
		if got := f.Judge(c.err); got != c.want {
			t.Errorf("Judge(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	bad := errors.New("EHOSTUNREACH, once")
	for i := range core.MaxFailures {
		if got := f.Judge(bad); got != core.Skip {
			t.Fatalf("failure %d: %v", i+1, got)
		}
	}
	if got := f.Judge(bad); got != core.Fatal {
		t.Fatalf("failure %d: %v, want Fatal", core.MaxFailures+1, got)
	}
	f.Judge(nil)
	if got := f.Judge(bad); got != core.Skip {
		t.Errorf("a packet did not reset the count: %v", got)
	}
}
