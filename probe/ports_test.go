package probe

import (
	"net/netip"
	"testing"
	"time"

	"github.com/synprobe/synprobe/rawsock/wire"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// tsAt is a TSval that grows by one a millisecond, as ours do.
func tsAt(t time.Time) uint32 { return 1000 + uint32(t.Sub(t0).Milliseconds()) }

func take(t *testing.T, pp *PortPool, now time.Time) (uint16, bool) {
	t.Helper()
	return pp.Take(now, tsAt(now), true)
}

// TestPortPoolRotation: without tracking, ports come in turn, sorted and
// without duplicates, and none is ever busy.
func TestPortPoolRotation(t *testing.T) {
	pp := NewPortPool([]uint16{5, 3, 9, 3}, false)
	var got []uint16
	for range 7 {
		p, ok := take(t, pp, t0)
		if !ok {
			t.Fatal("no port")
		}
		got = append(got, p)
	}
	if want := []uint16{3, 5, 9, 3, 5, 9, 3}; !equal(got, want) {
		t.Errorf("ports %v, want %v", got, want)
	}
}

func equal(a, b []uint16) bool {
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

// TestPortPoolTracking: a port is busy until released; one released
// without a TIME_WAIT is free at once; one in TIME_WAIT cools for a
// minute, and free ports go first.
func TestPortPoolTracking(t *testing.T) {
	pp := NewPortPool([]uint16{100, 101}, true)
	a, _ := take(t, pp, t0)
	b, _ := take(t, pp, t0)
	if a != 100 || b != 101 {
		t.Fatalf("ports %d, %d", a, b)
	}
	if _, ok := take(t, pp, t0); ok || pp.Exhausted() != 1 {
		t.Fatal("a third port from two busy ones")
	}
	pp.Release(100, PortEnd{At: t0}) // RST: nothing lingers
	if p, ok := take(t, pp, t0); !ok || p != 100 {
		t.Fatalf("after a release without TIME_WAIT: %d, %v", p, ok)
	}
	// 101 closes into TIME_WAIT with timestamps, 100 without one.
	pp.Release(101, PortEnd{At: t0, TimeWait: true, Timestamps: true, TSval: tsAt(t0)})
	pp.Release(100, PortEnd{At: t0.Add(time.Second)})
	for range 3 {
		if p, ok := take(t, pp, t0.Add(2*time.Second)); !ok || p != 100 {
			t.Fatalf("the free port should go before the cooling one: %d, %v", p, ok)
		}
		pp.Release(100, PortEnd{At: t0.Add(2 * time.Second)})
	}
	if pp.Reused() != 0 {
		t.Errorf("%d reuses", pp.Reused())
	}
}

// TestPortPoolReuse: with every port busy or cooling, a cooling port is
// reused only when its connection negotiated timestamps, the quiet time
// has passed and the new TSval is greater; the one cooling longest goes
// first; without timestamps only the minute frees it.
func TestPortPoolReuse(t *testing.T) {
	pp := NewPortPool([]uint16{1, 2, 3}, true)
	for range 3 {
		take(t, pp, t0)
	}
	pp.Release(1, PortEnd{At: t0.Add(200 * time.Millisecond), TimeWait: true, Timestamps: true, TSval: tsAt(t0.Add(200 * time.Millisecond))})
	pp.Release(2, PortEnd{At: t0.Add(100 * time.Millisecond), TimeWait: true, Timestamps: true, TSval: tsAt(t0.Add(100 * time.Millisecond))})
	pp.Release(3, PortEnd{At: t0, TimeWait: true, Timestamps: false})
	if _, ok := take(t, pp, t0.Add(900*time.Millisecond)); ok {
		t.Fatal("a port reused before a second of quiet")
	}
	now := t0.Add(1150 * time.Millisecond)
	if _, ok := pp.Take(now, tsAt(t0), true); ok {
		t.Fatal("a port reused with an older TSval")
	}
	if _, ok := pp.Take(now, tsAt(now), false); ok {
		t.Fatal("a port reused by a SYN without timestamps")
	}
	if p, ok := take(t, pp, now); !ok || p != 2 {
		t.Fatalf("reuse at 1.15 s: %d, %v; want port 2, closed longest ago", p, ok)
	}
	if p, ok := take(t, pp, now); ok {
		t.Fatalf("port %d reused: 1 was quiet for 0.95 s, 3 had no timestamps", p)
	}
	if p, ok := take(t, pp, t0.Add(1300*time.Millisecond)); !ok || p != 1 {
		t.Fatalf("reuse at 1.3 s: %d, %v; want 1", p, ok)
	}
	if p, ok := take(t, pp, t0.Add(59*time.Second)); ok {
		t.Fatalf("port %d reused within a minute of a TIME_WAIT without timestamps", p)
	}
	if p, ok := take(t, pp, t0.Add(60*time.Second)); !ok || p != 3 {
		t.Fatalf("after the minute: %d, %v; want 3", p, ok)
	}
	if pp.Reused() != 2 {
		t.Errorf("%d reuses, want 2", pp.Reused())
	}
	// A connection without timestamps on a port that still cools from one
	// with them: the port waits for the later minute.
	pp.Release(2, PortEnd{At: t0.Add(61 * time.Second), TimeWait: true, Timestamps: false})
	if p, ok := take(t, pp, t0.Add(100*time.Second)); ok {
		t.Fatalf("port %d reused, but its last TIME_WAIT had no timestamps", p)
	}
	if p, ok := take(t, pp, t0.Add(121*time.Second)); !ok || p != 2 {
		t.Fatalf("%d, %v; want 2", p, ok)
	}
}

// TestPortPoolQuietRTT: on a long path the quiet time is four RTTs plus
// 200 ms.
func TestPortPoolQuietRTT(t *testing.T) {
	pp := NewPortPool([]uint16{7}, true)
	take(t, pp, t0)
	pp.Release(7, PortEnd{At: t0, TimeWait: true, Timestamps: true, TSval: tsAt(t0), RTT: 500 * time.Millisecond})
	if _, ok := take(t, pp, t0.Add(2100*time.Millisecond)); ok {
		t.Fatal("reused 2.1 s after the close with a 500 ms RTT")
	}
	if _, ok := take(t, pp, t0.Add(2200*time.Millisecond)); !ok {
		t.Fatal("not reused after 4 RTTs + 200 ms")
	}
}

// TestTimeWaitPortReuse drives a one-port fin-mode Prober on a fake
// clock: after a 3-way close with timestamps the port lingers in TIME_WAIT;
// a probe within the quiet second finds no port, one after it reuses the
// port with a greater TSval and the old connection is forgotten. Without
// timestamps the port stays taken until its minute is over.
func TestTimeWaitPortReuse(t *testing.T) {
	for _, ts := range []bool{true, false} {
		d, s := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.1")
		c := &recConn{}
		cookie, _ := wire.NewRandomCookie()
		now := t0
		var results []Result
		p, err := New(c, Config{Targets: []Target{{Addr: d, Src: s, Port: 80}}, Mode: ModeFIN,
			Options: &wire.SYNOptions{MSS: 1460, Timestamps: true}, PortLo: 61000, PortHi: 61000,
			Cookie: cookie, Now: func() time.Time { return now },
			OnResult: func(r *Result) { results = append(results, *r) }})
		if err != nil {
			t.Fatal(err)
		}
		reply := func(syn wire.Packet, flags wire.TCPFlags, seq, ack uint32) {
			var opts []byte
			if ts {
				opts = []byte{1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 0}
			}
			b := make([]byte, 128)
			n, _ := (&wire.Segment{Src: d, Dst: s, TTL: 64, SrcPort: 80, DstPort: syn.SrcPort, Seq: seq, Ack: ack,
				Flags: flags, Window: 1000, Options: opts}).Build(b)
			var in inbound
			if err := wire.Parse(b[:n], &in.pkt); err != nil {
				t.Fatal(err)
			}
			in.user = now
			p.handle(&in)
		}
		closeOne := func(seq int) wire.Packet {
			t.Helper()
			before := len(c.sent)
			p.sendSYN(p.main, 0, seq, now)
			if len(c.sent) != before+1 {
				t.Fatalf("probe %d: no SYN (%+v)", seq, results[len(results)-1].Err)
			}
			syn := c.sent[before]
			synack := wire.SYNOptions{MSS: 1460}
			if ts {
				synack.Timestamps = true
			}
			b := make([]byte, 128)
			var in inbound
			n, _ := (&wire.Segment{Src: d, Dst: s, TTL: 64, SrcPort: 80, DstPort: syn.SrcPort, Seq: 9000, Ack: syn.Seq + 1,
				Flags: wire.FlagSyn | wire.FlagAck, Window: 1000, Options: synackOpts(synack)}).Build(b)
			wire.Parse(b[:n], &in.pkt)
			in.user = now
			p.handle(&in)
			reply(syn, wire.FlagFin|wire.FlagAck, 9001, syn.Seq+2)
			// A 3-way verdict waits up to 10 ms for an ACK reordered
			// behind the FIN.
			now = now.Add(20 * time.Millisecond)
			p.expire(now)
			if len(results) == 0 {
				t.Fatalf("probe %d: no result", seq)
			}
			if r := results[len(results)-1]; r.Close == nil || r.Close.Pattern != Close3Way {
				t.Fatalf("probe %d: %+v", seq, r)
			}
			return syn
		}
		first := closeOne(0)
		now = now.Add(500 * time.Millisecond)
		p.sendSYN(p.main, 0, 1, now)
		if r := results[len(results)-1]; r.State != StateError {
			t.Fatalf("ts=%v: a probe 0.5 s after the close got a port: %+v", ts, r)
		}
		now = now.Add(time.Second)
		if !ts {
			p.sendSYN(p.main, 0, 2, now)
			if r := results[len(results)-1]; r.State != StateError {
				t.Fatalf("without timestamps, the port was reused 1.5 s after the close: %+v", r)
			}
			now = now.Add(59 * time.Second)
		}
		second := closeOne(3)
		if second.SrcPort != first.SrcPort || !second.Options.Timestamps || int32(second.Options.TSVal-first.Options.TSVal) <= 0 {
			t.Errorf("ts=%v: second SYN from %d TSval %d, first from %d TSval %d", ts, second.SrcPort, second.Options.TSVal, first.SrcPort, first.Options.TSVal)
		}
		pool := p.ports.(*PortPool)
		if want := map[bool]uint64{true: 1, false: 0}[ts]; pool.Reused() != want || p.tab.n != 1 {
			t.Errorf("ts=%v: %d reuses (want %d), %d probes in the table (want the last one)", ts, pool.Reused(), want, p.tab.n)
		}
	}
}

func synackOpts(o wire.SYNOptions) []byte {
	b := make([]byte, wire.MaxOptionsSize)
	return b[:o.Encode(b)]
}
