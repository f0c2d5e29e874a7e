package probe_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// TestWithhold: with the third ACK withheld, every SYN-ACK the server
// sends again is recorded, timed by the kernel's receive stamps from the
// first; a SYN-ACK with another sequence number and our own packets'
// echoes are not; the watch ends with one RST at ISN+1 and nothing else
// sent, or early, on the server's RST.
func TestWithhold(t *testing.T) {
	const first = 100 * time.Microsecond
	sched := []time.Duration{1040 * time.Millisecond, 3030 * time.Millisecond, 7260 * time.Millisecond}
	for _, tc := range []struct {
		name  string
		rst   bool // the server resets after its second retransmission
		other bool // a SYN-ACK of another request comes too
		want  []time.Duration
	}{
		{"schedule", false, false, sched},
		{"other request", false, true, sched},
		{"server resets", true, false, sched[:2]},
		{"never again", false, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sent []wire.Packet
			c := probetest.NewConn(func(p *wire.Packet, b []byte, id uint32) []probetest.Reply {
				sent = append(sent, *p)
				if p.Flags != wire.FlagSyn {
					return nil
				}
				synack := probetest.Build(wire.Segment{Src: p.Dst, Dst: p.Src, TTL: 64, SrcPort: p.DstPort, DstPort: p.SrcPort,
					Seq: peerISN, Ack: p.Seq + 1, Flags: wire.FlagSyn | wire.FlagAck, Window: 65000})
				r := []probetest.Reply{{Packet: synack, After: first}}
				if tc.other {
					r = append(r, probetest.Reply{After: 500 * time.Millisecond, Packet: probetest.Build(wire.Segment{Src: p.Dst, Dst: p.Src, TTL: 64,
						SrcPort: p.DstPort, DstPort: p.SrcPort, Seq: peerISN + 99, Ack: p.Seq + 1, Flags: wire.FlagSyn | wire.FlagAck, Window: 65000})})
				}
				if tc.want == nil {
					return r
				}
				for i, at := range sched {
					r = append(r, probetest.Reply{Packet: synack, After: first + at})
					if tc.rst && i == 1 {
						r = append(r, probetest.Reply{After: first + at + time.Millisecond, Packet: probetest.Build(wire.Segment{Src: p.Dst, Dst: p.Src, TTL: 64,
							SrcPort: p.DstPort, DstPort: p.SrcPort, Seq: peerISN + 1, Ack: p.Seq + 1, Flags: wire.FlagRst | wire.FlagAck})})
					}
				}
				return r
			})
			cookie, _ := wire.NewRandomCookie()
			var res []probe.Result
			p, err := probe.New(c, probe.Config{
				Targets: []probe.Target{target(dst4, 80)}, Count: 1, Mode: probe.ModeWithhold,
				Observe: 300 * time.Millisecond, PortLo: 61000, PortHi: 61000, Cookie: cookie,
				OnResult: func(r *probe.Result) {
					res = append(res, *r)
					res[len(res)-1].SynAckRetrans = slices.Clone(r.SynAckRetrans)
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := p.Run(ctx); err != nil {
				t.Fatal(err)
			}
			c.Close()
			if len(res) != 1 {
				t.Fatalf("%d results", len(res))
			}
			r := res[0]
			if r.State != probe.StateOpen || r.RTT != first || !r.KernelClock || r.Interrupted {
				t.Errorf("result %v rtt %v kernel %v interrupted %v, want open in %v by the kernel's clock", r.State, r.RTT, r.KernelClock, r.Interrupted, first)
			}
			if !slices.Equal(r.SynAckRetrans, tc.want) {
				t.Errorf("retransmissions at %v, want %v", r.SynAckRetrans, tc.want)
			}
			// SYN, then one RST at ISN+1: no ACK ever.
			if len(sent) != 2 || sent[1].Flags != wire.FlagRst || sent[1].Seq != sent[0].Seq+1 {
				t.Errorf("sent %v, want SYN then RST at ISN+1", flagsOf(sent))
			}
		})
	}
}

func flagsOf(ps []wire.Packet) []wire.TCPFlags {
	var f []wire.TCPFlags
	for _, p := range ps {
		f = append(f, p.Flags)
	}
	return f
}

// TestBareACK: a bare ACK carries the ISN in both fields and no options;
// only a RST without ACK at that sequence number answers it (closed,
// rst-to-ack); a RST+ACK or a SYN-ACK acknowledging ISN+1, which answer
// SYNs, do not; silence is filtered, and nothing else is ever sent.
func TestBareACK(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(p *wire.Packet) []byte
		state  probe.State
		reason string
	}{
		{"rst", func(p *wire.Packet) []byte {
			return probetest.Build(wire.Segment{Src: p.Dst, Dst: p.Src, TTL: 64, SrcPort: p.DstPort, DstPort: p.SrcPort, Seq: p.Ack, Flags: wire.FlagRst})
		}, probe.StateClosed, probe.ReasonACKRST},
		{"rst at another sequence number", func(p *wire.Packet) []byte {
			return probetest.Build(wire.Segment{Src: p.Dst, Dst: p.Src, TTL: 64, SrcPort: p.DstPort, DstPort: p.SrcPort, Seq: p.Ack + 1, Flags: wire.FlagRst})
		}, probe.StateFiltered, probe.ReasonTimeout},
		{"rst-ack, a SYN's answer", func(p *wire.Packet) []byte {
			return probetest.Build(wire.Segment{Src: p.Dst, Dst: p.Src, TTL: 64, SrcPort: p.DstPort, DstPort: p.SrcPort, Ack: p.Seq + 1, Flags: wire.FlagRst | wire.FlagAck})
		}, probe.StateFiltered, probe.ReasonTimeout},
		{"syn-ack, a SYN's answer", func(p *wire.Packet) []byte {
			return probetest.Build(wire.Segment{Src: p.Dst, Dst: p.Src, TTL: 64, SrcPort: p.DstPort, DstPort: p.SrcPort, Seq: 1, Ack: p.Seq + 1, Flags: wire.FlagSyn | wire.FlagAck})
		}, probe.StateFiltered, probe.ReasonTimeout},
		{"silence", nil, probe.StateFiltered, probe.ReasonTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sent []wire.Packet
			c := probetest.NewConn(func(p *wire.Packet, b []byte, id uint32) []probetest.Reply {
				sent = append(sent, *p)
				if tc.answer == nil {
					return nil
				}
				return []probetest.Reply{{Packet: tc.answer(p), After: 70 * time.Microsecond}}
			})
			cookie, _ := wire.NewRandomCookie()
			var res []probe.Result
			p, err := probe.New(c, probe.Config{
				Targets: []probe.Target{target(dst4, 80)}, Count: 1, Mode: probe.ModeBareACK, Options: &linuxO,
				Timeout: 100 * time.Millisecond, PortLo: 61000, PortHi: 61000, Cookie: cookie,
				OnResult: func(r *probe.Result) { res = append(res, *r) },
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			c.Close()
			if len(res) != 1 || res[0].State != tc.state || res[0].Reason != tc.reason {
				t.Fatalf("results %+v, want one %v (%s)", res, tc.state, tc.reason)
			}
			if tc.state == probe.StateClosed && (res[0].RTT != 70*time.Microsecond || !res[0].KernelClock) {
				t.Errorf("rtt %v kernel %v, want 70µs by the kernel's clock", res[0].RTT, res[0].KernelClock)
			}
			if len(sent) != 1 {
				t.Fatalf("sent %v, want one bare ACK", flagsOf(sent))
			}
			s := sent[0]
			if s.Flags != wire.FlagAck || s.Ack != s.Seq || s.Seq != res[0].ISN || s.Options.MSS != 0 || s.Options.Timestamps || s.Options.SACKPermitted || s.Options.WScale >= 0 || s.PayloadLen != 0 {
				t.Errorf("sent %v seq %d ack %d options %+v, want a bare ACK with the ISN %d in both fields", s.Flags, s.Seq, s.Ack, s.Options, res[0].ISN)
			}
		})
	}
}

// TestLateACK: the third ACK, sent when the watch ends, carries the
// timestamps the SYN-ACK agreed on; what follows it is the outcome: no
// answer until the next SYN-ACK is due (silent: then our RST), the SYN-ACK
// again (dropped: then our RST), a RST (reset: nothing more from us). No
// ACK goes out when the SYN-ACK never came again, or when its next
// retransmission was due within the watch and did not come (the server
// may have given up its request).
func TestLateACK(t *testing.T) {
	synackAgain := func(p *wire.Packet) []byte {
		return probetest.Build(wire.Segment{Src: p.Dst, Dst: p.Src, TTL: 64, SrcPort: p.DstPort, DstPort: p.SrcPort,
			Seq: peerISN, Ack: p.Seq, Flags: wire.FlagSyn | wire.FlagAck, Window: 65000})
	}
	for _, tc := range []struct {
		name    string
		retrans bool          // the SYN-ACK comes again 10 ms after the first
		observe time.Duration // the watch
		answer  func(p *wire.Packet) []byte
		want    probe.AckOutcome
		sent    []wire.TCPFlags
	}{
		{"silent", true, 30 * time.Millisecond, nil, probe.AckSilent, []wire.TCPFlags{wire.FlagSyn, wire.FlagAck, wire.FlagRst}},
		{"dropped", true, 30 * time.Millisecond, synackAgain, probe.AckDropped, []wire.TCPFlags{wire.FlagSyn, wire.FlagAck, wire.FlagRst}},
		{"reset", true, 30 * time.Millisecond, func(p *wire.Packet) []byte {
			return probetest.Build(wire.Segment{Src: p.Dst, Dst: p.Src, TTL: 64, SrcPort: p.DstPort, DstPort: p.SrcPort,
				Seq: p.Ack, Flags: wire.FlagRst})
		}, probe.AckReset, []wire.TCPFlags{wire.FlagSyn, wire.FlagAck}},
		{"accepted: a banner", true, 30 * time.Millisecond, func(p *wire.Packet) []byte {
			return probetest.Build(wire.Segment{Src: p.Dst, Dst: p.Src, TTL: 64, SrcPort: p.DstPort, DstPort: p.SrcPort,
				Seq: peerISN + 1, Ack: p.Seq, Flags: wire.FlagPsh | wire.FlagAck, Window: 65000, Payload: []byte("SSH-2.0-lab\r\n")})
		}, probe.AckAccepted, []wire.TCPFlags{wire.FlagSyn, wire.FlagAck, wire.FlagRst}},
		{"accepted: a FIN", true, 30 * time.Millisecond, func(p *wire.Packet) []byte {
			return probetest.Build(wire.Segment{Src: p.Dst, Dst: p.Src, TTL: 64, SrcPort: p.DstPort, DstPort: p.SrcPort,
				Seq: peerISN + 1, Ack: p.Seq, Flags: wire.FlagFin | wire.FlagAck, Window: 65000})
		}, probe.AckAccepted, []wire.TCPFlags{wire.FlagSyn, wire.FlagAck, wire.FlagRst}},
		// Due at 10 + 2*10 ms + 15% + 100 ms: a 300 ms watch saw it not come.
		{"given up", true, 300 * time.Millisecond, nil, probe.AckNotSent, []wire.TCPFlags{wire.FlagSyn, wire.FlagRst}},
		{"never again", false, 30 * time.Millisecond, nil, probe.AckNotSent, []wire.TCPFlags{wire.FlagSyn, wire.FlagRst}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sent []wire.Packet
			c := probetest.NewConn(func(p *wire.Packet, b []byte, id uint32) []probetest.Reply {
				sent = append(sent, *p)
				switch {
				case p.Flags == wire.FlagSyn:
					o := wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true, TSVal: 4242, TSEcr: p.Options.TSVal}
					var ob [wire.MaxOptionsSize]byte
					n := o.Encode(ob[:])
					sa := probetest.Build(wire.Segment{Src: p.Dst, Dst: p.Src, TTL: 64,
						SrcPort: p.DstPort, DstPort: p.SrcPort, Seq: peerISN, Ack: p.Seq + 1, Flags: wire.FlagSyn | wire.FlagAck, Window: 65000, Options: ob[:n]})
					r := []probetest.Reply{{After: 100 * time.Microsecond, Packet: sa}}
					if tc.retrans {
						r = append(r, probetest.Reply{After: 10*time.Millisecond + 100*time.Microsecond, Packet: sa})
					}
					return r
				case p.Flags == wire.FlagAck && tc.answer != nil:
					return []probetest.Reply{{Packet: tc.answer(p), After: 80 * time.Microsecond}}
				}
				return nil
			})
			cookie, _ := wire.NewRandomCookie()
			var res []probe.Result
			p, err := probe.New(c, probe.Config{
				Targets: []probe.Target{target(dst4, 80)}, Count: 1, Mode: probe.ModeWithhold, Options: &linuxO,
				Observe: tc.observe, LateACK: 20 * time.Millisecond, PortLo: 61000, PortHi: 61000, Cookie: cookie,
				OnResult: func(r *probe.Result) { res = append(res, *r) },
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			c.Close()
			if len(res) != 1 || res[0].State != probe.StateOpen || res[0].AfterACK != tc.want {
				t.Fatalf("results %+v, want open, %v", res, tc.want)
			}
			if got := flagsOf(sent); !slices.Equal(got, tc.sent) {
				t.Fatalf("sent %v, want %v", got, tc.sent)
			}
			isn := sent[0].Seq
			if a := sent[1]; a.Flags == wire.FlagAck && (a.Seq != isn+1 || a.Ack != peerISN+1 || !a.Options.Timestamps || a.Options.TSEcr != 4242) {
				t.Errorf("late ACK seq %d ack %d TS %v echo %d, want %d, %d, the SYN-ACK's TSval 4242 echoed", a.Seq, a.Ack, a.Options.Timestamps, a.Options.TSEcr, isn+1, peerISN+1)
			}
			if last := sent[len(sent)-1]; last.Flags == wire.FlagRst && last.Seq != isn+1 {
				t.Errorf("RST at %d, want ISN+1", last.Seq)
			}
		})
	}
}
