package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/synprobe/synprobe/rawsock/internal/wiretest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the generated seed files in testdata/fuzz/FuzzParse")

// parseSeed is a FuzzParse seed, with what it exercises and the result
// Parse must give.
type parseSeed struct {
	name string // also the file name in testdata/fuzz/FuzzParse
	what string
	pkt  []byte
	want error
}

// parseSeeds returns the FuzzParse seeds, built with the test helpers so
// they stay valid as the code changes. The ones marked file are also
// committed as corpus files.
func parseSeeds(tb testing.TB) (seeds []parseSeed, files map[string]bool) {
	syn4 := wiretest.MustBuild(tb, wiretest.ProbeSYN(wiretest.V4A, wiretest.V4B, 40000))
	syn6 := wiretest.MustBuild(tb, wiretest.ProbeSYN(wiretest.V6A, wiretest.V6B, 40000))
	synack4 := wiretest.MustBuild(tb, wiretest.SYNACK(wiretest.V4B, wiretest.V4A, 40000))
	synack6 := wiretest.MustBuild(tb, wiretest.SYNACK(wiretest.V6B, wiretest.V6A, 40000))
	rst4 := wiretest.MustBuild(tb, wire.Segment{Src: wiretest.V4B, Dst: wiretest.V4A, SrcPort: 443, DstPort: 40000, Ack: 1, Flags: wire.FlagRst | wire.FlagAck})
	seeds = []parseSeed{
		{"v4-synack", "IPv4 SYN-ACK with Linux options (MSS, SACK, TS, WS)", synack4, nil},
		{"v6-synack", "IPv6 SYN-ACK with Linux options", synack6, nil},
		{"v4-icmp-admin-prohibited", "ICMP dest unreachable code 13 quoting a SYN's IP header and 8 bytes of TCP", wiretest.ICMP4Error(3, 13, wiretest.V4R, wiretest.V4A, syn4[:28]), nil},
		{"v6-icmp6-dest-unreach", "ICMPv6 dest unreachable (port) quoting a whole SYN", wiretest.ICMP6Error(1, 4, wiretest.V6R, wiretest.V6A, syn6), nil},
		{"v4-truncated", "IPv4 SYN-ACK cut in the TCP options", synack4[:30], wire.ErrTruncated},
		{"v6-ext-headers", "IPv6 SYN-ACK after hop-by-hop, routing, destination options and atomic-fragment headers",
			wiretest.WithExtHeaders(synack6, wiretest.ExtHeader{Kind: 0, Body: make([]byte, 6)}, wiretest.ExtHeader{Kind: 43, Body: make([]byte, 14)}, wiretest.ExtHeader{Kind: 60, Body: make([]byte, 6)}, wiretest.ExtHeader{Kind: 44, Body: []byte{0, 0, 0, 0, 0, 9}}), nil},
		{"v4-rst", "IPv4 RST-ACK, no options", rst4, nil},
		{"v4-ip-options", "IPv4 SYN-ACK with 8 bytes of IP options (IHL 7)", wiretest.WithIPv4Options(synack4, 8), nil},
		{"v4-payload", "IPv4 segment with a payload and trailing link-layer padding",
			append(wiretest.MustBuild(tb, wire.Segment{Src: wiretest.V4B, Dst: wiretest.V4A, Flags: wire.FlagPsh | wire.FlagAck, Payload: []byte("hello")}), 0, 0, 0), nil},
		{"v4-icmp-ttl-exceeded-ip-options", "ICMP time exceeded quoting a SYN with IP options", wiretest.ICMP4Error(11, 0, wiretest.V4R, wiretest.V4A, wiretest.WithIPv4Options(syn4, 4)[:32]), nil},
		{"v4-icmp-ports-only", "ICMP quote with only the ports of the TCP header", wiretest.ICMP4Error(3, 3, wiretest.V4R, wiretest.V4A, syn4[:24]), nil},
		{"v6-icmp6-packet-too-big", "ICMPv6 packet too big quoting a SYN after a destination options header",
			wiretest.ICMP6Error(2, 0, wiretest.V6R, wiretest.V6A, wiretest.WithExtHeaders(syn6, wiretest.ExtHeader{Kind: 60, Body: make([]byte, 6)})), nil},
		{"v4-bad-ihl", "IPv4 header with IHL 4", wiretest.Edited(synack4, func(b []byte) { b[0] = 0x44 }), wire.ErrMalformed},
		{"v4-data-offset-15", "TCP data offset beyond the segment", wiretest.Edited(synack4, func(b []byte) { b[32] = 0xf0 }), wire.ErrMalformed},
		{"v4-fragment", "IPv4 non-first fragment", wiretest.Edited(synack4, func(b []byte) { wire.IPv4(b).SetFlagsFragmentOffset(0, 8) }), wire.ErrUnsupported},
		{"v6-ext-loop", "IPv6 with more destination options headers than Parse follows",
			wiretest.WithExtHeaders(synack6, wiretest.ExtHeader{Kind: 60, Body: make([]byte, 6)}, wiretest.ExtHeader{Kind: 60, Body: make([]byte, 6)}, wiretest.ExtHeader{Kind: 60, Body: make([]byte, 6)},
				wiretest.ExtHeader{Kind: 60, Body: make([]byte, 6)}, wiretest.ExtHeader{Kind: 60, Body: make([]byte, 6)}, wiretest.ExtHeader{Kind: 60, Body: make([]byte, 6)},
				wiretest.ExtHeader{Kind: 60, Body: make([]byte, 6)}, wiretest.ExtHeader{Kind: 60, Body: make([]byte, 6)}, wiretest.ExtHeader{Kind: 60, Body: make([]byte, 6)}), wire.ErrUnsupported},
		{"v6-ext-overrun", "IPv6 extension header length beyond the payload",
			wiretest.Edited(wiretest.WithExtHeaders(synack6, wiretest.ExtHeader{Kind: 0, Body: make([]byte, 6)}), func(b []byte) { b[41] = 9 }), wire.ErrMalformed},
		{"v4-icmp-echo", "ICMP echo request", wiretest.ICMP4Error(8, 0, wiretest.V4R, wiretest.V4A, []byte("ping")), wire.ErrUnsupported},
		{"v4-icmp-udp-quote", "ICMP port unreachable quoting UDP", wiretest.ICMP4Error(3, 3, wiretest.V4R, wiretest.V4A, wiretest.Edited(syn4[:28], func(b []byte) { b[9] = 17 })), wire.ErrUnsupported},
		{"v6-icmp6-quote-cut", "ICMPv6 error whose quote ends inside the IPv6 header", wiretest.ICMP6Error(3, 0, wiretest.V6R, wiretest.V6A, syn6[:30]), wire.ErrTruncated},
		{"v4-rst-bad-checksum", "IPv4 RST-ACK whose TCP checksum is off by one", badSum(rst4, wire.IPv4MinimumSize+wire.TCPChecksumOffset), wire.ErrChecksum},
		{"v6-synack-bad-checksum", "IPv6 SYN-ACK whose TCP checksum is off by one", badSum(synack6, wire.IPv6MinimumSize+wire.TCPChecksumOffset), wire.ErrChecksum},
		{"v4-rst-partial-checksum", "IPv4 RST-ACK whose TCP checksum field holds the pseudo-header sum alone, as a local sender leaves it (CHECKSUM_PARTIAL)", partialSum(rst4), nil},
		{"v6-synack-partial-checksum", "IPv6 SYN-ACK with a partial (pseudo-header) TCP checksum", partialSum(synack6), nil},
		{"v4-bad-ip-checksum", "IPv4 SYN-ACK whose IP header checksum is off by one", badSum(synack4, wire.IPv4ChecksumOffset), wire.ErrChecksum},
		{"v4-icmp-bad-checksum", "ICMP admin-prohibited whose ICMP checksum is off by one", badSum(wiretest.ICMP4Error(3, 13, wiretest.V4R, wiretest.V4A, syn4[:28]), wire.IPv4MinimumSize+wire.ICMPChecksumOffset), wire.ErrChecksum},
		{"v6-icmp6-bad-checksum", "ICMPv6 dest unreachable whose checksum is off by one", badSum(wiretest.ICMP6Error(1, 4, wiretest.V6R, wiretest.V6A, syn6), wire.IPv6MinimumSize+wire.ICMPChecksumOffset), wire.ErrChecksum},
		{"v4-first-fragment", "IPv4 SYN-ACK with MF set: a fragment, whose checksum cannot be verified",
			wiretest.Edited(synack4, func(b []byte) { wire.IPv4(b).SetFlagsFragmentOffset(wire.IPv4FlagMoreFragments, 0); fixIPv4Sum(b) }), wire.ErrUnsupported},
		{"v6-first-fragment", "IPv6 SYN-ACK after a fragment header with M set", wiretest.WithExtHeaders(synack6, wiretest.ExtHeader{Kind: 44, Body: []byte{0, 1, 0, 0, 0, 9}}), wire.ErrUnsupported},
		{"empty", "no bytes at all", []byte{}, wire.ErrTruncated},
		{"version-5", "unknown IP version", []byte{0x50, 0, 0, 0}, wire.ErrMalformed},
	}
	files = map[string]bool{
		"v4-synack": true, "v6-synack": true, "v4-icmp-admin-prohibited": true,
		"v6-icmp6-dest-unreach": true, "v4-truncated": true, "v6-ext-headers": true,
		"v4-rst-bad-checksum": true, "v6-synack-bad-checksum": true, "v4-rst-partial-checksum": true,
		"v4-bad-ip-checksum": true, "v4-icmp-bad-checksum": true, "v6-icmp6-bad-checksum": true,
	}
	return seeds, files
}

func FuzzParse(f *testing.F) {
	seeds, _ := parseSeeds(f)
	for _, s := range seeds {
		f.Add(s.pkt) // s.what
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkParse(t, b)
		// Most inputs fail a checksum; the same bytes with their
		// checksums made right reach everything behind the checks.
		if fixed := withChecksums(b); !bytes.Equal(fixed, b) {
			checkParse(t, fixed)
		}
	})
}

// checkParse checks what Parse says of b against what it must say.
func checkParse(t *testing.T, b []byte) {
	t.Helper()
	var p wire.Packet
	err := wire.Parse(b, &p)

	// Parse resets every field: a dirty Packet gives the same result.
	dirty := wire.Packet{Src: wiretest.V6R, Dst: wiretest.V6R, TTL: 1, TOS: 1, ID: 1, DF: true, Proto: 99, SrcPort: 1, DstPort: 1,
		Seq: 1, Ack: 1, Flags: 1, Window: 1, Options: wiretest.LinuxSYNOptions, PayloadLen: 1, ICMPType: 1, ICMPCode: 1,
		Quoted: wire.Quote{Src: wiretest.V6R, Dst: wiretest.V6R, SrcPort: 1, DstPort: 1, Seq: 1, HasSeq: true, ID: 1, Offset: 1, Length: 1}}
	if err2 := wire.Parse(b, &dirty); err2 != err || dirty != p {
		t.Fatalf("dirty Packet: %v %+v, fresh: %v %+v", err2, dirty, err, p)
	}
	// Checksums: what a stricter mode takes, a laxer one takes too.
	var q wire.Packet
	strict := wire.ParseChecksums(b, &q, wire.ChecksumsVerify)
	if strict == nil && err != nil {
		t.Fatalf("ChecksumsVerify takes what Parse refuses (%v)", err)
	}
	if lax := wire.ParseChecksums(b, &q, wire.ChecksumsNotReady); err == nil && lax != nil {
		t.Fatalf("ChecksumsNotReady refuses (%v) what Parse takes", lax)
	}
	if err != nil {
		if err != wire.ErrTruncated && err != wire.ErrMalformed && err != wire.ErrUnsupported && err != wire.ErrChecksum {
			t.Fatalf("unexpected error %v", err)
		}
		return
	}
	// Parse took it: every checksum verifies by the naive reference,
	// or the TCP one holds the pseudo-header sum alone.
	if !naiveChecksumsOK(b, p.Proto) {
		t.Fatalf("Parse took a packet whose checksums are wrong: % x", b)
	}

	v4 := b[0]>>4 == 4
	if v4 != p.Src.Is4() || v4 != p.Dst.Is4() || !v4 && (!p.Src.Is6() || !p.Dst.Is6()) {
		t.Fatalf("version %d, addresses %v %v", b[0]>>4, p.Src, p.Dst)
	}
	if !v4 && (p.ID != 0 || p.DF) {
		t.Fatalf("IPv6 with ID/DF: %+v", p)
	}
	switch p.Proto {
	case wire.ProtocolTCP:
		if p.IsICMP() || p.ICMPType != 0 || p.ICMPCode != 0 || p.Quoted != (wire.Quote{}) {
			t.Fatalf("TCP with ICMP fields: %+v", p)
		}
		if p.PayloadLen < 0 || p.PayloadLen > len(b)-wire.TCPMinimumSize-wire.IPv4MinimumSize {
			t.Fatalf("PayloadLen %d of %d bytes", p.PayloadLen, len(b))
		}
		// Rebuilding the segment from the parsed fields parses back to
		// the same fields, except for IPv6 packets with IPv4-mapped
		// addresses, which Build unmaps (seed crasher-v6-v4mapped-src).
		if p.Src.Is4In6() || p.Dst.Is4In6() {
			return
		}
		s := wire.Segment{Src: p.Src, Dst: p.Dst, TTL: p.TTL, TOS: p.TOS, ID: p.ID, DF: p.DF,
			SrcPort: p.SrcPort, DstPort: p.DstPort, Seq: p.Seq, Ack: p.Ack, Flags: p.Flags,
			Window: p.Window, Options: wiretest.EncodeOptions(p.Options), Payload: make([]byte, p.PayloadLen)}
		buf := make([]byte, s.Len())
		n, err := s.Build(buf)
		if err != nil {
			t.Fatalf("rebuild: %v", err)
		}
		var q wire.Packet
		if err := wire.Parse(buf[:n], &q); err != nil || q != p {
			t.Fatalf("rebuilt packet parses to %v %+v, want %+v", err, q, p)
		}
	case wire.ProtocolICMP, wire.ProtocolICMPv6:
		if !p.IsICMP() || v4 != (p.Proto == wire.ProtocolICMP) {
			t.Fatalf("proto %d in IPv%d", p.Proto, b[0]>>4)
		}
		if v4 && !wire.IsICMPv4Error(p.ICMPType) || !v4 && !wire.IsICMPv6Error(p.ICMPType) {
			t.Fatalf("ICMP type %d accepted", p.ICMPType)
		}
		q := p.Quoted
		if v4 != q.Src.Is4() || v4 != q.Dst.Is4() || !v4 && (!q.Src.Is6() || !q.Dst.Is6()) {
			t.Fatalf("quoted addresses %v %v", q.Src, q.Dst)
		}
		if q.Offset < wire.IPv4MinimumSize+wire.ICMPHeaderSize || q.Length < 0 || q.Offset+q.Length > len(b) || b[q.Offset]>>4 != b[0]>>4 {
			t.Fatalf("quote at %d, %d bytes, in %d", q.Offset, q.Length, len(b))
		}
		if !v4 && q.ID != 0 {
			t.Fatalf("IPv6 quote with an IPv4 ID: %+v", q)
		}
		if !q.HasSeq && q.Seq != 0 {
			t.Fatalf("Seq without HasSeq: %+v", q)
		}
		if p.SrcPort != 0 || p.DstPort != 0 || p.Seq != 0 || p.Ack != 0 || p.Flags != 0 ||
			p.Window != 0 || p.PayloadLen != 0 || p.Options != (wire.SYNOptions{WScale: -1}) {
			t.Fatalf("ICMP with TCP fields: %+v", p)
		}
	default:
		t.Fatalf("Parse accepted protocol %d", p.Proto)
	}
}

// TestParseSeeds checks the FuzzParse seeds and the committed corpus:
// each seed file parses as expected.
func TestParseSeeds(t *testing.T) {
	seeds, files := parseSeeds(t)
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	if *updateCorpus {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range seeds {
		var p wire.Packet
		if err := wire.Parse(s.pkt, &p); !errors.Is(err, s.want) || (err == nil) != (s.want == nil) {
			t.Errorf("seed %s (%s): Parse = %v, want %v", s.name, s.what, err, s.want)
		}
		if !files[s.name] {
			continue
		}
		path := filepath.Join(dir, s.name)
		if *updateCorpus {
			data := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(s.pkt)))
			if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := readCorpusFile(path)
		if err != nil {
			t.Errorf("seed %s: %v (run go test -run TestParseSeeds -update-corpus)", s.name, err)
			continue
		}
		if !bytes.Equal(got, s.pkt) {
			t.Errorf("seed %s: %s is stale (run go test -run TestParseSeeds -update-corpus)", s.name, path)
		}
	}
}

// readCorpusFile reads a one-value []byte "go test fuzz v1" file.
func readCorpusFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" ||
		!strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
		return nil, fmt.Errorf("%s: not a one-value []byte corpus file", path)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return []byte(s), nil
}

// badSum returns a copy of pkt with the 16-bit checksum at off one off.
func badSum(pkt []byte, off int) []byte {
	b := append([]byte{}, pkt...)
	binary.BigEndian.PutUint16(b[off:], binary.BigEndian.Uint16(b[off:])+1)
	return b
}

// partialSum returns a copy of the TCP packet pkt whose checksum field
// holds the pseudo-header sum alone: what the kernel leaves for the device
// to complete (CHECKSUM_PARTIAL), and what a receiver on the same host
// sees over loopback or veth.
func partialSum(pkt []byte) []byte {
	b := append([]byte{}, pkt...)
	start, end, src, dst, proto, ok := l4(b)
	if !ok || proto != wire.ProtocolTCP {
		panic("partialSum: not a TCP packet")
	}
	tcp := wire.TCP(b[start:end])
	tcp.SetChecksum(naiveChecksum(naivePseudoHeader(wire.ProtocolTCP, src, dst, uint16(len(tcp))), 0))
	return b
}

// fixIPv4Sum recomputes the IPv4 header checksum of b in place.
func fixIPv4Sum(b []byte) {
	ip := wire.IPv4(b)
	ip.SetChecksum(ip.CalculateChecksum())
}

// l4 returns the offset of the upper-layer header of the IP packet b, its
// end, the addresses of its pseudo header and its protocol, as far as the
// headers allow; ok is false when they do not.
func l4(b []byte) (start, end int, src, dst netip.Addr, proto uint8, ok bool) {
	switch {
	case len(b) >= wire.IPv4MinimumSize && b[0]>>4 == 4:
		ip := wire.IPv4(b)
		hl, tl := ip.HeaderLength(), int(ip.TotalLength())
		if hl < wire.IPv4MinimumSize || hl > tl || tl > len(b) {
			return
		}
		return hl, tl, ip.SourceAddress(), ip.DestinationAddress(), ip.Protocol(), true
	case len(b) >= wire.IPv6MinimumSize && b[0]>>4 == 6:
		ip := wire.IPv6(b)
		e := wire.IPv6MinimumSize + int(ip.PayloadLength())
		if e > len(b) {
			return
		}
		nh, rest, err := wire.SkipExtHeaders(ip.NextHeader(), b[wire.IPv6MinimumSize:e], true)
		if err != nil {
			return
		}
		return e - len(rest), e, ip.SourceAddress(), ip.DestinationAddress(), nh, true
	}
	return
}

// naiveChecksumsOK reports whether b's checksums verify by the naive
// reference, the TCP one possibly in the partial form.
func naiveChecksumsOK(b []byte, proto uint8) bool {
	if b[0]>>4 == 4 {
		hl := wire.IPv4(b).HeaderLength()
		if naiveChecksum(b[:hl], 0) != 0xffff {
			return false
		}
	}
	start, end, src, dst, nh, ok := l4(b)
	if !ok || nh != proto {
		return false
	}
	seg := b[start:end]
	var pseudo []byte
	switch proto {
	case wire.ProtocolTCP:
		pseudo = naivePseudoHeader(wire.ProtocolTCP, src, dst, uint16(len(seg)))
		if len(seg) >= wire.TCPMinimumSize && wire.TCP(seg).Checksum() == naiveChecksum(pseudo, 0) {
			return true
		}
	case wire.ProtocolICMPv6:
		pseudo = naivePseudoHeader(wire.ProtocolICMPv6, src, dst, uint16(len(seg)))
	}
	return naiveChecksum(append(pseudo, seg...), 0) == 0xffff
}

// withChecksums returns a copy of b with every checksum its headers let
// us find made right: the IPv4 header's, and the TCP or ICMP one.
func withChecksums(pkt []byte) []byte {
	b := append([]byte{}, pkt...)
	if len(b) >= wire.IPv4MinimumSize && b[0]>>4 == 4 && wire.IPv4(b).HeaderLength() >= wire.IPv4MinimumSize && wire.IPv4(b).HeaderLength() <= len(b) {
		fixIPv4Sum(b)
	}
	start, end, src, dst, proto, ok := l4(b)
	if !ok {
		return b
	}
	seg := b[start:end]
	switch {
	case proto == wire.ProtocolTCP && len(seg) >= wire.TCPMinimumSize:
		wire.TCP(seg).SetChecksum(0)
		wire.TCP(seg).SetChecksum(^wire.Checksum(seg, wire.PseudoHeaderChecksum(wire.ProtocolTCP, src, dst, uint16(len(seg)))))
	case proto == wire.ProtocolICMP && len(seg) >= wire.ICMPHeaderSize:
		wire.ICMPv4(seg).SetChecksum(0)
		wire.ICMPv4(seg).SetChecksum(^wire.Checksum(seg, 0))
	case proto == wire.ProtocolICMPv6 && len(seg) >= wire.ICMPHeaderSize:
		wire.ICMPv6(seg).SetChecksum(0)
		wire.ICMPv6(seg).SetChecksum(^wire.Checksum(seg, wire.PseudoHeaderChecksum(wire.ProtocolICMPv6, src, dst, uint16(len(seg)))))
	}
	return b
}
