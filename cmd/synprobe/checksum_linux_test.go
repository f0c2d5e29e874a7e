//go:build linux

package main

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// Silent ports of the injection lab: the target's firewall drops SYNs to
// them, and an injector at the target answers each SYN for it.
const (
	injBadRST      = 1001 // RST|ACK acknowledging ISN+1, TCP checksum off by one
	injBadSYNACK   = 1002 // SYN|ACK acknowledging ISN+1, checksum off by one
	injGoodRST     = 1003 // RST|ACK, right checksum: the control
	injGoodSYNACK  = 1004 // SYN|ACK, right checksum: the control
	injPartialRST  = 1005 // RST|ACK whose checksum is the pseudo-header sum alone
	injBadIPHeader = 1006 // RST|ACK with a wrong IPv4 header checksum (ring only)
)

// injector answers SYNs to the silent ports from the target's namespace:
// it reads them off a packet socket (taps run before the firewall drops
// them) and writes answers on a packet socket, so that no checksum is
// filled in or verified on the way out.
type injector struct {
	rx, tx  int
	ifindex int
	dstMAC  net.HardwareAddr
	mu      sync.Mutex
	sent    map[uint16]int  // answers injected, by port
	isns    map[uint32]bool // the ISNs of the SYNs answered
	done    chan struct{}
}

func startInjector(t *testing.T, l *netlab.Lab) *injector {
	t.Helper()
	inj := &injector{rx: -1, tx: -1, sent: map[uint16]int{}, isns: map[uint32]bool{}, done: make(chan struct{})}
	// The prober's MAC: the frames go straight to it.
	mac, err := net.ParseMAC(strings.TrimSpace(l.Run(t, l.Prober, "cat", "/sys/class/net/"+l.ProberIf+"/address")))
	if err != nil {
		t.Fatal(err)
	}
	inj.dstMAC = mac
	err = l.InNS(l.Target, func() error {
		ifi, err := net.InterfaceByName(l.TargetIf)
		if err != nil {
			return err
		}
		inj.ifindex = ifi.Index
		if inj.rx, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL))); err != nil {
			return err
		}
		if err := unix.Bind(inj.rx, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return err
		}
		// A scan's SYNs come in a flood; those to the silent ports must
		// not be lost among them.
		if err := unix.SetsockoptInt(inj.rx, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
			return err
		}
		tv := unix.Timeval{Usec: 50000}
		if err := unix.SetsockoptTimeval(inj.rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		inj.tx, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		t.Fatalf("injector: %v", err)
	}
	go inj.loop()
	t.Cleanup(inj.stop)
	return inj
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (inj *injector) stop() {
	select {
	case <-inj.done:
		return
	default:
	}
	close(inj.done)
	unix.Close(inj.rx)
	unix.Close(inj.tx)
}

func (inj *injector) count(port uint16) int {
	inj.mu.Lock()
	defer inj.mu.Unlock()
	return inj.sent[port]
}

func (inj *injector) loop() {
	buf := make([]byte, 2048)
	var syn wire.Packet
	for {
		select {
		case <-inj.done:
			return
		default:
		}
		n, from, err := unix.Recvfrom(inj.rx, buf, 0)
		if err != nil {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); !ok || ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if wire.Parse(buf[:n], &syn) != nil || syn.Proto != wire.ProtocolTCP || syn.Flags != wire.FlagSyn {
			continue
		}
		if syn.DstPort < injBadRST || syn.DstPort > injBadIPHeader {
			continue
		}
		inj.answer(&syn)
	}
}

// answer builds and sends the answer the SYN's port calls for.
func (inj *injector) answer(syn *wire.Packet) {
	flags := wire.FlagRst | wire.FlagAck
	if syn.DstPort == injBadSYNACK || syn.DstPort == injGoodSYNACK {
		flags = wire.FlagSyn | wire.FlagAck
	}
	var b [64]byte
	n, err := (&wire.Segment{Src: syn.Dst, Dst: syn.Src, TTL: 64, DF: true, SrcPort: syn.DstPort, DstPort: syn.SrcPort,
		Seq: 0x5eed0000, Ack: syn.Seq + 1, Flags: flags, Window: 64240}).Build(b[:])
	if err != nil {
		return
	}
	hl := wire.IPv4MinimumSize
	proto := uint16(unix.ETH_P_IP)
	if syn.Src.Is6() {
		hl, proto = wire.IPv6MinimumSize, unix.ETH_P_IPV6
	}
	tcp := wire.TCP(b[hl:n])
	switch syn.DstPort {
	case injBadRST, injBadSYNACK:
		tcp.SetChecksum(tcp.Checksum() + 1)
	case injPartialRST:
		tcp.SetChecksum(wire.PseudoHeaderChecksum(wire.ProtocolTCP, syn.Dst, syn.Src, uint16(len(tcp))))
	case injBadIPHeader:
		if syn.Src.Is6() {
			return
		}
		ip := wire.IPv4(b[:n])
		ip.SetChecksum(ip.Checksum() + 1)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: inj.ifindex, Halen: 6}
	copy(sa.Addr[:], inj.dstMAC)
	if unix.Sendto(inj.tx, b[:n], 0, sa) == nil {
		inj.mu.Lock()
		inj.sent[syn.DstPort]++
		inj.isns[syn.Seq] = true
		inj.mu.Unlock()
	}
}

// injectionLab is a lab whose target drops SYNs to the silent ports (an
// injector answers them) and answers every other port with its kernel's
// RST.
func injectionLab(t *testing.T) (*netlab.Lab, *injector) {
	l := netlab.New(t)
	l.Nft(t, l.Target, fmt.Sprintf(`table inet lab {
	chain input {
		type filter hook input priority 0;
		tcp dport %d-%d drop
	}
}`, injBadRST, injBadIPHeader))
	return l, startInjector(t, l)
}

// badAnswers returns, from a capture on the prober's interface, the
// answers from port with a wrong checksum that acknowledge a SYN the
// injector answered (ISN+1): proof that what synprobe ignored reached it.
// (A scan's SYNs bypass the capture: they leave through a packet socket.)
func (inj *injector) badAnswers(pkts []netlab.CapturedPacket, port uint16) int {
	inj.mu.Lock()
	defer inj.mu.Unlock()
	n := 0
	var p, strict wire.Packet
	for _, c := range pkts {
		if wire.ParseChecksums(c.Data, &p, wire.ChecksumsNotReady) != nil {
			continue
		}
		if p.SrcPort != port || p.Flags&wire.FlagAck == 0 || !inj.isns[p.Ack-1] {
			continue
		}
		if wire.ParseChecksums(c.Data, &strict, wire.ChecksumsVerify) == wire.ErrChecksum {
			n++
		}
	}
	return n
}

// TestIntegrationBadChecksums: answers that acknowledge the probe's ISN+1
// for real but carry a wrong checksum, which the receiving kernel drops,
// are never taken: the probe stays filtered (timeout). The same answers
// with the right checksum are taken (closed, open): the injection works.
// Ping mode over both families (raw sockets), and a scan big enough to
// read its answers from the packet ring.
func TestIntegrationBadChecksums(t *testing.T) {
	l, inj := injectionLab(t)
	want := map[uint16]string{
		injBadRST:     "filtered/timeout",
		injBadSYNACK:  "filtered/timeout",
		injGoodRST:    "closed/rst",
		injGoodSYNACK: "open/syn-ack",
	}
	t.Run("ping", func(t *testing.T) {
		c := l.StartCapture(t, l.Prober, l.ProberIf, "tcp")
		args := []string{"--json", "-c", "2", "-i", "0.05", "-w", "0.3"}
		for _, a := range []netip.Addr{l.TargetV4, l.TargetV6} {
			for p := range want {
				args = append(args, hostPort(a, p))
			}
		}
		// IPv6 raw sockets also drop a forged partial checksum (the
		// kernel verifies); IPv4 ones cannot tell it from a local one.
		args = append(args, hostPort(l.TargetV6, injPartialRST))
		r := runIn(t, l, l.Prober, args...)
		pkts, err := c.Stop()
		if err != nil {
			t.Fatal(err)
		}
		probes := 0
		for _, m := range r.lines {
			if m["type"] != "probe" {
				continue
			}
			probes++
			port := uint16(m["port"].(float64))
			w, ok := want[port]
			if port == injPartialRST {
				w, ok = "filtered/timeout", true
			}
			if got := fmt.Sprintf("%v/%v", m["state"], m["reason"]); !ok || got != w {
				t.Errorf("%v: %s, want %s", m["target"], got, w)
			}
		}
		if probes != 18 {
			t.Errorf("%d probe lines, want 18:\n%s%s", probes, r.stdout, r.stderr)
		}
		for _, port := range []uint16{injBadRST, injBadSYNACK, injPartialRST} {
			if n := inj.count(port); n < 2 {
				t.Errorf("port %d: %d answers injected, want at least 2", port, n)
			}
		}
		for _, port := range []uint16{injBadRST, injBadSYNACK} {
			if n := inj.badAnswers(pkts, port); n != 4 {
				t.Errorf("port %d: the capture shows %d answers with a bad checksum acknowledging a SYN, want 4 (2 per family)", port, n)
			}
		}
	})
	t.Run("scan-ring", func(t *testing.T) {
		// 16384 pairs or more: the answers are read from the packet ring.
		c := l.StartCapture(t, l.Prober, l.ProberIf, "tcp portrange "+strconv.Itoa(injBadRST)+"-"+strconv.Itoa(injBadIPHeader))
		r := runIn(t, l, l.Prober, "scan", "--json", "--rate", "0", "-w", "0.3", "--retries", "1", hostPort(l.TargetV4, 1)+"-16384")
		pkts, err := c.Stop()
		if err != nil {
			t.Fatal(err)
		}
		w := map[uint16]string{injPartialRST: "filtered/timeout", injBadIPHeader: "filtered/timeout"}
		for p, s := range want {
			w[p] = s
		}
		results := 0
		for _, m := range r.lines {
			switch m["type"] {
			case "result":
				results++
				port := uint16(m["port"].(float64))
				got := fmt.Sprintf("%v/%v", m["state"], m["reason"])
				exp, ok := w[port]
				if !ok {
					exp = "closed/rst"
				}
				if got != exp {
					t.Errorf("port %d: %s, want %s", port, got, exp)
				}
			case "scan-summary":
				if m["recv_path"] != "packet ring" {
					t.Errorf("answers read from %v, want the packet ring", m["recv_path"])
				}
			}
		}
		if results != 16384 {
			t.Errorf("%d results, want 16384\n%s", results, r.stderr)
		}
		for _, port := range []uint16{injBadRST, injBadSYNACK, injPartialRST} {
			if n := inj.badAnswers(pkts, port); n != 2 {
				t.Errorf("port %d: the capture shows %d answers with a bad checksum acknowledging a SYN, want 2 (one per pass)", port, n)
			}
		}
		if n := inj.count(injBadIPHeader); n < 2 {
			t.Errorf("%d answers with a bad IP header checksum injected, want 2", n)
		}
	})
}
