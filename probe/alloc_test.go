package probe

import (
	"net/netip"
	"testing"
	"time"

	"github.com/synprobe/synprobe/rawsock"
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
	cookie, _ := rawsock.NewRandomCookie()
	p, err := New(c, Config{
		Targets: []Target{{Addr: dst, Src: src, Port: 443}},
		PortLo:  61000, PortHi: 61511,
		Options: &rawsock.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true},
		Timeout: time.Hour,
		Cookie:  cookie,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestZeroAllocs: sending a probe and matching its reply allocate nothing.
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
		seq := 0
		allocs := testing.AllocsPerRun(1000, func() {
			p.sendSYN(0, seq, now)
			seq++
			var syn rawsock.Packet
			if err := rawsock.Parse(c.buf[:c.n], &syn); err != nil {
				t.Fatal(err)
			}
			seg := rawsock.Segment{Src: d, Dst: s, TTL: 64, SrcPort: 443, DstPort: syn.SrcPort,
				Ack: syn.Seq + 1, Flags: rawsock.FlagSyn | rawsock.FlagAck, Window: 1}
			n, _ := seg.Build(reply)
			if err := rawsock.Parse(reply[:n], &in.pkt); err != nil {
				t.Fatal(err)
			}
			in.rx = now
			p.handle(&in)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per probe, want 0", dst, allocs)
		}
		if s := p.Stats(0); s.Open != 1001 || p.tab.n != 0 {
			t.Errorf("%s: %d open, %d in flight; want every probe matched", dst, s.Open, p.tab.n)
		}
	}
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
	var syn rawsock.Packet
	b.ReportAllocs()
	for i := range b.N {
		p.sendSYN(0, i, now)
		rawsock.Parse(c.buf[:c.n], &syn)
		seg := rawsock.Segment{Src: d, Dst: s, TTL: 64, SrcPort: 443, DstPort: syn.SrcPort,
			Ack: syn.Seq + 1, Flags: rawsock.FlagSyn | rawsock.FlagAck, Window: 1}
		n, _ := seg.Build(reply)
		rawsock.Parse(reply[:n], &in.pkt)
		p.handle(&in)
	}
}
