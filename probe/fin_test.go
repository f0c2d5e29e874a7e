package probe_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// peer is a scripted TCP peer: it answers the SYN, then lets script decide
// what to send for each of our later segments.
type peer struct {
	t      *testing.T
	irs    uint32 // its ISN
	rcvNxt uint32 // next byte it expects from us
	sndNxt uint32 // its next byte
	got    []wire.Packet
	raw    [][]byte // as sent, parallel to got
	script func(pr *peer, p *wire.Packet) []probetest.Reply

	// Options of its SYN-ACK (nil: none); with Timestamps, every later
	// segment carries TSval tsval (set by scripts) and echoes ours.
	synOpts  *wire.SYNOptions
	window   int // of its segments: 0 means 65000, -1 a zero window
	tsval    uint32
	tsRecent uint32
	// realTime runs the exchange on the real clock (no kernel stamps;
	// replies held back by their Delay), and synackDelay holds its
	// SYN-ACK back, as a queue on the way back would.
	realTime    bool
	synackDelay time.Duration
	synAt       time.Time // when our SYN reached it (real time)
}

const peerISN = 5000

func (pr *peer) respond(p *wire.Packet, b []byte, id uint32) []probetest.Reply {
	pr.got = append(pr.got, *p)
	pr.raw = append(pr.raw, append([]byte(nil), b...))
	if p.Options.Timestamps {
		pr.tsRecent = p.Options.TSVal
	}
	if p.Flags == wire.FlagSyn {
		pr.irs, pr.sndNxt, pr.rcvNxt = peerISN, peerISN+1, p.Seq+1
		b := pr.seg(p, wire.FlagSyn|wire.FlagAck, peerISN, nil)
		if pr.synOpts != nil {
			o := *pr.synOpts
			o.TSEcr = p.Options.TSVal
			var ob [wire.MaxOptionsSize]byte
			n := o.Encode(ob[:])
			b = probetest.Build(wire.Segment{
				Src: p.Dst, Dst: p.Src, TTL: 64, SrcPort: p.DstPort, DstPort: p.SrcPort,
				Seq: peerISN, Ack: pr.rcvNxt, Flags: wire.FlagSyn | wire.FlagAck, Window: pr.win(), Options: ob[:n],
			})
		}
		if pr.realTime {
			pr.synAt = time.Now()
			return []probetest.Reply{{Packet: b, Delay: pr.synackDelay}}
		}
		return []probetest.Reply{{Packet: b, After: rtt}}
	}
	if p.Flags&wire.FlagRst != 0 {
		return nil
	}
	return pr.script(pr, p)
}

// seg builds a segment from the peer to the prober; seq is explicit so
// that scripts can replay old or future ones.
func (pr *peer) seg(p *wire.Packet, flags wire.TCPFlags, seq uint32, payload []byte) []byte {
	var ob []byte
	if pr.synOpts != nil && pr.synOpts.Timestamps && flags&wire.FlagSyn == 0 {
		ob = make([]byte, 12)
		ob[0], ob[1], ob[2], ob[3] = 1, 1, 8, 10
		binary.BigEndian.PutUint32(ob[4:], pr.tsval)
		binary.BigEndian.PutUint32(ob[8:], pr.tsRecent)
	}
	return probetest.Build(wire.Segment{
		Src: p.Dst, Dst: p.Src, TTL: 64,
		SrcPort: p.DstPort, DstPort: p.SrcPort,
		Seq: seq, Ack: pr.rcvNxt, Flags: flags, Window: pr.win(), Payload: payload, Options: ob,
	})
}

func (pr *peer) win() uint16 {
	switch {
	case pr.window == 0:
		return 65000
	case pr.window < 0:
		return 0
	}
	return uint16(pr.window)
}

// send builds the peer's next segment and advances its sequence number.
func (pr *peer) send(p *wire.Packet, flags wire.TCPFlags, payload []byte, after time.Duration) probetest.Reply {
	seq := pr.sndNxt
	pr.sndNxt += uint32(len(payload))
	if flags&wire.FlagFin != 0 {
		pr.sndNxt++
	}
	return probetest.Reply{Packet: pr.seg(p, flags, seq, payload), After: after}
}

// takes advances the peer's view of our stream over p.
func (pr *peer) takes(p *wire.Packet) {
	if pr.rcvNxt == p.Seq {
		pr.rcvNxt += uint32(p.PayloadLen)
		if p.Flags&wire.FlagFin != 0 {
			pr.rcvNxt++
		}
	}
}

func isFIN(p *wire.Packet) bool { return p.Flags&wire.FlagFin != 0 }

func runFIN(t *testing.T, pr *peer, cfg probe.Config) (probe.Result, probe.CloseReport, *probe.Prober) {
	t.Helper()
	pr.t = t
	c := probetest.NewConn(pr.respond)
	c.NoTxStamps = pr.realTime
	cookie, _ := wire.NewRandomCookie()
	var res []probe.Result
	var reports []probe.CloseReport
	cfg.Targets = []probe.Target{target(dst4, 80)}
	cfg.Count = 1
	cfg.Mode = probe.ModeFIN
	cfg.PortLo, cfg.PortHi = 61000, 61000
	cfg.Options = &linuxO
	cfg.Cookie = cookie
	if cfg.CloseTimeout == 0 {
		cfg.CloseTimeout = time.Second
	}
	cfg.Trace = true
	cfg.OnResult = func(r *probe.Result) {
		res = append(res, *r)
		if r.Close != nil {
			reports = append(reports, *r.Close)
		}
		res[len(res)-1].Trace = append([]probe.TraceEvent(nil), r.Trace...)
	}
	p, err := probe.New(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if len(res) != 1 || len(reports) != 1 {
		t.Fatalf("%d results, %d close reports", len(res), len(reports))
	}
	return res[0], reports[0], p
}

// ourSegments returns the flags of what we sent after the SYN.
func ourSegments(pr *peer) []wire.TCPFlags {
	var f []wire.TCPFlags
	for _, p := range pr.got[1:] {
		f = append(f, p.Flags)
	}
	return f
}

func TestClosePatterns(t *testing.T) {
	const ack, fin = 70 * time.Microsecond, 90 * time.Microsecond
	for _, tt := range []struct {
		name    string
		script  func(pr *peer, p *wire.Packet) []probetest.Reply
		pattern probe.ClosePattern
		ackUS   time.Duration // 0: no ACK of our FIN
		finUS   time.Duration // 0: no FIN
		after   int           // peer bytes after our FIN
		ours    []wire.TCPFlags
		alt     probe.PatternSet
		note    string // a part of the note
	}{
		{
			name: "3-way: FIN merged with the ACK",
			script: func(pr *peer, p *wire.Packet) []probetest.Reply {
				if !isFIN(p) {
					return nil
				}
				pr.takes(p)
				return []probetest.Reply{pr.send(p, wire.FlagFin|wire.FlagAck, nil, ack)}
			},
			pattern: probe.Close3Way, ackUS: ack, finUS: ack,
			ours: []wire.TCPFlags{wire.FlagAck, wire.FlagFin | wire.FlagAck, wire.FlagAck},
		},
		{
			name: "4-way: ACK, then FIN",
			script: func(pr *peer, p *wire.Packet) []probetest.Reply {
				if !isFIN(p) {
					return nil
				}
				pr.takes(p)
				return []probetest.Reply{pr.send(p, wire.FlagAck, nil, ack), pr.send(p, wire.FlagFin|wire.FlagAck, nil, fin)}
			},
			pattern: probe.Close4Way, ackUS: ack, finUS: fin,
			ours: []wire.TCPFlags{wire.FlagAck, wire.FlagFin | wire.FlagAck, wire.FlagAck},
		},
		{
			name: "half-close: data acknowledges our FIN, 3000 bytes, then FIN",
			script: func(pr *peer, p *wire.Packet) []probetest.Reply {
				if !isFIN(p) {
					return nil
				}
				pr.takes(p)
				return []probetest.Reply{
					pr.send(p, wire.FlagPsh|wire.FlagAck, make([]byte, 1448), ack),
					pr.send(p, wire.FlagPsh|wire.FlagAck, make([]byte, 1552), ack+10*time.Microsecond),
					pr.send(p, wire.FlagFin|wire.FlagAck, nil, fin),
				}
			},
			pattern: probe.Close4Way, ackUS: ack, finUS: fin, after: 3000,
			ours: []wire.TCPFlags{wire.FlagAck, wire.FlagFin | wire.FlagAck, wire.FlagAck, wire.FlagAck, wire.FlagAck},
		},
		{
			name: "no-fin: the peer stays in CLOSE_WAIT, answers our probe, and gets reset",
			script: func(pr *peer, p *wire.Packet) []probetest.Reply {
				switch {
				case isFIN(p):
					pr.takes(p)
					return []probetest.Reply{pr.send(p, wire.FlagAck, nil, ack)}
				case p.Flags == wire.FlagAck && p.Seq == pr.rcvNxt-1:
					// Our probe, below its rcv.nxt: a duplicate ACK.
					return []probetest.Reply{pr.send(p, wire.FlagAck, nil, ack)}
				}
				return nil
			},
			pattern: probe.CloseNoFIN, ackUS: ack, note: "it still holds the connection (CLOSE_WAIT)",
			ours: []wire.TCPFlags{wire.FlagAck, wire.FlagFin | wire.FlagAck, wire.FlagAck, wire.FlagRst | wire.FlagAck},
		},
		{
			// The peer acknowledged our FIN and reset its connection; the
			// RST was lost. Its port answers our probe with a RST.
			name: "rst, its RST lost: the probe after the close timeout finds the connection gone",
			script: func(pr *peer, p *wire.Packet) []probetest.Reply {
				switch {
				case isFIN(p):
					pr.takes(p)
					return []probetest.Reply{pr.send(p, wire.FlagAck, nil, ack)}
				case p.Flags == wire.FlagAck && p.Seq == pr.rcvNxt-1:
					return []probetest.Reply{{Packet: pr.seg(p, wire.FlagRst, p.Ack, nil), After: ack}}
				}
				return nil
			},
			pattern: probe.CloseRST, ackUS: ack, note: "its connection was gone",
			ours: []wire.TCPFlags{wire.FlagAck, wire.FlagFin | wire.FlagAck, wire.FlagAck},
		},
		{
			name: "no-fin or rst: nothing answers our probes",
			script: func(pr *peer, p *wire.Packet) []probetest.Reply {
				if !isFIN(p) {
					return nil
				}
				pr.takes(p)
				return []probetest.Reply{pr.send(p, wire.FlagAck, nil, ack)}
			},
			pattern: probe.CloseNoFIN, ackUS: ack, alt: probe.PatternSet(0).Add(probe.CloseRST), note: "none of our probes",
			ours: []wire.TCPFlags{wire.FlagAck, wire.FlagFin | wire.FlagAck, wire.FlagAck, wire.FlagAck, wire.FlagAck, wire.FlagRst | wire.FlagAck},
		},
		{
			name: "rst: the peer resets instead of closing",
			script: func(pr *peer, p *wire.Packet) []probetest.Reply {
				if !isFIN(p) {
					return nil
				}
				return []probetest.Reply{pr.send(p, wire.FlagRst|wire.FlagAck, nil, ack)}
			},
			pattern: probe.CloseRST,
			ours:    []wire.TCPFlags{wire.FlagAck, wire.FlagFin | wire.FlagAck},
		},
		{
			name: "simultaneous: the peer's FIN does not acknowledge ours",
			script: func(pr *peer, p *wire.Packet) []probetest.Reply {
				if !isFIN(p) {
					return nil
				}
				f := pr.send(p, wire.FlagFin|wire.FlagAck, nil, fin) // sent before ours arrived
				pr.takes(p)
				return []probetest.Reply{f, pr.send(p, wire.FlagAck, nil, fin+ack)}
			},
			pattern: probe.CloseSimultaneous, ackUS: fin + ack, finUS: fin,
			ours: []wire.TCPFlags{wire.FlagAck, wire.FlagFin | wire.FlagAck, wire.FlagAck},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pr := &peer{script: tt.script}
			r, c, p := runFIN(t, pr, probe.Config{})
			if r.State != probe.StateOpen || r.Reason != probe.ReasonSYNACK || r.RTT != rtt {
				t.Errorf("verdict %v/%s rtt %v", r.State, r.Reason, r.RTT)
			}
			if c.Pattern != tt.pattern || c.PeerDataBytes != tt.after || !c.Kernel {
				t.Errorf("close %+v, want pattern %v, %d bytes after our FIN", c, tt.pattern, tt.after)
			}
			if c.HasAck != (tt.ackUS != 0) || c.AckTime != tt.ackUS || c.HasFin != (tt.finUS != 0) || c.FinTime != tt.finUS {
				t.Errorf("times: ack %v (%v) fin %v (%v); want %v %v", c.AckTime, c.HasAck, c.FinTime, c.HasFin, tt.ackUS, tt.finUS)
			}
			if c.Alternatives != tt.alt || !strings.Contains(c.Note, tt.note) {
				t.Errorf("alternatives %v note %q, want %v and %q", c.Alternatives.Patterns(), c.Note, tt.alt.Patterns(), tt.note)
			}
			if got := ourSegments(pr); !equalFlags(got, tt.ours) {
				t.Errorf("we sent %v after the SYN, want %v", got, tt.ours)
			}
			if n := p.Stats(0).Patterns[tt.pattern]; n != 1 {
				t.Errorf("stats count %d for %v", n, tt.pattern)
			}
			checkSequence(t, pr)
		})
	}
}

// TestPeerFINReadLate: the peer speaks and closes at once; its data and
// FIN reach our host (the kernel's stamps say so) before our FIN leaves,
// but are read only after. The close is peer-first, as a kernel's TCP
// would have made it, not simultaneous, and its FIN time is positive.
func TestPeerFINReadLate(t *testing.T) {
	spoke := false
	pr := &peer{script: func(pr *peer, p *wire.Packet) []probetest.Reply {
		switch {
		case p.Flags == wire.FlagAck && p.PayloadLen == 0 && !spoke:
			spoke = true
			data := pr.send(p, wire.FlagPsh|wire.FlagAck, []byte("220 lab\r\n"), 10*time.Microsecond)
			fin := pr.send(p, wire.FlagFin|wire.FlagAck, nil, 11*time.Microsecond)
			data.Held, fin.Held = 30*time.Millisecond, 30*time.Millisecond
			return []probetest.Reply{data, fin}
		case isFIN(p):
			pr.takes(p)
			return []probetest.Reply{pr.send(p, wire.FlagAck, nil, 70*time.Microsecond)}
		}
		return nil
	}}
	_, c, _ := runFIN(t, pr, probe.Config{})
	if c.Pattern != probe.ClosePeerFirst || !strings.Contains(c.Note, "was read after it") || !c.HasFin || c.FinTime <= 0 {
		t.Errorf("close %+v, want peer-first (its FIN arrived before ours left), a positive FIN time", c)
	}
}

// checkSequence verifies that every segment we sent after the handshake
// acknowledged exactly what the peer had sent by then, in order.
func checkSequence(t *testing.T, pr *peer) {
	t.Helper()
	for i, p := range pr.got[1:] {
		if p.Flags&wire.FlagAck == 0 {
			continue
		}
		if p.Ack-peerISN > pr.sndNxt-peerISN {
			t.Errorf("segment %d (%v) acknowledges %d, beyond the peer's %d", i+1, p.Flags, p.Ack-peerISN, pr.sndNxt-peerISN)
		}
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

// TestPeerFirst: the peer speaks and closes during our hold; we ACK, close
// at once, and the FIN time runs from the end of the handshake.
func TestPeerFirst(t *testing.T) {
	pr := &peer{script: func(pr *peer, p *wire.Packet) []probetest.Reply {
		switch {
		case p.Flags == wire.FlagAck && p.Ack == peerISN+1 && p.PayloadLen == 0 && pr.sndNxt == peerISN+1:
			// Our handshake ACK: banner, then FIN.
			return []probetest.Reply{
				pr.send(p, wire.FlagPsh|wire.FlagAck, []byte("220 hello\r\n"), 2*rtt),
				pr.send(p, wire.FlagFin|wire.FlagAck, nil, 3*rtt),
			}
		case isFIN(p):
			pr.takes(p)
			return []probetest.Reply{pr.send(p, wire.FlagAck, nil, 20*time.Microsecond)}
		}
		return nil
	}}
	_, c, _ := runFIN(t, pr, probe.Config{Hold: time.Hour})
	if c.Pattern != probe.ClosePeerFirst || c.PeerBytes != 11 || c.PeerDataBytes != 0 {
		t.Errorf("close %+v", c)
	}
	// The handshake ended when the SYN-ACK arrived (rtt after the SYN); the
	// FIN came 3*rtt after the handshake ACK, which left at id 1 = 1 ms.
	if want := time.Millisecond + 3*rtt - rtt; c.FinTime != want || c.AckTime != 20*time.Microsecond {
		t.Errorf("fin %v (want %v), ack %v", c.FinTime, want, c.AckTime)
	}
}

// TestReorderAndDuplicates: a FIN ahead of the data it follows is held as
// a range and answered with a duplicate ACK carrying a SACK block; the
// data fills the gap and takes the FIN with it; the duplicates that follow
// the close change nothing. Without SACK, the same but no SACK block.
func TestReorderAndDuplicates(t *testing.T) {
	for _, sack := range []bool{true, false} {
		t.Run(fmt.Sprint("sack=", sack), func(t *testing.T) { reorderAndDuplicates(t, sack) })
	}
}

func reorderAndDuplicates(t *testing.T, sack bool) {
	pr := &peer{script: func(pr *peer, p *wire.Packet) []probetest.Reply {
		if !isFIN(p) {
			return nil
		}
		pr.takes(p)
		data := pr.send(p, wire.FlagPsh|wire.FlagAck, []byte("0123456789"), 50*time.Microsecond)
		f := pr.send(p, wire.FlagFin|wire.FlagAck, nil, 60*time.Microsecond)
		// Wire order: FIN (early), data, data again, FIN again.
		return []probetest.Reply{f, data, data, f}
	}}
	pr.synOpts = &wire.SYNOptions{MSS: 1460, WScale: -1, SACKPermitted: sack}
	_, c, _ := runFIN(t, pr, probe.Config{})
	if c.Pattern != probe.Close4Way || c.PeerDataBytes != 10 || c.PeerBytes != 10 || c.FinTime != 60*time.Microsecond {
		t.Errorf("close %+v", c)
	}
	var dupACK bool
	for i, p := range pr.got {
		if p.Flags == wire.FlagAck && p.Ack == peerISN+1 && p.Seq == pr.got[0].Seq+2 {
			dupACK = true
			// The FIN's range: [5011, 5012).
			want := []byte{1, 1, 5, 10, 0, 0, 0x13, 0x93, 0, 0, 0x13, 0x94}
			if opts := wire.TCP(pr.raw[i][20:]).Options(); sack != bytes.Equal(opts, want) {
				t.Errorf("SACK negotiated %v, options in the duplicate ACK % x", sack, opts)
			}
		}
	}
	if !dupACK {
		t.Error("no duplicate ACK for the out-of-order FIN")
	}
	checkSequence(t, pr)
}

// TestFINLost: the peer ignores our first FIN; we send it again after the
// RTO and report the retransmission.
func TestFINLost(t *testing.T) {
	fins := 0
	pr := &peer{script: func(pr *peer, p *wire.Packet) []probetest.Reply {
		if !isFIN(p) {
			return nil
		}
		if fins++; fins == 1 {
			return nil // lost
		}
		pr.takes(p)
		return []probetest.Reply{pr.send(p, wire.FlagFin|wire.FlagAck, nil, ack)}
	}}
	_, c, _ := runFIN(t, pr, probe.Config{})
	if c.Pattern != probe.Close3Way || c.FinRetransmits != 1 || fins != 2 {
		t.Errorf("close %+v after %d FINs", c, fins)
	}
}

const ack = 70 * time.Microsecond

// TestNoACK: the peer never acknowledges our FIN: we retransmit with
// backoff, give up at the close timeout and reset.
func TestNoACK(t *testing.T) {
	pr := &peer{script: func(pr *peer, p *wire.Packet) []probetest.Reply { return nil }}
	_, c, _ := runFIN(t, pr, probe.Config{CloseTimeout: 700 * time.Millisecond})
	// FIN at 0, again at 200 ms (RTO), again at 600 ms (backed off to
	// 400 ms), then the 700 ms close timeout.
	if c.Pattern != probe.CloseNoACK || c.HasAck || c.FinRetransmits != 2 {
		t.Errorf("close %+v, want no-ack after 2 retransmissions", c)
	}
	// Every ACK of our FINs may have been lost: a peer that acknowledged
	// and never closed would look the same.
	if c.Alternatives != probe.PatternSet(0).Add(probe.CloseNoFIN) {
		t.Errorf("alternatives %v, want no-fin", c.Alternatives.Patterns())
	}
	fins := 0
	for i := range pr.got {
		if isFIN(&pr.got[i]) {
			fins++
		}
	}
	if fins != 3 {
		t.Errorf("%d FINs on the wire, want 3", fins)
	}
	last := pr.got[len(pr.got)-1]
	if last.Flags != wire.FlagRst|wire.FlagAck {
		t.Errorf("last segment %v, want RST", last.Flags)
	}
}

// TestDataAndWindow: --data goes out in segments no larger than the
// peer's MSS and window allow, and its acknowledgement is timed.
func TestDataAndWindow(t *testing.T) {
	data := make([]byte, 3000)
	for i := range data {
		data[i] = byte(i)
	}
	var got []byte
	pr := &peer{script: func(pr *peer, p *wire.Packet) []probetest.Reply {
		switch {
		case p.PayloadLen > 0:
			if p.PayloadLen > 1000 {
				pr.t.Errorf("segment of %d bytes beyond the peer's MSS", p.PayloadLen)
			}
			pr.takes(p)
			got = append(got, make([]byte, p.PayloadLen)...)
			return []probetest.Reply{pr.send(p, wire.FlagAck, nil, 30*time.Microsecond)}
		case isFIN(p):
			pr.takes(p)
			return []probetest.Reply{pr.send(p, wire.FlagFin|wire.FlagAck, nil, ack)}
		}
		return nil
	}}
	// The SYN-ACK from peer.respond has no MSS option: 536 by default.
	_, c, _ := runFIN(t, pr, probe.Config{Data: data})
	if len(got) != len(data) || !c.HasDataAck || c.Pattern != probe.Close3Way {
		t.Errorf("peer got %d of %d bytes; close %+v", len(got), len(data), c)
	}
	var sizes []int
	for _, p := range pr.got {
		if p.PayloadLen > 0 {
			sizes = append(sizes, p.PayloadLen)
		}
	}
	if len(sizes) != 6 || sizes[0] != 536 {
		t.Errorf("segment sizes %v, want 536-byte segments", sizes)
	}
}

// TestACKMode: ack mode completes the handshake, then resets: ACK first.
func TestACKMode(t *testing.T) {
	c := probetest.NewConn(synack)
	cookie, _ := wire.NewRandomCookie()
	p, _ := probe.New(c, probe.Config{Targets: []probe.Target{target(dst6, 22)}, Count: 1, Mode: probe.ModeACK,
		PortLo: 61000, PortHi: 61000, Cookie: cookie})
	if err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	sent := c.Sent()
	var flags []wire.TCPFlags
	var pk wire.Packet
	for _, b := range sent {
		wire.Parse(b, &pk)
		flags = append(flags, pk.Flags)
	}
	if !equalFlags(flags, []wire.TCPFlags{wire.FlagSyn, wire.FlagAck, wire.FlagRst}) || p.Stats(0).Open != 1 {
		t.Errorf("sent %v", flags)
	}
}

// TestTrace: the ladder of a 4-way close, with both sides' states.
func TestTrace(t *testing.T) {
	var trace []probe.TraceEvent
	pr := &peer{script: func(pr *peer, p *wire.Packet) []probetest.Reply {
		if !isFIN(p) {
			return nil
		}
		pr.takes(p)
		return []probetest.Reply{pr.send(p, wire.FlagAck, nil, ack), pr.send(p, wire.FlagFin|wire.FlagAck, nil, 2*ack)}
	}}
	r, _, _ := runFIN(t, pr, probe.Config{})
	trace = r.Trace
	want := []struct {
		out       bool
		flags     wire.TCPFlags
		seq, ack  uint32
		us, their probe.TCPState
	}{
		{true, wire.FlagSyn, 0, 0, probe.SynSent, probe.Listen},
		{false, wire.FlagSyn | wire.FlagAck, 0, 1, probe.Established, probe.SynRcvd},
		{true, wire.FlagAck, 1, 1, probe.Established, probe.Established},
		{true, wire.FlagFin | wire.FlagAck, 1, 1, probe.FinWait1, probe.CloseWait},
		{false, wire.FlagAck, 1, 2, probe.FinWait2, probe.CloseWait},
		{false, wire.FlagFin | wire.FlagAck, 1, 2, probe.TimeWait, probe.LastAck},
		{true, wire.FlagAck, 2, 2, probe.TimeWait, probe.Closed},
	}
	if len(trace) != len(want) {
		t.Fatalf("trace has %d events, want %d: %+v", len(trace), len(want), trace)
	}
	for i, w := range want {
		ev := trace[i]
		if ev.Out != w.out || ev.Flags != w.flags || ev.Seq != w.seq || ev.Ack != w.ack || ev.Us != w.us || ev.Peer != w.their {
			t.Errorf("event %d: %+v, want %+v", i, ev, w)
		}
	}
	if trace[1].At != rtt {
		t.Errorf("SYN-ACK at %v, want %v", trace[1].At, rtt)
	}
}
