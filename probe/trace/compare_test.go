package trace

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"github.com/synprobe/synprobe/rawsock/wire"
)

var (
	src4 = netip.MustParseAddr("198.18.0.1")
	dst4 = netip.MustParseAddr("198.18.0.34")
	nat4 = netip.MustParseAddr("198.18.0.17")
	src6 = netip.MustParseAddr("2001:db8::1")
	dst6 = netip.MustParseAddr("2001:db8:3::2")
)

// syn builds the SYN synprobe sends: Linux's options, ECN asked.
func syn(tb testing.TB, src, dst netip.Addr) []byte {
	tb.Helper()
	o := wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true, TSVal: 0x01020304}
	opts := make([]byte, wire.MaxOptionsSize)
	n := o.Encode(opts)
	s := wire.Segment{Src: src, Dst: dst, TTL: 3, ID: 0xc0ff, DF: true, SrcPort: 61000, DstPort: 80,
		Seq: 0xc0ffee00, Flags: wire.FlagSyn | wire.FlagEce | wire.FlagCwr, Window: 64240, Options: opts[:n]}
	b := make([]byte, s.Len())
	if _, err := s.Build(b); err != nil {
		tb.Fatal(err)
	}
	return b
}

// quoted returns b as the router at the TTL's end quotes it, after edit
// changed it on the way: TTL or hop limit 1, checksums made right again
// (unless edit returns false, as a middlebox that forgets them).
func quoted(b []byte, edit func(ip, tcp []byte) bool) []byte {
	q := append([]byte(nil), b...)
	hl := wire.IPv6MinimumSize
	if q[0]>>4 == 4 {
		hl = wire.IPv4(q).HeaderLength()
		q[8] = 1
	} else {
		q[7] = 1
	}
	fix := true
	if edit != nil {
		fix = edit(q[:hl], q[hl:])
	}
	if q[0]>>4 == 4 {
		ip := wire.IPv4(q)
		ip.SetChecksum(0)
		ip.SetChecksum(ip.CalculateChecksum())
		q = q[:ip.TotalLength()]
	}
	if fix {
		var p struct{ src, dst netip.Addr }
		if q[0]>>4 == 4 {
			p.src, p.dst = wire.IPv4(q).SourceAddress(), wire.IPv4(q).DestinationAddress()
		} else {
			p.src, p.dst = wire.IPv6(q).SourceAddress(), wire.IPv6(q).DestinationAddress()
		}
		tcp := wire.TCP(q[hl:])
		tcp.SetChecksum(0)
		tcp.SetChecksum(^wire.Checksum(tcp, wire.PseudoHeaderChecksum(wire.ProtocolTCP, p.src, p.dst, uint16(len(tcp)))))
	}
	return q
}

// Offsets of the options in syn's TCP header: MSS at 20, SACK-permitted
// at 24, timestamps at 26 (TSval 28), NOP and window scale at 36.
const (
	optMSS  = 20
	optSACK = 24
	optTS   = 26
	optWS   = 37
)

func TestCompare(t *testing.T) {
	s4, s6 := syn(t, src4, dst4), syn(t, src6, dst6)
	// The TS option removed whole, as a middlebox that shrinks the header.
	noTS := func(b []byte) []byte {
		q := quoted(b, nil)
		hl := len(q) - 60 + 20
		if q[0]>>4 == 6 {
			hl = wire.IPv6MinimumSize
		}
		tcp := q[hl:]
		// MSS, NOP NOP SACK-perm? keep SACK: 04 02, then WS: 01 03 03 07.
		opts := []byte{2, 4, 0x05, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7}
		out := append(append(append([]byte(nil), q[:hl]...), tcp[:20]...), opts...)
		wire.TCP(out[hl:]).SetDataOffset(32)
		if out[0]>>4 == 4 {
			wire.IPv4(out).SetTotalLength(uint16(len(out)))
		} else {
			wire.IPv6(out).SetPayloadLength(uint16(len(out) - hl))
		}
		return quoted(out, nil)
	}
	for _, tc := range []struct {
		name  string
		sent  []byte
		quote []byte
		level Level
		want  []Change
	}{
		{"v4 unchanged", s4, quoted(s4, nil), LevelWhole, nil},
		{"v6 unchanged", s6, quoted(s6, nil), LevelWhole, nil},
		{"mss clamped", s4, quoted(s4, func(ip, tcp []byte) bool {
			binary.BigEndian.PutUint16(tcp[optMSS+2:], 1200)
			return true
		}), LevelWhole, []Change{{"mss", "1460", "1200"}}},
		{"mss clamped, checksum forgotten", s4, quoted(s4, func(ip, tcp []byte) bool {
			binary.BigEndian.PutUint16(tcp[optMSS+2:], 1200)
			return false
		}), LevelWhole, []Change{{"mss", "1460", "1200"}, {"tcp-checksum", "valid", "bad"}}},
		{"sack-perm and timestamps reset to NOPs", s4, quoted(s4, func(ip, tcp []byte) bool {
			for i := optSACK; i < optTS+10; i++ {
				tcp[i] = 1
			}
			return true
		}), LevelWhole, []Change{{"sack-perm", "yes", "nop"}, {"ts", "yes", "nop"}}},
		{"wscale changed, v6", s6, quoted(s6, func(ip, tcp []byte) bool {
			tcp[optWS+2] = 14
			return true
		}), LevelWhole, []Change{{"wscale", "7", "14"}}},
		{"timestamps removed", s4, noTS(s4), LevelWhole, []Change{{"ip-length", "60", "52"}, {"doff", "40", "32"}, {"ts", "yes", "absent"}}},
		{"timestamps removed, v6", s6, noTS(s6), LevelWhole, []Change{{"payload-length", "40", "32"}, {"doff", "40", "32"}, {"ts", "yes", "absent"}}},
		{"tsval changed", s4, quoted(s4, func(ip, tcp []byte) bool {
			binary.BigEndian.PutUint32(tcp[optTS+2:], 7)
			return true
		}), LevelWhole, []Change{{"tsval", "16909060", "7"}}},
		{"window, ECN flags, DSCP, ECN field", s4, quoted(s4, func(ip, tcp []byte) bool {
			wire.TCP(tcp).SetWindow(1024)
			wire.TCP(tcp).SetFlags(wire.FlagSyn)
			ip[1] = 0x20 | 2 // CS1, ECT(0)
			return true
		}), LevelWhole, []Change{{"dscp", "0", "8"}, {"ecn", "not-ect", "ect0"}, {"flags", "SEC", "S"}, {"window", "64240", "1024"}}},
		{"traffic class and flow label, v6", s6, quoted(s6, func(ip, tcp []byte) bool {
			wire.IPv6(ip).SetTrafficClass(0xb8)
			wire.IPv6(ip).SetFlowLabel(0x12345)
			return true
		}), LevelWhole, []Change{{"flow-label", "0", "74565"}, {"dscp", "0", "46"}}},
		{"source NATed, port too", s4, quoted(s4, func(ip, tcp []byte) bool {
			wire.IPv4(ip).SetSourceAddress(nat4)
			wire.TCP(tcp).SetSrcPort(1025)
			return true
		}), LevelWhole, []Change{{"src", "198.18.0.1", "198.18.0.17"}, {"sport", "61000", "1025"}}},
		{"ip id and DF", s4, quoted(s4, func(ip, tcp []byte) bool {
			wire.IPv4(ip).SetID(1)
			ip[6] = 0
			return true
		}), LevelWhole, []Change{{"ip-id", "49407", "1"}, {"df", "set", "clear"}}},
		{"bad IP header checksum", s4, func() []byte {
			q := quoted(s4, nil)
			q[10] ^= 0xff
			return q
		}(), LevelWhole, []Change{{"ip-checksum", "valid", "bad"}}},
		{"RFC 792 quote: 8 bytes, seq changed", s4, quoted(s4, func(ip, tcp []byte) bool {
			wire.TCP(tcp).SetSeq(1)
			return true
		})[:28], LevelPorts, []Change{{"seq", "3237998080", "1"}}},
		{"8 bytes, v6", s6, quoted(s6, nil)[:48], LevelPorts, nil},
		{"fixed header only", s4, quoted(s4, nil)[:40], LevelFixed, nil},
		{"options cut short", s4, quoted(s4, nil)[:50], LevelFixed, nil},
		{"RFC 4884 padding after the segment", s4, append(quoted(s4, nil), make([]byte, 68)...), LevelWhole, nil},
		{"option garbage: zero length", s4, quoted(s4, func(ip, tcp []byte) bool {
			tcp[optSACK], tcp[optSACK+1] = 30, 0
			return true
		}), LevelWhole, []Change{{"wscale", "7", "absent"}, {"sack-perm", "yes", "absent"}, {"ts", "yes", "absent"}}},
		{"EOL before window scale", s4, quoted(s4, func(ip, tcp []byte) bool {
			tcp[optWS-1] = 0 // EOL where the NOP was: Linux stops reading there
			return true
		}), LevelWhole, []Change{{"wscale", "7", "absent"}}},
		{"options reordered", s4, quoted(s4, func(ip, tcp []byte) bool {
			copy(tcp[optWS-1:], []byte{3, 3, 7, 1})
			return true
		}), LevelWhole, []Change{{"options", "020405b40402080a010203040000000001030307", "020405b40402080a010203040000000003030701"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Compare(tc.sent, tc.quote)
			if err != nil {
				t.Fatal(err)
			}
			if c.Level != tc.level || c.Len != len(tc.quote) || !reflect.DeepEqual(c.Changes, tc.want) {
				t.Errorf("Compare = level %d, %d bytes, %q\nwant level %d, %d bytes, %q", c.Level, c.Len, c.Changes, tc.level, len(tc.quote), tc.want)
			}
			if c.Partial() != (tc.level < LevelHeader) {
				t.Errorf("Partial = %v at level %d", c.Partial(), c.Level)
			}
		})
	}
}

func TestCompareRefuses(t *testing.T) {
	s4, s6 := syn(t, src4, dst4), syn(t, src6, dst6)
	udp := quoted(s4, nil)
	udp[9] = 17
	frag := quoted(s4, nil)
	frag[7] = 1
	for _, tc := range []struct {
		name        string
		sent, quote []byte
		want        error
	}{
		{"empty", s4, nil, ErrNotOurs},
		{"IPv6 quote of an IPv4 SYN", s4, quoted(s6, nil), ErrNotOurs},
		{"IPv4 quote of an IPv6 SYN", s6, quoted(s4, nil), ErrNotOurs},
		{"IP header alone", s4, quoted(s4, nil)[:20], ErrShortQuote},
		{"7 bytes of TCP", s4, quoted(s4, nil)[:27], ErrShortQuote},
		{"v6 header alone", s6, quoted(s6, nil)[:44], ErrShortQuote},
		{"IHL below 5", s4, append([]byte{0x44}, quoted(s4, nil)[1:]...), ErrNotOurs},
		{"IHL past the quote", s4, append([]byte{0x4f}, quoted(s4, nil)[1:30]...), ErrShortQuote},
		{"UDP", s4, udp, ErrNotOurs},
		{"a fragment", s4, frag, ErrNotOurs},
		{"sent is garbage", []byte{0x45, 0}, quoted(s4, nil), ErrSent},
	} {
		if _, err := Compare(tc.sent, tc.quote); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// FuzzCompare feeds hostile quotes of a fixed SYN: Compare must not
// panic, and what it says must hold together.
func FuzzCompare(f *testing.F) {
	s4, s6 := syn(f, src4, dst4), syn(f, src6, dst6)
	f.Add(false, quoted(s4, nil))                              // whole, unchanged
	f.Add(true, quoted(s6, nil))                               // whole, unchanged, v6
	f.Add(false, quoted(s4, nil)[:28])                         // RFC 792
	f.Add(true, quoted(s6, nil)[:48])                          // 8 bytes of TCP, v6
	f.Add(false, quoted(s6, nil))                              // wrong family
	f.Add(false, quoted(s4, nil)[:50])                         // options cut
	f.Add(false, append([]byte{0x4f}, quoted(s4, nil)[1:]...)) // IHL 60
	f.Add(false, quoted(s4, func(ip, tcp []byte) bool {        // data offset 15 over 40 bytes
		tcp[12] = 0xf0
		return true
	}))
	f.Add(false, quoted(s4, func(ip, tcp []byte) bool { // option lengths 0 and 255
		tcp[20], tcp[21], tcp[24], tcp[25] = 2, 0, 8, 255
		return true
	}))
	f.Add(true, quoted(s6, func(ip, tcp []byte) bool { // an extension header announced
		ip[6] = 0
		return true
	}))
	long := quoted(s4, nil) // total length beyond the quote
	wire.IPv4(long).SetTotalLength(1500)
	f.Add(false, long)
	f.Add(true, quoted(s6, func(ip, tcp []byte) bool { // payload length 0
		wire.IPv6(ip).SetPayloadLength(0)
		return true
	}))
	f.Add(false, append(quoted(s4, nil), make([]byte, 488)...)) // RFC 4884 padding to 548 bytes
	f.Fuzz(func(t *testing.T, v6 bool, quote []byte) {
		sent := s4
		if v6 {
			sent = s6
		}
		c, err := Compare(sent, quote)
		if err != nil {
			if !errors.Is(err, ErrNotOurs) && !errors.Is(err, ErrShortQuote) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if c.Len != len(quote) || c.Level < LevelPorts || c.Level > LevelWhole {
			t.Fatalf("%d bytes, level %d", c.Len, c.Level)
		}
		seen := map[string]bool{}
		for _, ch := range c.Changes {
			if ch.Field == "" || ch.Sent == ch.Seen || seen[ch.Field] || !c.Covers(ch.Field) {
				t.Fatalf("change %+v at level %d in %q", ch, c.Level, c.Changes)
			}
			seen[ch.Field] = true
		}
	})
}
