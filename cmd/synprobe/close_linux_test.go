//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/rawsock/rstguard"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// Servers built to close each way, on both families of a lab's target.
const (
	portEOF       = 80 // reads to EOF, then closes: Linux merges its FIN with the ACK of ours
	portDelay     = 81 // reads to EOF, waits, then closes: ACK and FIN apart
	portSpeak     = 82 // writes a banner and closes at once: it closes first
	portLinger0   = 83 // closes with SO_LINGER 0: RST
	portHalfClose = 84 // reads to EOF, writes halfCloseBytes more, then closes
	portNever     = 85 // reads to EOF and never closes
	portHTTP      = 86 // reads a request, answers it and closes
	portEOFReset  = 87 // reads to EOF, waits, then closes with SO_LINGER 0: ACK of our FIN, then RST
)

const httpResponse = "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello"

const halfCloseBytes = 5000

func closeLab(t testing.TB) *netlab.Lab {
	l := netlab.New(t)
	closeServers(t, l)
	return l
}

// closeServers starts the close servers (portEOF ... portHTTP) on both
// addresses of l's target.
func closeServers(t testing.TB, l *netlab.Lab) {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	handlers := map[int]func(net.Conn){
		portEOF: func(c net.Conn) { io.Copy(io.Discard, c); c.Close() },
		portDelay: func(c net.Conn) {
			io.Copy(io.Discard, c)
			time.Sleep(100 * time.Millisecond)
			c.Close()
		},
		portSpeak: func(c net.Conn) { c.Write([]byte("220 synprobe lab\r\n")); c.Close() },
		portLinger0: func(c net.Conn) {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		},
		portHalfClose: func(c net.Conn) {
			io.Copy(io.Discard, c)
			c.Write(make([]byte, halfCloseBytes))
			c.Close()
		},
		portEOFReset: func(c net.Conn) {
			io.Copy(io.Discard, c)
			// Past Linux's delayed ACK (40 ms): its ACK of our FIN
			// leaves first.
			time.Sleep(100 * time.Millisecond)
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		},
		portNever: func(c net.Conn) {
			io.Copy(io.Discard, c)
			<-done
			c.Close()
		},
		portHTTP: func(c net.Conn) {
			req, _ := bufio.NewReader(c).ReadString('\n')
			if strings.HasPrefix(req, "GET / ") {
				c.Write([]byte(httpResponse))
			}
			c.Close()
		},
	}
	for port, h := range handlers {
		for _, a := range []netip.Addr{l.TargetV4, l.TargetV6} {
			ln := l.Listen(t, l.Target, "tcp", netip.AddrPortFrom(a, uint16(port)).String())
			netlab.Serve(ln, h)
		}
	}
}

// leftovers returns the target's TCP sockets other than listeners and
// the TIME_WAIT of connections it closed first.
func leftovers(t testing.TB, l *netlab.Lab, allowTimeWait map[uint16]bool) []string {
	var bad []string
	for _, line := range strings.Split(strings.TrimSpace(l.Run(t, l.Target, "ss", "-Htan")), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] == "LISTEN" {
			continue
		}
		ap, err := netip.ParseAddrPort(f[3])
		if f[0] == "TIME-WAIT" && err == nil && allowTimeWait[ap.Port()] {
			continue
		}
		bad = append(bad, line)
	}
	return bad
}

// TestIntegrationClosePatterns probes each server in fin mode over IPv4 and
// IPv6 and checks the pattern, the byte counts, the wire (a capture: no
// RST from the prober except where the pattern calls for ours) and what
// the server keeps afterwards.
func TestIntegrationClosePatterns(t *testing.T) {
	l := closeLab(t)
	// Whether Linux merges its FIN with the ACK of ours depends on how soon
	// the server application closes, so the close-at-EOF and half-close
	// servers may do either: the capture says which they did.
	want := map[uint16]struct {
		patterns []string // accepted patterns
		after    float64  // peer_data_bytes
		ourRSTs  int      // RSTs we send: only when the peer would keep state otherwise
	}{
		portEOF:       {[]string{"3-way", "4-way"}, 0, 0},
		portDelay:     {[]string{"4-way"}, 0, 0},
		portSpeak:     {[]string{"peer-first"}, 0, 0},
		portLinger0:   {[]string{"rst"}, 0, 0},
		portHalfClose: {[]string{"4-way", "3-way"}, halfCloseBytes, 0},
		portNever:     {[]string{"no-fin"}, 0, 1},
		portEOFReset:  {[]string{"rst"}, 0, 0},
	}
	c := l.StartCapture(t, l.Prober, l.ProberIf, "tcp")
	args := []string{"--json", "--mode", "fin", "-c", "1", "--hold", "0.05", "--close-timeout", "0.5"}
	for _, a := range []netip.Addr{l.TargetV4, l.TargetV6} {
		for p := range want {
			args = append(args, hostPort(a, p))
		}
	}
	r := runIn(t, l, l.Prober, args...)
	pkts, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	sports := map[uint16]uint16{} // our source port -> server port
	probes := 0
	for _, m := range r.lines {
		switch m["type"] {
		case "guard":
			if m["owned"] != true || m["kernel_rsts_escaped"] != 0.0 || m["kernel_rsts_dropped"].(float64) < 1 {
				t.Errorf("guard: %v", m)
			}
		case "probe":
			probes++
			port := uint16(m["port"].(float64))
			sports[uint16(m["sport"].(float64))] = port
			w := want[port]
			cl, _ := m["close"].(map[string]any)
			if cl == nil {
				t.Errorf("%v: no close report", m["target"])
				continue
			}
			ok := false
			for _, p := range w.patterns {
				ok = ok || cl["pattern"] == p
			}
			if !ok || cl["peer_data_bytes"] != w.after || cl["clock"] != "kernel" {
				t.Errorf("%v: close %v, want pattern %v and %v bytes after our FIN", m["target"], cl, w.patterns, w.after)
			}
		}
	}
	if probes != 2*len(want) {
		t.Fatalf("%d probes reported, want %d:\n%s", probes, 2*len(want), r.stdout)
	}
	// The wire: count RSTs the prober sent, per server port.
	rsts := map[uint16]int{}
	var p wire.Packet
	for _, cp := range pkts {
		if wire.Parse(cp.Data, &p) != nil || p.Proto != wire.ProtocolTCP || p.Flags&wire.FlagRst == 0 {
			continue
		}
		if p.Src == l.ProberV4 || p.Src == l.ProberV6 {
			rsts[sports[p.SrcPort]]++
		}
	}
	for port, w := range want {
		if rsts[port] != 2*w.ourRSTs { // v4 and v6
			t.Errorf("port %d: the prober sent %d RSTs, want %d (a kernel RST escaped?)", port, rsts[port], 2*w.ourRSTs)
		}
	}
	onWire := wirePatterns(pkts, l.ProberV4, l.ProberV6)
	for _, m := range r.lines {
		if m["type"] != "probe" {
			continue
		}
		sport := uint16(m["sport"].(float64))
		if got := m["close"].(map[string]any)["pattern"]; got != onWire[sport] {
			t.Errorf("%v: synprobe says %v, the capture shows %q\nclose %v\nwire:\n%s", m["target"], got, onWire[sport], m["close"], wireLog(pkts, sport))
		}
	}
	if bad := leftovers(t, l, map[uint16]bool{portSpeak: true}); len(bad) > 0 {
		t.Errorf("the server keeps state:\n%s", strings.Join(bad, "\n"))
	}
}

// wirePatterns classifies each connection's close from a capture, keyed by
// the prober's source port, by the definitions of docs/json.md: from
// sequence numbers, whatever order the peer's segments arrived in. Two
// segments the peer sends from two CPUs reach us through two CPUs'
// backlogs and may be swapped on the way (CI: its ACK of our FIN, sent
// from the softirq that took our FIN, arrived after the FIN its
// application sent at once from the other CPU); a pure ACK at or before
// the peer's FIN position left before that FIN, whenever it arrived, and
// a RST past it after. As synprobe's judge does, only data sent for the
// first time counts (a retransmission of bytes sent before our FIN
// arrived acknowledges it without showing a 4-way close). Segments lost
// between the peer and the capture are not accounted for: the lab loses
// none.
func wirePatterns(pkts []netlab.CapturedPacket, prober ...netip.Addr) map[uint16]string {
	type conn struct {
		finSent  bool
		finAckNo uint32 // the acknowledgement number that covers our first FIN
		// The peer's first FIN: where it stands, whether it covered
		// ours, and whether it arrived before ours left.
		peerFIN, finCovers, beforeOurs bool
		peerFINPos                     uint32
		// The first RST and its sequence number.
		reset  bool
		rstSeq uint32
		// Segments without FIN that acknowledged our FIN (data only
		// when sent for the first time): the lowest end among them.
		acked  bool
		ackEnd uint32
		// The highest end of the peer's segments so far: a data
		// segment starting before it is a retransmission.
		hiSet bool
		hiEnd uint32
	}
	seqLE := func(a, b uint32) bool { return int32(a-b) <= 0 }
	conns := map[uint16]*conn{}
	var p wire.Packet
	for _, cp := range pkts {
		if wire.Parse(cp.Data, &p) != nil || p.Proto != wire.ProtocolTCP {
			continue
		}
		if slices.Contains(prober, p.Src) {
			k := conns[p.SrcPort]
			if k == nil {
				k = &conn{}
				conns[p.SrcPort] = k
			}
			if p.Flags&wire.FlagFin != 0 && !k.finSent {
				k.finSent, k.finAckNo = true, p.Seq+uint32(p.PayloadLen)+1
			}
			continue
		}
		k := conns[p.DstPort]
		if k == nil || p.Flags&wire.FlagSyn != 0 {
			continue
		}
		covers := k.finSent && p.Flags&wire.FlagAck != 0 && seqLE(k.finAckNo, p.Ack)
		end := p.Seq + uint32(p.PayloadLen)
		firstSent := p.PayloadLen == 0 || !k.hiSet || seqLE(k.hiEnd, p.Seq)
		switch {
		case p.Flags&wire.FlagRst != 0:
			if !k.reset {
				k.reset, k.rstSeq = true, p.Seq
			}
		case p.Flags&wire.FlagFin != 0:
			if !k.peerFIN {
				k.peerFIN, k.peerFINPos, k.finCovers, k.beforeOurs = true, end, covers, !k.finSent
			}
		case covers && firstSent:
			if !k.acked || seqLE(end, k.ackEnd) {
				k.acked, k.ackEnd = true, end
			}
		}
		if p.Flags&wire.FlagFin != 0 {
			end++
		}
		if !k.hiSet || seqLE(k.hiEnd, end) {
			k.hiSet, k.hiEnd = true, end
		}
	}
	out := map[uint16]string{}
	for sport, k := range conns {
		switch {
		case k.reset && (!k.peerFIN || seqLE(k.rstSeq, k.peerFINPos)):
			// It reset instead of closing: no FIN, or the RST left
			// before it.
			out[sport] = "rst"
		case k.peerFIN && k.beforeOurs:
			out[sport] = "peer-first"
		case k.peerFIN && !k.finCovers:
			out[sport] = "simultaneous"
		case k.peerFIN && k.acked && seqLE(k.ackEnd, k.peerFINPos):
			out[sport] = "4-way"
		case k.peerFIN:
			out[sport] = "3-way"
		case k.acked:
			out[sport] = "no-fin"
		case k.finSent:
			out[sport] = "no-ack"
		}
	}
	return out
}

// wireLog lists a capture's TCP segments to or from our source port
// sport, for failure messages.
func wireLog(pkts []netlab.CapturedPacket, sport uint16) string {
	var b strings.Builder
	var p wire.Packet
	for _, cp := range pkts {
		if wire.Parse(cp.Data, &p) == nil && p.Proto == wire.ProtocolTCP && (p.SrcPort == sport || p.DstPort == sport) {
			fmt.Fprintf(&b, "%s %v:%d > %v:%d %v seq %d ack %d len %d\n", cp.Time.Format("05.000000"), p.Src, p.SrcPort, p.Dst, p.DstPort, p.Flags, p.Seq, p.Ack, p.PayloadLen)
		}
	}
	return b.String()
}

// TestWirePatterns checks the capture's witness itself on made-up
// captures, the reordered ACK among them.
func TestWirePatterns(t *testing.T) {
	us, them := netip.MustParseAddr("198.18.1.1"), netip.MustParseAddr("198.18.1.2")
	const (
		sport, dport = 40000, 80
		ourFIN       = 1000 // our FIN's sequence number: acknowledged by 1001
		theirs       = 5000 // the peer's next sequence number at our FIN
	)
	type seg struct {
		ours  bool
		flags wire.TCPFlags
		seq   uint32
		ack   uint32
		data  int
	}
	fin := seg{ours: true, flags: wire.FlagFin | wire.FlagAck, seq: ourFIN, ack: theirs}
	a, fa, r := wire.FlagAck, wire.FlagFin|wire.FlagAck, wire.FlagRst|wire.FlagAck
	for _, tt := range []struct {
		name string
		segs []seg
		want string
	}{
		{"fin+ack", []seg{fin, {flags: fa, seq: theirs, ack: ourFIN + 1}}, "3-way"},
		{"ack, then fin", []seg{fin, {flags: a, seq: theirs, ack: ourFIN + 1}, {flags: fa, seq: theirs, ack: ourFIN + 1}}, "4-way"},
		{"fin, then the ack sent before it", []seg{fin, {flags: fa, seq: theirs, ack: ourFIN + 1}, {flags: a, seq: theirs, ack: ourFIN + 1}}, "4-way"},
		{"fin, then an ack sent after it", []seg{fin, {flags: fa, seq: theirs, ack: ourFIN + 1}, {flags: a, seq: theirs + 1, ack: ourFIN + 1}}, "3-way"},
		{"data acknowledging ours, then fin", []seg{fin, {flags: a, seq: theirs, ack: ourFIN + 1, data: 100}, {flags: fa, seq: theirs + 100, ack: ourFIN + 1}}, "4-way"},
		{"fin with data", []seg{fin, {flags: fa, seq: theirs, ack: ourFIN + 1, data: 100}}, "3-way"},
		{"ack short of ours", []seg{fin, {flags: a, seq: theirs, ack: ourFIN}, {flags: fa, seq: theirs, ack: ourFIN + 1}}, "3-way"},
		{"fins crossed", []seg{fin, {flags: fa, seq: theirs, ack: ourFIN}}, "simultaneous"},
		{"its fin first", []seg{{flags: fa, seq: theirs, ack: ourFIN}, fin}, "peer-first"},
		{"rst", []seg{fin, {flags: r, seq: theirs, ack: ourFIN + 1}}, "rst"},
		{"ack, then rst", []seg{fin, {flags: a, seq: theirs, ack: ourFIN + 1}, {flags: r, seq: theirs, ack: ourFIN + 1}}, "rst"},
		{"rst after fin", []seg{fin, {flags: fa, seq: theirs, ack: ourFIN + 1}, {flags: wire.FlagRst, seq: theirs + 1}}, "3-way"},
		{"rst sent after fin, arriving first", []seg{fin, {flags: wire.FlagRst, seq: theirs + 1}, {flags: fa, seq: theirs, ack: ourFIN + 1}}, "3-way"},
		{"data retransmitted after our fin", []seg{{flags: a, seq: theirs - 100, ack: ourFIN, data: 100}, fin, {flags: a, seq: theirs - 100, ack: ourFIN + 1, data: 100}, {flags: fa, seq: theirs, ack: ourFIN + 1}}, "3-way"},
		{"ack only", []seg{fin, {flags: a, seq: theirs, ack: ourFIN + 1}}, "no-fin"},
		{"nothing", []seg{fin}, "no-ack"},
	} {
		var pkts []netlab.CapturedPacket
		for _, s := range append([]seg{{ours: true, flags: wire.FlagSyn, seq: ourFIN - 1}}, tt.segs...) {
			w := wire.Segment{Src: them, Dst: us, SrcPort: dport, DstPort: sport, Seq: s.seq, Ack: s.ack, Flags: s.flags, Payload: make([]byte, s.data)}
			if s.ours {
				w.Src, w.Dst, w.SrcPort, w.DstPort = us, them, sport, dport
			}
			pkts = append(pkts, netlab.CapturedPacket{Data: probetest.Build(w)})
		}
		if got := wirePatterns(pkts, us)[sport]; got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestIntegrationACKMode: ack mode completes the handshake (the server
// accepts the connection) and then resets it: on the wire our ACK comes
// before our RST, no kernel RST gets out, and the server keeps nothing.
func TestIntegrationACKMode(t *testing.T) {
	l := closeLab(t)
	c := l.StartCapture(t, l.Prober, l.ProberIf, "tcp")
	r := runIn(t, l, l.Prober, "--json", "--mode", "ack", "-c", "3", "-i", "0.02", hostPort(l.TargetV4, portEOF), hostPort(l.TargetV6, portEOF))
	pkts, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	// Per connection (our source port): the flags we sent, in wire order.
	ours := map[uint16][]wire.TCPFlags{}
	var p wire.Packet
	for _, cp := range pkts {
		if wire.Parse(cp.Data, &p) == nil && p.Proto == wire.ProtocolTCP && (p.Src == l.ProberV4 || p.Src == l.ProberV6) {
			ours[p.SrcPort] = append(ours[p.SrcPort], p.Flags)
		}
	}
	if len(ours) != 6 {
		t.Errorf("%d connections on the wire, want 6", len(ours))
	}
	for sport, f := range ours {
		if !equalFlags(f, []wire.TCPFlags{wire.FlagSyn, wire.FlagAck, wire.FlagRst}) {
			t.Errorf("port %d: we sent %v, want S, A, R (and no kernel RST)", sport, f)
		}
	}
	if bad := leftovers(t, l, nil); len(bad) > 0 {
		t.Errorf("the server keeps state:\n%s", strings.Join(bad, "\n"))
	}
}

func equalFlags(a, b []wire.TCPFlags) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// proberTables lists the nftables tables in the prober's namespace.
func proberTables(t testing.TB, l *netlab.Lab) string {
	return strings.TrimSpace(l.Run(t, l.Prober, "nft", "list", "tables"))
}

// TestIntegrationSIGKILL kills synprobe in the middle of an ack run: the
// kernel removes the owned table with the process.
func TestIntegrationSIGKILL(t *testing.T) {
	l := closeLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := l.Command(ctx, l.Prober, synprobeBinary(t), "--mode", "ack", "-i", "0.01", hostPort(l.TargetV4, portEOF))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(proberTables(t, l), rstguard.TablePrefix) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("synprobe never installed its table")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // in the middle of probing
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	for deadline = time.Now().Add(2 * time.Second); strings.Contains(proberTables(t, l), rstguard.TablePrefix); {
		if time.Now().After(deadline) {
			t.Fatalf("table left after SIGKILL:\n%s", proberTables(t, l))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIntegrationInterruptFIN: SIGINT during a fin run's hold resets the
// open connection and removes the table; the server keeps nothing.
func TestIntegrationInterruptFIN(t *testing.T) {
	l := closeLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := l.StartCapture(t, l.Prober, l.ProberIf, "tcp")
	cmd := l.Command(ctx, l.Prober, synprobeBinary(t), "--mode", "fin", "--hold", "1h", "-c", "1", hostPort(l.TargetV6, portNever))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the server holds the connection.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(l.Run(t, l.Target, "ss", "-Htan", "state", "established"), ":85") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("no connection established")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == exitNotOpen) {
		t.Errorf("exit: %v", err)
	}
	pkts, _ := c.Stop()
	var p wire.Packet
	var rst bool
	for _, cp := range pkts {
		if wire.Parse(cp.Data, &p) == nil && p.Src == l.ProberV6 && p.Flags&wire.FlagRst != 0 {
			rst = true
		}
	}
	if !rst {
		t.Error("no RST on the wire after SIGINT")
	}
	if bad := leftovers(t, l, nil); len(bad) > 0 {
		t.Errorf("the server keeps state:\n%s", strings.Join(bad, "\n"))
	}
	if tables := proberTables(t, l); strings.Contains(tables, rstguard.TablePrefix) {
		t.Errorf("table left: %s", tables)
	}
}

// TestIntegrationCleanup: --cleanup removes an unowned table of a dead run
// and keeps everything else.
func TestIntegrationCleanup(t *testing.T) {
	l := netlab.New(t)
	l.Nft(t, l.Prober, "table inet synprobe_999999999_deadbeef {}\ntable inet keepme {}\n")
	r := runIn(t, l, l.Prober, "--cleanup")
	if r.code != exitOK || !strings.Contains(r.stdout, "removed nftables table inet synprobe_999999999_deadbeef") {
		t.Errorf("exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	if tables := proberTables(t, l); strings.Contains(tables, "synprobe_") || !strings.Contains(tables, "keepme") {
		t.Errorf("tables after --cleanup:\n%s", tables)
	}
}

// TestIntegrationData: --data reaches the server, which answers; synprobe
// times the acknowledgement of the request and counts the answer.
func TestIntegrationData(t *testing.T) {
	l := closeLab(t)
	r := runIn(t, l, l.Prober, "--json", "--mode", "fin", "-c", "1", "--hold", "0.05", "--data", `GET / HTTP/1.0\r\n\r\n`,
		hostPort(l.TargetV4, portHTTP), hostPort(l.TargetV6, portHTTP))
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	n := 0
	for _, m := range r.lines {
		if m["type"] != "probe" {
			continue
		}
		n++
		cl := m["close"].(map[string]any)
		ack, _ := cl["data_ack_us"].(float64)
		if cl["peer_bytes"] != float64(len(httpResponse)) || ack <= 0 || cl["pattern"] != "peer-first" {
			t.Errorf("%v: close %v, want the %d-byte answer, a data_ack_us and the server closing first", m["target"], cl, len(httpResponse))
		}
	}
	if n != 2 {
		t.Errorf("%d probes", n)
	}
	if bad := leftovers(t, l, map[uint16]bool{portHTTP: true}); len(bad) > 0 {
		t.Errorf("the server keeps state:\n%s", strings.Join(bad, "\n"))
	}
}
