package probe_test

import (
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// TestSynSentAcceptance: in SYN_SENT only a segment with the ACK bit that
// acknowledges ISN+1 answers the SYN (RFC 9293 3.10.7.3): a RST without
// ACK or a bare SYN carrying ack = ISN+1 in its field is not taken, in any
// mode.
func TestSynSentAcceptance(t *testing.T) {
	answer := func(flags wire.TCPFlags, dAck uint32) probetest.Responder {
		return func(p *wire.Packet, _ []byte, _ uint32) []probetest.Reply {
			if p.Flags != wire.FlagSyn {
				return nil
			}
			return []probetest.Reply{{Packet: probetest.Build(wire.Segment{
				Src: p.Dst, Dst: p.Src, TTL: 64, SrcPort: p.DstPort, DstPort: p.SrcPort,
				Seq: 777, Ack: p.Seq + 1 + dAck, Flags: flags, Window: 1000,
			}), After: rtt}}
		}
	}
	for _, tt := range []struct {
		name    string
		respond probetest.Responder
		reason  string
	}{
		{"RST without ACK, ack field ISN+1", answer(wire.FlagRst, 0), probe.ReasonTimeout},
		{"bare SYN, ack field ISN+1", answer(wire.FlagSyn, 0), probe.ReasonTimeout},
		{"SYN+RST+ACK", answer(wire.FlagSyn|wire.FlagRst, 0), probe.ReasonTimeout},
		{"RST+ACK, ack ISN", answer(wire.FlagRst|wire.FlagAck, ^uint32(0)), probe.ReasonTimeout},
		{"SYN-ACK, ack ISN+2", answer(wire.FlagSyn|wire.FlagAck, 1), probe.ReasonTimeout},
		{"bare ACK, ack ISN+1", answer(wire.FlagAck, 0), probe.ReasonTimeout},
		{"RST+ACK, ack ISN+1", answer(wire.FlagRst|wire.FlagAck, 0), probe.ReasonRST},
		{"SYN-ACK, ack ISN+1", answer(wire.FlagSyn|wire.FlagAck, 0), probe.ReasonSYNACK},
	} {
		for _, mode := range []probe.Mode{probe.ModeRST, probe.ModeFIN} {
			t.Run(tt.name+"/"+mode.String(), func(t *testing.T) {
				var res []probe.Result
				cookie, _ := wire.NewRandomCookie()
				p, err := probe.New(probetest.NewConn(tt.respond), probe.Config{
					Targets: []probe.Target{target(dst4, 80)}, Count: 1, Mode: mode, Timeout: 30 * time.Millisecond,
					CloseTimeout: 50 * time.Millisecond, PortLo: 61000, PortHi: 61000, Cookie: cookie,
					OnResult: func(r *probe.Result) { res = append(res, *r) },
				})
				if err != nil {
					t.Fatal(err)
				}
				if err := p.Run(t.Context()); err != nil {
					t.Fatal(err)
				}
				if len(res) != 1 || res[0].Reason != tt.reason {
					t.Errorf("got %+v, want one %s", res, tt.reason)
				}
			})
		}
	}
}

// hostile is what a scripted peer injects into an established connection.
type hostile struct {
	flags    wire.TCPFlags
	seq, ack int64 // relative to the peer's rcv.nxt-side: seq to its snd.nxt, ack to ours (ISN+1)
	payload  string
}

// TestSynchronizedAcceptance: what an established connection accepts, per
// RFC 9293 and RFC 5961, against segments injected during the hold. Every
// case ends with the peer's ordinary 3-way close unless the segment is
// taken.
func TestSynchronizedAcceptance(t *testing.T) {
	for _, tt := range []struct {
		name       string
		inject     []hostile
		pattern    probe.ClosePattern
		challenges int // our ACKs in answer to the injected segments
		peerBytes  int
		retrans    int // peer retransmissions counted
	}{
		{"RST at rcv.nxt", []hostile{{flags: wire.FlagRst | wire.FlagAck}}, probe.CloseRST, 0, 0, 0},
		{"RST without ACK at rcv.nxt", []hostile{{flags: wire.FlagRst}}, probe.CloseRST, 0, 0, 0},
		{"RST one past rcv.nxt", []hostile{{flags: wire.FlagRst | wire.FlagAck, seq: 1}}, probe.Close3Way, 1, 0, 0},
		{"RST without ACK, in window", []hostile{{flags: wire.FlagRst, seq: 5000}}, probe.Close3Way, 1, 0, 0},
		{"RST before rcv.nxt", []hostile{{flags: wire.FlagRst | wire.FlagAck, seq: -1}}, probe.Close3Way, 0, 0, 0},
		{"RST beyond the window", []hostile{{flags: wire.FlagRst, seq: 1 << 20}}, probe.Close3Way, 0, 0, 0},
		{"two RSTs in window: one challenge", []hostile{{flags: wire.FlagRst, seq: 10}, {flags: wire.FlagRst, seq: 20}}, probe.Close3Way, 1, 0, 0},
		{"bare SYN", []hostile{{flags: wire.FlagSyn, seq: 12345}}, probe.Close3Way, 1, 0, 0},
		{"SYN-ACK with another ISN", []hostile{{flags: wire.FlagSyn | wire.FlagAck, seq: 999}}, probe.Close3Way, 1, 0, 0},
		{"its SYN-ACK again (our ACK lost)", []hostile{{flags: wire.FlagSyn | wire.FlagAck, seq: -1}}, probe.Close3Way, 1, 0, 1},
		{"data acknowledging bytes never sent", []hostile{{flags: wire.FlagPsh | wire.FlagAck, ack: 1000, payload: "evil"}}, probe.Close3Way, 1, 0, 0},
		{"data without the ACK bit", []hostile{{flags: wire.FlagPsh, payload: "evil"}}, probe.Close3Way, 0, 0, 0},
		{"data acknowledging too far back", []hostile{{flags: wire.FlagPsh | wire.FlagAck, ack: -(1 << 30), payload: "evil"}}, probe.Close3Way, 1, 0, 0},
		{"data beyond the window", []hostile{{flags: wire.FlagPsh | wire.FlagAck, seq: 1 << 24, payload: "evil"}}, probe.Close3Way, 1, 0, 0},
		{"good data", []hostile{{flags: wire.FlagPsh | wire.FlagAck, payload: "good"}}, probe.Close3Way, 1, 4, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var acksBefore int // our pure ACKs before the injection
			injected := false
			pr := &peer{}
			pr.script = func(pr *peer, p *wire.Packet) []probetest.Reply {
				switch {
				case !injected && p.Flags == wire.FlagAck:
					injected = true
					acksBefore = len(pr.got)
					var out []probetest.Reply
					for k, h := range tt.inject {
						seq := uint32(int64(pr.sndNxt) + h.seq)
						if h.flags&wire.FlagSyn != 0 && h.seq == -1 {
							seq = peerISN
						}
						b := probetest.Build(wire.Segment{
							Src: p.Dst, Dst: p.Src, TTL: 64, SrcPort: p.DstPort, DstPort: p.SrcPort,
							Seq: seq, Ack: uint32(int64(p.Seq) + h.ack), Flags: h.flags, Window: 65000, Payload: []byte(h.payload),
						})
						out = append(out, probetest.Reply{Packet: b, After: time.Duration(k+1) * time.Microsecond})
						if h.payload == "good" {
							pr.sndNxt += uint32(len(h.payload))
						}
					}
					return out
				case isFIN(p):
					pr.takes(p)
					return []probetest.Reply{pr.send(p, wire.FlagFin|wire.FlagAck, nil, 50*time.Microsecond)}
				}
				return nil
			}
			_, c, _ := runFIN(t, pr, probe.Config{Hold: 30 * time.Millisecond})
			if c.Pattern != tt.pattern || c.PeerBytes != tt.peerBytes || c.PeerRetransmits != tt.retrans {
				t.Errorf("close %+v, want %v with %d peer bytes", c, tt.pattern, tt.peerBytes)
			}
			// Our answers to the injected segments: pure ACKs sent before
			// our FIN (or our RST) after the handshake ACK.
			answers := 0
			for _, q := range pr.got[acksBefore:] {
				if q.Flags&(wire.FlagFin|wire.FlagRst) != 0 {
					break
				}
				if q.Flags == wire.FlagAck && q.PayloadLen == 0 {
					answers++
					if q.Seq != pr.got[1].Seq {
						t.Errorf("challenge ACK seq %d, want our snd.nxt %d", q.Seq, pr.got[1].Seq)
					}
				}
			}
			if answers != tt.challenges {
				t.Errorf("we answered with %d ACKs, want %d", answers, tt.challenges)
			}
			checkSequence(t, pr)
		})
	}
}
