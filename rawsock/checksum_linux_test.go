//go:build linux

package rawsock

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/rawsock/internal/wiretest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// Ports of the checksum lab's target (and of the prober itself, for
// loopback).
const (
	csListen   = 8081 // a listener: the kernel's SYN-ACK
	csClosed   = 8082 // nothing: the kernel's RST
	csNftRST   = 8083 // nftables: reject with tcp reset
	csNftICMP  = 8084 // nftables: reject with icmpx admin-prohibited
	csSilent   = 8085 // nftables: drop; the answers are injected
	csPortBase = 61300
)

// csCase is one kind of answer to a SYN of ours.
type csCase struct {
	name  string
	dport uint16
	// inject, if set, is the checksum field of a RST|ACK injected from a
	// raw socket at the target, acknowledging the SYN: "good", "bad" (the
	// right one plus one) or "partial" (the pseudo-header sum alone).
	inject string
	legit  bool // the receiving kernel would take it
}

var csCases = []csCase{
	{"kernel SYN-ACK", csListen, "", true},
	{"kernel RST", csClosed, "", true},
	{"nft tcp reset", csNftRST, "", true},
	{"nft icmp admin-prohibited", csNftICMP, "", true},
	{"injected RST, good checksum", csSilent, "good", true},
	{"injected RST, bad checksum", csSilent, "bad", false},
	{"injected RST, partial checksum", csSilent, "partial", false},
}

// csSeen is what one receive path made of one answer.
type csSeen struct {
	form     string // "full", "partial" or "bad" (TCP); "icmp" (ICMP, verified)
	status   uint32 // tp_status (ring)
	accepted bool   // handed on and parsed: taken as an answer
}

// TestIntegrationChecksumPaths measures what reaches synprobe's two receive
// paths, the raw IP sockets (Conn) and the packet ring (Ring), over veth
// and loopback in both families, from each kind of sender: the kernel's
// own SYN-ACK and RST, nftables' reject, and RSTs injected from a raw
// socket with a good, a bad and a partial (pseudo-header only) checksum.
// Every answer the kernel would take must be taken, every corrupt one
// dropped; the log shows each checksum's form and the ring's tp_status.
//
// Measured on this machine (kernel 6.18), over veth and loopback alike:
// the kernel's SYN-ACKs, its IPv6 RST and nftables' IPv4 reset arrive
// with the partial form and TP_STATUS_CSUMNOTREADY; the kernel's IPv4
// RST, nftables' IPv6 reset, ICMP errors and raw-socket packets with a
// full checksum and no status. The IPv6 raw socket drops the bad and the
// partial injected RSTs itself (IPV6_CHECKSUM; without it, it hands both
// over); the IPv4 one hands them over, and Parse refuses the bad one but
// takes the partial one: on a raw IPv4 socket nothing tells a partial
// checksum left by a sender on this host from one forged to look like it.
// The ring refuses both.
func TestIntegrationChecksumPaths(t *testing.T) {
	l := netlab.New(t)
	for _, ns := range []string{l.Target, l.Prober} {
		l.Nft(t, ns, fmt.Sprintf(`table inet cslab {
	chain input {
		type filter hook input priority 0;
		tcp dport %d reject with tcp reset
		tcp dport %d reject with icmpx admin-prohibited
		tcp dport %d drop
	}
}`, csNftRST, csNftICMP, csSilent))
	}
	paths := []struct {
		name     string
		ns       string // where the answers come from
		src, dst netip.Addr
	}{
		{"veth-ipv4", l.Target, l.ProberV4, l.TargetV4},
		{"veth-ipv6", l.Target, l.ProberV6, l.TargetV6},
		{"lo-ipv4", l.Prober, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.1")},
		{"lo-ipv6", l.Prober, netip.IPv6Loopback(), netip.IPv6Loopback()},
	}
	for _, p := range paths {
		l.Listen(t, p.ns, "tcp", netip.AddrPortFrom(p.dst, csListen).String())
	}
	var report []string
	for _, path := range paths {
		t.Run(path.name, func(t *testing.T) {
			lo := uint16(csPortBase + rand.IntN(1000)*16)
			hi := lo + uint16(len(csCases)) - 1
			var conn *Conn
			var ring *Ring
			err := l.InNS(l.Prober, func() (err error) {
				if conn, err = Listen(Config{IPv4: true, IPv6: true, PortLo: lo, PortHi: hi}); err != nil {
					return err
				}
				src4, src6 := l.ProberV4, l.ProberV6
				if path.src.IsLoopback() {
					src4, src6 = netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()
				}
				ring, err = ListenRing(RingConfig{Src4: src4, Src6: src6, PortLo: lo, PortHi: hi})
				return err
			})
			if conn != nil {
				defer conn.Close()
			}
			if errors.Is(err, os.ErrPermission) {
				t.Skip(wiretest.NeedsNetRaw)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer ring.Close()
			// The injector: a raw socket where the answers come from.
			var inj int
			if err := l.InNS(path.ns, func() (err error) {
				family := unix.AF_INET
				if path.dst.Is6() {
					family = unix.AF_INET6
				}
				inj, err = unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer unix.Close(inj)

			isn := rand.Uint32()
			var buf [128]byte
			for i, c := range csCases {
				sport := lo + uint16(i)
				n, err := (&wire.Segment{Src: path.src, Dst: path.dst, TTL: 64, DF: true, SrcPort: sport, DstPort: c.dport,
					Seq: isn + uint32(i), Flags: wire.FlagSyn, Window: 64240}).Build(buf[:])
				if err != nil {
					t.Fatal(err)
				}
				if err := conn.Send(buf[:n], uint32(i)); err != nil {
					t.Fatal(err)
				}
				if c.inject != "" {
					injectRST(t, inj, path.dst, path.src, c.dport, sport, isn+uint32(i)+1, c.inject)
				}
			}

			raw := map[uint16]csSeen{}
			rb := make([]byte, MaxPacketSize)
			for deadline := time.Now().Add(500 * time.Millisecond); ; {
				n, _, err := conn.Recv(rb, deadline)
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				if err != nil {
					continue
				}
				port, form := csForm(rb[:n])
				var p wire.Packet
				raw[port] = csSeen{form: form, accepted: wire.Parse(rb[:n], &p) == nil}
			}
			ringSeen := map[uint16]csSeen{}
			for deadline := time.Now().Add(300 * time.Millisecond); ; {
				_, err := ring.readWith(deadline, nil, func(pkt []byte, _ time.Time, status uint32) {
					port, form := csForm(pkt)
					var p wire.Packet
					// What Read hands on, and the scanner's Parse then.
					ok := ring.checksumOK(pkt, status) && wire.Parse(pkt, &p) == nil
					ringSeen[port] = csSeen{form: form, status: status, accepted: ok}
				})
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}

			for i, c := range csCases {
				port := lo + uint16(i)
				r, rok := raw[port]
				g, gok := ringSeen[port]
				report = append(report, fmt.Sprintf("%-9s %-30s raw socket: %-26s ring: %s", path.name, c.name, describe(r, rok, false), describe(g, gok, true)))
				// The one answer a raw IPv4 socket cannot judge: a partial
				// checksum that no sender on this host left.
				rawWant := c.legit || c.inject == "partial" && path.src.Is4()
				if r.accepted != rawWant {
					t.Errorf("%s: raw socket took it: %v, want %v (%s)", c.name, r.accepted, rawWant, describe(r, rok, false))
				}
				if g.accepted != c.legit {
					t.Errorf("%s: ring took it: %v, want %v (%s)", c.name, g.accepted, c.legit, describe(g, gok, true))
				}
				if c.legit && (!rok || !gok) {
					t.Errorf("%s: not received (raw socket %v, ring %v)", c.name, rok, gok)
				}
			}
		})
	}
	t.Logf("what each path saw:\n%s", strings.Join(report, "\n"))
}

func describe(s csSeen, ok, ring bool) string {
	if !ok {
		return "not delivered"
	}
	d := s.form
	if ring {
		switch {
		case s.status&unix.TP_STATUS_CSUMNOTREADY != 0:
			d += " CSUMNOTREADY"
		case s.status&unix.TP_STATUS_CSUM_VALID != 0:
			d += " CSUM_VALID"
		default:
			d += " no-status"
		}
	}
	if s.accepted {
		return d + ", taken"
	}
	return d + ", dropped"
}

// csForm returns the port of ours a packet is addressed to (for an ICMP
// error, the quoted source port) and the form of its checksum.
func csForm(pkt []byte) (uint16, string) {
	var p wire.Packet
	if wire.ParseChecksums(pkt, &p, wire.ChecksumsNotReady) != nil {
		return 0, "unparsable"
	}
	if p.IsICMP() {
		if wire.ParseChecksums(pkt, &p, wire.ChecksumsVerify) != nil {
			return p.Quoted.SrcPort, "icmp-bad"
		}
		return p.Quoted.SrcPort, "icmp"
	}
	// The segments here follow the fixed IPv6 header directly.
	src, dst := p.Src, p.Dst
	start, end := wire.IPv6MinimumSize, wire.IPv6MinimumSize+int(wire.IPv6(pkt).PayloadLength())
	if pkt[0]>>4 == wire.IPv4Version {
		start, end = wire.IPv4(pkt).HeaderLength(), int(wire.IPv4(pkt).TotalLength())
	}
	seg := pkt[start:end]
	switch {
	case wire.Checksum(seg, wire.PseudoHeaderChecksum(wire.ProtocolTCP, src, dst, uint16(len(seg)))) == 0xffff:
		return p.DstPort, "full"
	case wire.TCP(seg).Checksum() == wire.PseudoHeaderChecksum(wire.ProtocolTCP, src, dst, uint16(len(seg))):
		return p.DstPort, "partial"
	}
	return p.DstPort, "bad"
}

// injectRST sends, from the raw socket fd, a RST|ACK from src:sport to
// dst:dport acknowledging ack, with the checksum form named.
func injectRST(t *testing.T, fd int, src, dst netip.Addr, sport, dport uint16, ack uint32, form string) {
	t.Helper()
	var b [64]byte
	n, err := (&wire.Segment{Src: src, Dst: dst, TTL: 64, DF: true, SrcPort: sport, DstPort: dport,
		Ack: ack, Flags: wire.FlagRst | wire.FlagAck}).Build(b[:])
	if err != nil {
		t.Fatal(err)
	}
	hl := wire.IPv4MinimumSize
	if src.Is6() {
		hl = wire.IPv6MinimumSize
	}
	tcp := wire.TCP(b[hl:n])
	switch form {
	case "bad":
		tcp.SetChecksum(tcp.Checksum() + 1)
	case "partial":
		tcp.SetChecksum(wire.PseudoHeaderChecksum(wire.ProtocolTCP, src, dst, uint16(len(tcp))))
	}
	var sa unix.Sockaddr
	if src.Is4() {
		sa = &unix.SockaddrInet4{Addr: dst.As4()}
	} else {
		sa = &unix.SockaddrInet6{Addr: dst.As16()}
	}
	if err := unix.Sendto(fd, b[:n], 0, sa); err != nil {
		t.Fatalf("inject: %v", err)
	}
}
