package probe

import (
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// lastConn keeps the last packet sent, without allocating.
type lastConn struct {
	buf [256]byte
	n   int
}

func (c *lastConn) Send(pkt []byte, id uint32) error               { c.n = copy(c.buf[:], pkt); return nil }
func (c *lastConn) Recv([]byte, time.Time) (int, time.Time, error) { select {} }
func (c *lastConn) Wake()                                          {}
func (c *lastConn) TxTime(id uint32, v6 bool) (time.Time, bool)    { return time.Unix(0, int64(id)), true }

// newAllocProber returns a prober of one target over c whose probes never
// time out, for driving sendSYN and handle by hand.
func newAllocProber(tb testing.TB, c Conn, dst, src netip.Addr) *Prober {
	cookie, _ := wire.NewRandomCookie()
	p, err := New(c, Config{
		Targets: []Target{{Addr: dst, Src: src, Port: 443}},
		PortLo:  61000, PortHi: 61511,
		Options: &wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true},
		Timeout: time.Hour,
		Cookie:  cookie,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestZeroAllocs: sending a probe and matching its reply allocate nothing,
// amortised allocations included: after a warm-up, 100,000 probes (whose
// timeout never comes, so that every answered probe leaves a stale timer
// behind) make no heap allocation. (testing.AllocsPerRun would round 45
// allocations in 100,000 runs down to 0.)
func TestZeroAllocs(t *testing.T) {
	for _, dst := range []string{"198.18.0.2", "2001:db8::2"} {
		d := netip.MustParseAddr(dst)
		s := netip.MustParseAddr("198.18.0.1")
		if d.Is6() {
			s = netip.MustParseAddr("2001:db8::1")
		}
		c := &lastConn{}
		p := newAllocProber(t, c, d, s)
		now := time.Now()
		reply := make([]byte, 128)
		var in inbound
		var syn wire.Packet
		seq := 0
		one := func() {
			p.sendSYN(p.main, 0, seq, now)
			seq++
			if err := wire.Parse(c.buf[:c.n], &syn); err != nil {
				t.Fatal(err)
			}
			seg := wire.Segment{Src: d, Dst: s, TTL: 64, SrcPort: 443, DstPort: syn.SrcPort,
				Ack: syn.Seq + 1, Flags: wire.FlagSyn | wire.FlagAck, Window: 1}
			n, _ := seg.Build(reply)
			if err := wire.Parse(reply[:n], &in.pkt); err != nil {
				t.Fatal(err)
			}
			in.rx = time.Unix(0, int64(p.nextID-1)).Add(40 * time.Microsecond) // the RTT: 40 µs
			p.handle(&in)
		}
		// Warm up past the first compaction of the timers, and past the
		// RTT histogram's widening of its bucket's counter at 65,536
		// (the next is at 2^32: a bounded, logarithmic cost).
		const warm, probes = 70000, 100000
		// Before the timers were compacted: 45 allocations, 23 MB.
		if n, b := allocsOf(warm, probes, one); n > 10 || b > 64<<10 {
			t.Errorf("%s: %d probes made %d allocations (%d bytes), want none", dst, probes, n, b)
		}
		if s := p.Stats(0); s.Open != warm+probes || p.tab.n != 0 || len(p.timers) > 2*tableSize {
			t.Errorf("%s: %d open, %d in flight, %d timers; want every probe matched", dst, s.Open, p.tab.n, len(p.timers))
		}
	}
}

// allocsOf calls one warm times, then n times, and returns the heap
// allocations (count and bytes) the process made during the n. MemStats
// count the whole process: the runtime's background work now and then
// allocates a few objects of its own (seen: 7, 5.5 KB), so callers allow
// a few; what matters is that nothing grows with the calls.
// testing.AllocsPerRun would round 45 allocations in 100,000 runs down
// to 0.
func allocsOf(warm, n int, one func()) (mallocs, bytes uint64) {
	for range warm {
		one()
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range n {
		one()
	}
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs, after.TotalAlloc - before.TotalAlloc
}

// BenchmarkProbe measures one probe through the engine: build and send the
// SYN, then match its SYN-ACK and send the RST.
func BenchmarkProbe(b *testing.B) {
	d, s := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.1")
	c := &lastConn{}
	p := newAllocProber(b, c, d, s)
	now := time.Now()
	reply := make([]byte, 128)
	var in inbound
	var syn wire.Packet
	b.ReportAllocs()
	for i := range b.N {
		p.sendSYN(p.main, 0, i, now)
		wire.Parse(c.buf[:c.n], &syn)
		seg := wire.Segment{Src: d, Dst: s, TTL: 64, SrcPort: 443, DstPort: syn.SrcPort,
			Ack: syn.Seq + 1, Flags: wire.FlagSyn | wire.FlagAck, Window: 1}
		n, _ := seg.Build(reply)
		wire.Parse(reply[:n], &in.pkt)
		p.handle(&in)
	}
}

// TestZeroAllocsFIN: a whole fin-mode exchange with data (SYN, SYN-ACK,
// ACK, data, FIN, the peer's FIN+ACK, our last ACK, the report and the end
// of TIME_WAIT) allocates nothing once connection blocks are recycled,
// amortised allocations included, counted as TestZeroAllocs counts them
// (testing.AllocsPerRun rounds a few in 500 runs down to 0).
func TestZeroAllocsFIN(t *testing.T) {
	d, s := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.1")
	c := &lastConn{}
	clock := time.Unix(1e9, 0)
	cookie, _ := wire.NewRandomCookie()
	p, err := New(c, Config{
		Targets: []Target{{Addr: d, Src: s, Port: 80}},
		PortLo:  61000, PortHi: 61511,
		Options: &wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true},
		Timeout: time.Hour, Mode: ModeFIN, Data: make([]byte, 100),
		Cookie: cookie,
		Now:    func() time.Time { return clock },
	})
	if err != nil {
		t.Fatal(err)
	}
	reply := make([]byte, 128)
	var in inbound
	var out wire.Packet
	deliver := func(flags wire.TCPFlags, seq, ack uint32) {
		seg := wire.Segment{Src: d, Dst: s, TTL: 64, SrcPort: 80, DstPort: out.SrcPort,
			Seq: seq, Ack: ack, Flags: flags, Window: 1000}
		n, _ := seg.Build(reply)
		if err := wire.Parse(reply[:n], &in.pkt); err != nil {
			t.Fatal(err)
		}
		in.rx, in.user = clock, clock
		p.handle(&in)
	}
	const irs = 7000
	seq := 0
	one := func() {
		p.sendSYN(p.main, 0, seq, clock)
		seq++
		wire.Parse(c.buf[:c.n], &out)
		isn := out.Seq
		deliver(wire.FlagSyn|wire.FlagAck, irs, isn+1)
		wire.Parse(c.buf[:c.n], &out)
		if out.Flags != wire.FlagFin|wire.FlagAck || out.Seq != isn+101 {
			t.Fatalf("after the SYN-ACK we sent %v seq %d", out.Flags, out.Seq-isn)
		}
		deliver(wire.FlagFin|wire.FlagAck, irs+1, isn+102)
		clock = clock.Add(20 * time.Millisecond) // the 3-way report's grace
		p.expire(clock)
		clock = clock.Add(time.Minute + time.Second) // TIME_WAIT over
		p.expire(clock)
	}
	const warm, probes = 5000, 20000
	if n, b := allocsOf(warm, probes, one); n > 10 || b > 64<<10 {
		t.Errorf("%d fin-mode exchanges made %d allocations (%d bytes), want none", probes, n, b)
	}
	const all = warm + probes
	if st := p.Stats(0); st.Open != all || st.Patterns[Close3Way] != all || st.DataAck.N != all || p.tab.n != 0 {
		t.Errorf("%d open, %d 3-way, %d data acks, %d in flight", st.Open, st.Patterns[Close3Way], st.DataAck.N, p.tab.n)
	}
}
