//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// targetRaw is a pair of raw sockets in a lab's target namespace: one
// that sees the TCP segments arriving there, one that sends whatever the
// test builds, as if the server had.
type targetRaw struct {
	rx, tx int
}

func openTargetRaw(t *testing.T, l *netlab.Lab) *targetRaw {
	r := &targetRaw{rx: -1, tx: -1}
	err := l.InNS(l.Target, func() (err error) {
		if r.rx, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP); err != nil {
			return err
		}
		tv := unix.Timeval{Usec: 100000}
		if err := unix.SetsockoptTimeval(r.rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		r.tx, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return err
	})
	t.Cleanup(func() {
		unix.Close(r.rx)
		unix.Close(r.tx)
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// await returns the first segment to dport for which match holds.
func (r *targetRaw) await(t *testing.T, deadline time.Time, match func(p *wire.Packet) bool) wire.Packet {
	t.Helper()
	buf := make([]byte, 65536)
	var p wire.Packet
	for time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(r.rx, buf, 0)
		if err != nil {
			continue
		}
		if wire.Parse(buf[:n], &p) == nil && match(&p) {
			return p
		}
	}
	t.Fatal("the segment never came")
	return p
}

func (r *targetRaw) send(t *testing.T, s wire.Segment) {
	t.Helper()
	b := make([]byte, 1500)
	n, err := s.Build(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Sendto(r.tx, b[:n], 0, &unix.SockaddrInet4{Addr: s.Dst.As4()}); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationHostileSegments injects, from the target's namespace,
// segments a real TCP would not accept into a fin-mode probe: while its
// SYN waits (the server's first SYN-ACK held back by nftables), a RST
// without ACK and a bare SYN that both carry ack = ISN+1; during the hold,
// a RST one past rcv.nxt, a SYN, data acknowledging bytes never sent, and
// a RST far outside the window. None may decide anything; the in-window
// ones draw one challenge ACK each (RFC 5961), seen on the wire; the
// probe ends in the server's own close, with the SYN-ACK flagged as a
// possible retransmission (it was one).
func TestIntegrationHostileSegments(t *testing.T) {
	l := closeLab(t)
	l.Nft(t, l.Target, fmt.Sprintf(`table inet hold {
	chain out {
		type filter hook output priority 0; policy accept;
		tcp sport %d tcp flags & (syn | ack) == syn | ack drop
	}
}`, portEOF))
	raw := openTargetRaw(t, l)
	cp := l.StartCapture(t, l.Prober, l.ProberIf, "tcp")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := l.Command(ctx, l.Prober, synprobeBinary(t), "--json", "--trace", "--mode", "fin", "-c", "1", "--hold", "2.5", "-w", "4",
		hostPort(l.TargetV4, portEOF))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fromServer := func(flags wire.TCPFlags, dport uint16, seq, ack uint32, payload string) wire.Segment {
		return wire.Segment{Src: l.TargetV4, Dst: l.ProberV4, TTL: 64, DF: true, SrcPort: portEOF, DstPort: dport,
			Seq: seq, Ack: ack, Flags: flags, Window: 65000, Payload: []byte(payload)}
	}
	deadline := time.Now().Add(10 * time.Second)
	syn := raw.await(t, deadline, func(p *wire.Packet) bool { return p.DstPort == portEOF && p.Flags == wire.FlagSyn })
	isn, sport := syn.Seq, syn.SrcPort
	// SYN_SENT: neither may be taken for an answer.
	raw.send(t, fromServer(wire.FlagRst, sport, 0, isn+1, ""))
	raw.send(t, fromServer(wire.FlagSyn, sport, 4242, isn+1, ""))
	time.Sleep(100 * time.Millisecond)
	l.Run(t, l.Target, "nft", "delete", "table", "inet", "hold") // its retransmission goes through

	ack := raw.await(t, deadline, func(p *wire.Packet) bool {
		return p.SrcPort == sport && p.Flags == wire.FlagAck && p.Seq == isn+1
	})
	ourSeq, rcvNxt := ack.Seq, ack.Ack
	type injection struct {
		seg       wire.Segment
		challenge bool
		note      string
	}
	injections := []injection{
		{fromServer(wire.FlagRst|wire.FlagAck, sport, rcvNxt+1, ourSeq, ""), true, "RST in the window"},
		{fromServer(wire.FlagSyn, sport, 77777, 0, ""), true, "SYN in a synchronized state"},
		{fromServer(wire.FlagPsh|wire.FlagAck, sport, rcvNxt, ourSeq+1000, "evil"), true, "data never sent"},
		{fromServer(wire.FlagRst, sport, rcvNxt+1<<30, 0, ""), false, "RST outside the window"},
	}
	for _, in := range injections {
		time.Sleep(600 * time.Millisecond) // past the challenge ACK rate limit
		raw.send(t, in.seg)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("synprobe: %v\n%s", err, out.String())
	}
	pkts, err := cp.Stop()
	if err != nil {
		t.Fatal(err)
	}
	r := cliRun{stdout: out.String()}
	r.lines = parseLines(t, r.stdout)
	var probe map[string]any
	for _, m := range r.lines {
		if m["type"] == "probe" {
			probe = m
		}
	}
	if probe == nil {
		t.Fatalf("no probe line:\n%s", out.String())
	}
	cl := probe["close"].(map[string]any)
	// The close on the wire, the injected segments left out.
	var real []netlab.CapturedPacket
	var q wire.Packet
	for _, c := range pkts {
		injected := false
		if wire.Parse(c.Data, &q) == nil && q.SrcPort == portEOF {
			for _, in := range injections {
				injected = injected || q.Flags == in.seg.Flags && q.Seq == in.seg.Seq
			}
			injected = injected || q.Ack == isn+1 && q.Flags&wire.FlagAck == 0
		}
		if !injected {
			real = append(real, c)
		}
	}
	onWire := wirePatterns(real, l.ProberV4)
	if probe["state"] != "open" || probe["maybe_retransmit"] != true || cl["pattern"] != onWire[sport] || cl["peer_bytes"] != 0.0 {
		t.Errorf("probe %v, close %v; the capture shows %s", probe["state"], cl, onWire[sport])
	}
	// The trace says why each was ignored.
	trace := fmt.Sprint(probe["trace"])
	for _, in := range injections {
		if !strings.Contains(trace, in.note) {
			t.Errorf("the trace does not say %q:\n%s", in.note, trace)
		}
	}
	// The wire: after each injected segment arrived, one ACK of ours at
	// our snd.nxt and rcv.nxt for those that draw a challenge, none for
	// the others; never a RST before our FIN.
	var p wire.Packet
	k := -1 // the injection whose answer we await
	answers := make([]int, len(injections))
	for _, c := range pkts {
		if wire.Parse(c.Data, &p) != nil || p.Proto != wire.ProtocolTCP || (p.DstPort != sport && p.SrcPort != sport) {
			continue
		}
		if p.SrcPort == portEOF {
			for j, in := range injections {
				if p.Flags == in.seg.Flags && p.Seq == in.seg.Seq {
					k = j
				}
			}
			continue
		}
		if p.Flags&wire.FlagFin != 0 {
			break
		}
		if p.Flags&wire.FlagRst != 0 {
			t.Errorf("we reset the connection: %+v", p)
		}
		if k >= 0 && p.Flags == wire.FlagAck && p.Seq == ourSeq && p.Ack == rcvNxt {
			answers[k]++
		}
	}
	for j, in := range injections {
		if want := b2i(in.challenge); answers[j] != want {
			t.Errorf("%s: %d ACKs of ours in answer, want %d", in.note, answers[j], want)
		}
	}
}

// parseLines parses JSON Lines.
func parseLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("bad JSON line %q: %v", line, err)
		}
		lines = append(lines, m)
	}
	return lines
}
