package probe_test

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// receiver is a peer that takes our data in order, acknowledges every
// segment with the window its window function gives, and answers our FIN
// with FIN+ACK. Everything it received is in got.
type receiver struct {
	peer
	data     []byte
	segs     []int // payload sizes, in order sent
	finAt    int   // bytes it had when our FIN came, -1 before
	window   func(r *receiver, p *wire.Packet) uint16
	drop     func(r *receiver, p *wire.Packet) bool // lose this segment of ours
	probes   int                                    // window probes seen
	sawZero  bool
	badAfter bool // data or FIN sent into a zero window
}

func newReceiver(opts *wire.SYNOptions, window func(r *receiver, p *wire.Packet) uint16) *receiver {
	r := &receiver{finAt: -1, window: window}
	r.synOpts = opts
	r.peer.script = r.handle
	return r
}

func (r *receiver) win(p *wire.Packet) uint16 {
	if r.window == nil {
		return 65000
	}
	return r.window(r, p)
}

func (r *receiver) ack(p *wire.Packet, flags wire.TCPFlags) probetest.Reply {
	w := r.win(p)
	b := probetest.Build(wire.Segment{
		Src: p.Dst, Dst: p.Src, TTL: 64, SrcPort: p.DstPort, DstPort: p.SrcPort,
		Seq: r.sndNxt, Ack: r.rcvNxt, Flags: flags, Window: w,
	})
	if flags&wire.FlagFin != 0 {
		r.sndNxt++
	}
	return probetest.Reply{Packet: b, After: 30 * time.Microsecond}
}

func (r *receiver) handle(pr *peer, p *wire.Packet) []probetest.Reply {
	if r.drop != nil && r.drop(r, p) {
		return nil
	}
	if r.sawZero && (p.PayloadLen > 0 && p.Seq == r.rcvNxt || isFIN(p)) && r.win(p) == 0 {
		r.badAfter = true
	}
	switch {
	case p.PayloadLen == 0 && !isFIN(p) && p.Seq == r.rcvNxt-1:
		r.probes++ // a window probe: answer with the window
		return []probetest.Reply{r.ack(p, wire.FlagAck)}
	case p.PayloadLen > 0:
		r.segs = append(r.segs, p.PayloadLen)
		if p.Seq == r.rcvNxt {
			r.rcvNxt += uint32(p.PayloadLen)
			r.data = append(r.data, make([]byte, p.PayloadLen)...)
		}
		return []probetest.Reply{r.ack(p, wire.FlagAck)}
	case isFIN(p):
		if p.Seq == r.rcvNxt {
			r.finAt = len(r.data)
			r.rcvNxt++
			return []probetest.Reply{r.ack(p, wire.FlagFin|wire.FlagAck)}
		}
		return []probetest.Reply{r.ack(p, wire.FlagAck)}
	}
	return nil
}

// respond returns the receiver's responder, its SYN-ACK advertising
// window w.
func (r *receiver) respond(w int) probetest.Responder {
	r.peer.window = w
	if w == 0 {
		r.peer.window = -1
	}
	return r.peer.respond
}

// runData runs one fin-mode probe with data against r through c (nil: a
// plain fake) and returns the close report.
func runData(t *testing.T, r *receiver, c probe.Conn, data []byte, cfg probe.Config) probe.CloseReport {
	t.Helper()
	r.peer.t = t
	if c == nil {
		c = probetest.NewConn(r.peer.respond)
	}
	cookie, _ := wire.NewRandomCookie()
	var reports []probe.CloseReport
	cfg.Targets = []probe.Target{target(dst4, 80)}
	cfg.Count, cfg.Mode = 1, probe.ModeFIN
	cfg.PortLo, cfg.PortHi = 61000, 61000
	cfg.Options = &linuxO
	cfg.Cookie = cookie
	cfg.Data = data
	if cfg.CloseTimeout == 0 {
		cfg.CloseTimeout = 2 * time.Second
	}
	cfg.OnResult = func(res *probe.Result) {
		if res.Close != nil {
			reports = append(reports, *res.Close)
		}
	}
	p, err := probe.New(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(reports) != 1 {
		t.Fatalf("%d close reports", len(reports))
	}
	return reports[0]
}

var data64k = bytes.Repeat([]byte("synprobe"), 8192)

// TestDataBeforeFIN: 64 KiB through a 65,000-byte window goes out whole
// before our FIN, in segments of the peer's MSS less our timestamps option
// (Linux's sizing), or 536 bytes when the SYN-ACK has no MSS.
func TestDataBeforeFIN(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts *wire.SYNOptions
		seg  int
	}{
		{"MSS 1460 with timestamps", &wire.SYNOptions{MSS: 1460, WScale: -1, Timestamps: true, TSVal: 5}, 1448},
		{"MSS 1460 without timestamps", &wire.SYNOptions{MSS: 1460, WScale: -1}, 1460},
		{"no MSS option", nil, 536},
		{"MSS 1: Linux's floor of 48, less timestamps", &wire.SYNOptions{MSS: 1, WScale: -1, Timestamps: true}, 36},
		{"MSS 1 without timestamps", &wire.SYNOptions{MSS: 1, WScale: -1}, 48},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newReceiver(tt.opts, nil)
			c := runData(t, r, nil, data64k, probe.Config{})
			if len(r.data) != len(data64k) || r.finAt != len(data64k) {
				t.Errorf("the peer got %d of %d bytes, our FIN after %d", len(r.data), len(data64k), r.finAt)
			}
			for i, n := range r.segs {
				if n > tt.seg || (n < tt.seg && i < len(r.segs)-1 && n != len(data64k)%tt.seg) {
					t.Errorf("segment %d: %d bytes, want %d", i, n, tt.seg)
					break
				}
			}
			if c.Pattern != probe.Close3Way || c.DataAcked != len(data64k) || c.DataBytes != len(data64k) || c.SegmentSize != tt.seg ||
				!c.HasDataAck || c.SendErrors != 0 {
				t.Errorf("close %+v", c)
			}
			// Nothing is lost here, but the RTO runs on real timers: a
			// test process starved of CPU for 200 ms (two busy CPUs)
			// sends data again, which is no fault.
			if c.DataRetransmits != 0 {
				t.Logf("%d data retransmissions (a starved test process?)", c.DataRetransmits)
			}
		})
	}
}

// TestZeroWindow: a peer whose window is closed gets window probes, no
// data and no FIN, until the window opens; if it never does within the
// close timeout, the result says so.
func TestZeroWindow(t *testing.T) {
	t.Run("opens after 2 probes", func(t *testing.T) {
		r := newReceiver(nil, func(r *receiver, p *wire.Packet) uint16 {
			if r.probes < 2 {
				r.sawZero = true
				return 0
			}
			return 65000
		})
		c := runData(t, r, probetest.NewConn(r.respond(0)), data64k[:5000], probe.Config{})
		if r.badAfter || len(r.data) != 5000 || r.finAt != 5000 || c.Pattern != probe.Close3Way || c.WindowProbes != 2 {
			t.Errorf("into a zero window: %v; got %d bytes, FIN after %d; close %+v", r.badAfter, len(r.data), r.finAt, c)
		}
	})
	t.Run("never opens", func(t *testing.T) {
		r := newReceiver(nil, func(r *receiver, p *wire.Packet) uint16 { r.sawZero = true; return 0 })
		c := runData(t, r, probetest.NewConn(r.respond(0)), data64k[:5000], probe.Config{CloseTimeout: 700 * time.Millisecond})
		if r.badAfter || len(r.data) != 0 || r.finAt != -1 || c.Pattern != probe.CloseZeroWindow || c.DataAcked != 0 || c.WindowProbes < 1 {
			t.Errorf("got %d bytes, FIN after %d; close %+v", len(r.data), r.finAt, c)
		}
		if last := r.got[len(r.got)-1]; last.Flags != wire.FlagRst|wire.FlagAck {
			t.Errorf("last segment %v, want our RST", last.Flags)
		}
	})
	t.Run("closes after the first window", func(t *testing.T) {
		// 64 KiB into a window of 8000 bytes that the peer stops opening.
		r := newReceiver(nil, func(r *receiver, p *wire.Packet) uint16 {
			if len(r.data) >= 8000 {
				r.sawZero = true
				return 0
			}
			return uint16(8000 - len(r.data))
		})
		c := runData(t, r, probetest.NewConn(r.respond(8000)), data64k, probe.Config{CloseTimeout: 700 * time.Millisecond})
		if r.badAfter || len(r.data) != 8000 || r.finAt != -1 || c.Pattern != probe.CloseZeroWindow || c.DataAcked != 8000 {
			t.Errorf("got %d bytes, FIN after %d; close %+v", len(r.data), r.finAt, c)
		}
	})
}

// failConn fails sends as a kernel would: EMSGSIZE above mtu, and the
// errors in fail for the sends they name (by count of data segments).
type failConn struct {
	*probetest.Conn
	mtu      int // 0: no limit
	reported int // what PathMTU says; 0: an error; -1: an error until a send was refused, then mtu
	asked    int
	fail     map[int]error // n-th data segment (from 1) -> its error
	refused  bool
	data     int
}

func (c *failConn) Send(pkt []byte, id uint32) error {
	var p wire.Packet
	if err := wire.Parse(pkt, &p); err == nil && p.PayloadLen > 0 {
		c.data++
		if err := c.fail[c.data]; err != nil {
			return err
		}
	}
	if c.mtu > 0 && len(pkt) > c.mtu {
		c.refused = true
		return &net.OpError{Op: "sendmsg", Net: "rawsock", Err: os.NewSyscallError("sendmsg", syscall.EMSGSIZE)}
	}
	return c.Conn.Send(pkt, id)
}

func (c *failConn) PathMTU(netip.Addr) (int, error) {
	c.asked++
	switch {
	case c.reported == -1 && c.refused:
		return c.mtu, nil
	case c.reported <= 0:
		return 0, syscall.ENOPROTOOPT
	}
	return c.reported, nil
}

// TestPathMTU: segments fit the path MTU the Conn reports; a segment the
// kernel refuses as too big (EMSGSIZE) is sent again smaller at once,
// whether or not the kernel knows the MTU; other send errors are counted
// and the RTO sends the segment again.
func TestPathMTU(t *testing.T) {
	opts := &wire.SYNOptions{MSS: 1460, WScale: -1, Timestamps: true}
	for _, tt := range []struct {
		name          string
		mtu, reported int
		fail          map[int]error
		seg, errs     int
	}{
		{"MTU 1400 known", 1400, 1400, nil, 1400 - 40 - 12, 0},
		{"MTU 1400, unknown until refused", 1400, 0, nil, 1448 * 3 / 4, 1},
		{"MTU 1000 unknown: two steps down", 1000, 0, nil, 1448 * 3 / 4 * 3 / 4, 2},
		{"MTU 1000 learnt on EMSGSIZE", 1000, -1, nil, 1000 - 40 - 12, 1},
		{"ENOBUFS once", 0, 0, map[int]error{2: &net.OpError{Op: "sendmsg", Err: os.NewSyscallError("sendmsg", syscall.ENOBUFS)}}, 1448, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newReceiver(opts, nil)
			fc := &failConn{Conn: probetest.NewConn(r.peer.respond), mtu: tt.mtu, reported: tt.reported, fail: tt.fail}
			c := runData(t, r, fc, data64k[:20000], probe.Config{})
			if len(r.data) != 20000 || r.finAt != 20000 || c.Pattern != probe.Close3Way || c.DataAcked != 20000 {
				t.Errorf("got %d bytes, FIN after %d; close %+v", len(r.data), r.finAt, c)
			}
			if c.SegmentSize != tt.seg || c.SendErrors != tt.errs || (tt.errs > 0) != (c.SendError != nil) {
				t.Errorf("segment %d, %d send errors (%v); want %d, %d", c.SegmentSize, c.SendErrors, c.SendError, tt.seg, tt.errs)
			}
			for _, n := range r.segs {
				if n > c.SegmentSize {
					t.Errorf("a %d-byte segment went out", n)
				}
			}
		})
	}
}

// TestDataLoss: lost data segments are sent again (fast retransmission on
// three duplicate ACKs, or at the RTO) before our FIN.
func TestDataLoss(t *testing.T) {
	r := newReceiver(&wire.SYNOptions{MSS: 1000, WScale: -1}, nil)
	lost := map[int]bool{}
	r.drop = func(r *receiver, p *wire.Packet) bool {
		// The third segment once, and the last one once.
		off := int(p.Seq - r.got[0].Seq - 1)
		if p.PayloadLen > 0 && (off == 2000 || off == 19000) && !lost[off] {
			lost[off] = true
			return true
		}
		return false
	}
	c := runData(t, r, nil, data64k[:20000], probe.Config{})
	if len(r.data) != 20000 || r.finAt != 20000 || c.Pattern != probe.Close3Way || c.DataRetransmits < 2 {
		t.Errorf("got %d bytes, FIN after %d; close %+v", len(r.data), r.finAt, c)
	}
}

// TestDataNeverAcked: a peer that acknowledges nothing after the
// handshake: our data and FIN are retransmitted with backoff until the
// close timeout, then no-ack.
func TestDataNeverAcked(t *testing.T) {
	r := newReceiver(nil, nil)
	r.drop = func(*receiver, *wire.Packet) bool { return true }
	c := runData(t, r, nil, data64k[:3000], probe.Config{CloseTimeout: 700 * time.Millisecond})
	if c.Pattern != probe.CloseNoACK || c.DataAcked != 0 || c.HasDataAck || c.DataRetransmits == 0 {
		t.Errorf("close %+v", c)
	}
}

// TestPacketTooBig: a router's "fragmentation needed" quoting one of our
// data segments shrinks the segments to what the kernel then knows of the
// path, and the data is sent again at once; an ICMP error quoting
// something we never sent, or not too big, changes nothing.
func TestPacketTooBig(t *testing.T) {
	for _, tt := range []struct {
		name      string
		typ, code uint8
		quoteSeq  int64 // added to the quoted sequence number
		seg       int
	}{
		{"frag needed", 3, 4, 0, 1000 - 40 - 12},
		{"frag needed quoting unsent data", 3, 4, 1 << 20, 1448},
		{"host unreachable", 3, 1, 0, 1448},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newReceiver(&wire.SYNOptions{MSS: 1460, WScale: -1, Timestamps: true}, nil)
			var fc *failConn
			sentICMP := false
			respond := func(p *wire.Packet, b []byte, id uint32) []probetest.Reply {
				if p.PayloadLen+52 > 1000 && !sentICMP {
					// The router drops it and says why; the kernel learns
					// the MTU from the same error.
					sentICMP = true
					fc.reported = 1000
					q := append([]byte(nil), b...)
					wire.TCP(q[20:]).SetSeq(p.Seq + uint32(tt.quoteSeq))
					return []probetest.Reply{{Packet: probetest.ICMPError(q, rtr4, tt.typ, tt.code), After: rtt}}
				}
				return r.peer.respond(p, b, id)
			}
			fc = &failConn{Conn: probetest.NewConn(respond)}
			c := runData(t, r, fc, data64k[:6000], probe.Config{})
			if len(r.data) != 6000 || r.finAt != 6000 || c.Pattern != probe.Close3Way || c.SegmentSize != tt.seg {
				t.Errorf("got %d bytes, FIN after %d; close %+v", len(r.data), r.finAt, c)
			}
		})
	}
}
