package scan_test

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/probe/scan"
	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// TestScanRecorder: a scan records every probe it sends (retries too)
// with the transmit stamp its RTTs take, every RST, and every packet of
// its ring; the client records what its sockets read (synprobe gives
// both the capture file). Each kernel-clock RTT is the recorded answer's
// stamp less the recorded probe's.
func TestScanRecorder(t *testing.T) {
	for _, ring := range []bool{false, true} {
		t.Run(map[bool]string{false: "sockets", true: "ring"}[ring], func(t *testing.T) { testScanRecorder(t, ring) })
	}
}

func testScanRecorder(t *testing.T, withRing bool) {
	l := &lab{seen: map[netip.AddrPort]int{}, probe: map[netip.AddrPort]int{}}
	c := probetest.NewConn(func(p *wire.Packet, b []byte, id uint32) []probetest.Reply {
		rs := l.respond(p, b, id)
		for i := range rs {
			rs[i].After = time.Duration(30+i) * time.Microsecond
		}
		return rs
	})
	spec, err := scan.ParseSpec("198.18.1.0/28:22,80-83")
	if err != nil {
		t.Fatal(err)
	}
	rec := &probetest.Recorder{}
	var results []probe.ScanResult
	w := scan.Wiring{Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61999}
	if withRing {
		w.Recv = &fakeRing{c: c, buf: make([]byte, rawsock.MaxPacketSize)}
	}
	sum, err := scan.ScanConn(context.Background(), c, scan.Config{
		Set:     mustSet(t, &spec),
		Retries: 2, Timeout: 100 * time.Millisecond, Senders: 2, Recorder: rec,
		OnResult: func(r *probe.ScanResult, _ scan.Origin) { results = append(results, *r) },
	}, w)
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	type tuple struct {
		remote netip.AddrPort
		sport  uint16
	}
	syns := map[tuple]probetest.Recorded{}
	answers := map[tuple]probetest.Recorded{}
	var nSyn, nRST, nRecv, synacks uint64
	for _, e := range rec.Events() {
		var p wire.Packet
		if err := wire.Parse(e.Packet, &p); err != nil {
			t.Fatalf("recorded an unparsable packet: %v", err)
		}
		switch {
		case e.Sent && p.Flags == wire.FlagSyn:
			nSyn++
			if e.Tx.IsZero() {
				t.Errorf("probe to %v:%d recorded without its stamp", p.Dst, p.DstPort)
			}
			syns[tuple{netip.AddrPortFrom(p.Dst, p.DstPort), p.SrcPort}] = e
		case e.Sent && p.Flags == wire.FlagRst:
			nRST++
		case e.Sent:
			t.Errorf("recorded a sent packet with flags %v", p.Flags)
		case p.IsICMP():
			nRecv++
			answers[tuple{netip.AddrPortFrom(p.Quoted.Dst, p.Quoted.DstPort), p.Quoted.SrcPort}] = e
		default:
			nRecv++
			if p.Flags&wire.FlagSyn != 0 {
				synacks++
			}
			k := tuple{netip.AddrPortFrom(p.Src, p.SrcPort), p.DstPort}
			if _, ok := answers[k]; !ok {
				answers[k] = e
			}
		}
	}
	if nSyn != sum.Sent || nRST != synacks || nRecv < sum.Open+sum.Closed+sum.Duplicates {
		t.Errorf("recorded %d probes, %d RSTs, %d packets read; the scan sent %d probes, read %d SYN-ACKs, %d answers and %d duplicates",
			nSyn, nRST, nRecv, sum.Sent, synacks, sum.Open+sum.Closed, sum.Duplicates)
	}
	timed := 0
	for _, r := range results {
		if !r.Timed() || !r.KernelClock {
			continue
		}
		k := tuple{r.AddrPort(), r.SrcPort}
		s, a := syns[k], answers[k]
		if got := a.Rx.Sub(s.Tx); got != r.RTT {
			t.Errorf("%v from %d: RTT %v, recorded %v", r.AddrPort(), r.SrcPort, r.RTT, got)
		}
		timed++
	}
	if timed == 0 {
		t.Error("no kernel-clock RTT")
	}
}

// TestScanDiscardsStaleStamps: a scan on its client's sockets starts by
// forgetting the transmit stamps that wait there unread (an earlier
// scan's last RSTs'), whose ids it gives again: none of its packets is
// recorded with a stamp from before it began.
func TestScanDiscardsStaleStamps(t *testing.T) {
	l := &lab{seen: map[netip.AddrPort]int{}, probe: map[netip.AddrPort]int{}}
	c := probetest.NewConn(l.respond)
	// A stamped packet with the id of the scan's first RST, stamped an
	// hour ago, to a port nobody answers.
	stale := time.Now().Add(-time.Hour)
	c.Clock = func() time.Time { return stale }
	b := rawsock.NewBatch(1)
	n, err := (&wire.Segment{Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.1.1"), TTL: 64, SrcPort: 61000, DstPort: 9, Flags: wire.FlagSyn}).Build(b.Slot())
	if err != nil || !b.Commit(n) {
		t.Fatal(err)
	}
	b.SetID(0, rawsock.BulkStamp|1<<30|1)
	if _, err := c.SendBatch(b); err != nil {
		t.Fatal(err)
	}
	c.Clock = nil
	spec, err := scan.ParseSpec("198.18.1.0/28:22")
	if err != nil {
		t.Fatal(err)
	}
	rec := &probetest.Recorder{}
	start := time.Now()
	sum, err := scan.ScanConn(context.Background(), c, scan.Config{Set: mustSet(t, &spec), Timeout: 100 * time.Millisecond, Recorder: rec},
		scan.Wiring{Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61999})
	c.Close()
	if err != nil || sum.Open != 16 {
		t.Fatalf("%+v, %v", sum, err)
	}
	rsts := 0
	for _, e := range rec.Events() {
		var p wire.Packet
		if !e.Sent || wire.Parse(e.Packet, &p) != nil {
			continue
		}
		if p.Flags == wire.FlagRst {
			rsts++
		}
		if !e.Tx.IsZero() && e.Tx.Before(start) {
			t.Errorf("%v to %v:%d recorded with a stamp from before the scan (%v)", p.Flags, p.Dst, p.DstPort, e.Tx)
		}
	}
	if rsts == 0 {
		t.Error("no RST recorded")
	}
}

// TestScanOnePortTimed: a scan from one source port (synprobe scan
// --sport) times every answer that came before a retry could be sent:
// the port cannot name the pass then, but there was only one. Half the
// pairs answer the first SYN, half only the second, whose answers are
// not timed (either pass's probe may have drawn them).
func TestScanOnePortTimed(t *testing.T) {
	const after = 50 * time.Microsecond
	var mu sync.Mutex
	seen := map[netip.Addr]int{}
	c := probetest.NewConn(func(p *wire.Packet, b []byte, id uint32) []probetest.Reply {
		if p.Flags != wire.FlagSyn {
			return nil
		}
		mu.Lock()
		seen[p.Dst]++
		n := seen[p.Dst]
		mu.Unlock()
		if p.Dst.As4()[3]%2 == 1 && n == 1 {
			return nil // odd hosts answer the retry
		}
		return []probetest.Reply{{Packet: probetest.SYNACK(p, wire.SYNOptions{MSS: 1460, WScale: -1}), After: after}}
	})
	spec, err := scan.ParseSpec("198.18.1.0/28:22")
	if err != nil {
		t.Fatal(err)
	}
	var results []probe.ScanResult
	sum, err := scan.ScanConn(context.Background(), c, scan.Config{
		Set: mustSet(t, &spec), Retries: 2, Timeout: 50 * time.Millisecond,
		OnResult: func(r *probe.ScanResult, _ scan.Origin) { results = append(results, *r) },
	}, scan.Wiring{Src4: netip.MustParseAddr("198.18.0.1"), PortLo: 61000, PortHi: 61000})
	c.Close()
	if err != nil || sum.Open != 16 {
		t.Fatalf("%+v, %v", sum, err)
	}
	for _, r := range results {
		odd := r.Addr.As4()[3]%2 == 1
		switch {
		case !odd && (!r.Timed() || !r.KernelClock || r.RTT != after):
			t.Errorf("%v, answered in the first pass: timed %v, kernel clock %v, RTT %v, want %v", r.Addr, r.Timed(), r.KernelClock, r.RTT, after)
		case odd && r.Timed():
			t.Errorf("%v, answered after a retry from the same port: timed (RTT %v), but either probe may have drawn the answer", r.Addr, r.RTT)
		}
	}
}
