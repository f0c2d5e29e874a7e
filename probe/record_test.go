package probe_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// TestRecorder: the engine records every packet it sends, in order, with
// the transmit stamp its RTTs take, and every packet it reads, strays
// too, with its receive stamp; in ModeFIN as in ModeRST, IPv4 and IPv6.
func TestRecorder(t *testing.T) {
	for _, mode := range []probe.Mode{probe.ModeRST, probe.ModeFIN} {
		t.Run(mode.String(), func(t *testing.T) {
			respond := synack
			if mode == probe.ModeFIN {
				respond = finServer(0)
			}
			c := probetest.NewConn(respond)
			stray := probetest.Build(wire.Segment{Src: dst4, Dst: src4, TTL: 64, SrcPort: 80, DstPort: 61000, Seq: 9, Ack: 9, Flags: wire.FlagSyn | wire.FlagAck})
			c.Inject(stray, probetest.Epoch)
			rec := &probetest.Recorder{}
			cookie, _ := wire.NewRandomCookie()
			var results []probe.Result
			p, err := probe.New(c, probe.Config{
				Targets: []probe.Target{target(dst4, 80), target(dst6, 80)}, Count: 2, Interval: time.Millisecond,
				Timeout: 30 * time.Millisecond, Mode: mode, CloseTimeout: 200 * time.Millisecond,
				PortLo: 61000, PortHi: 61511, Options: &linuxO, Cookie: cookie, Recorder: rec,
				OnResult: func(r *probe.Result) { results = append(results, *r) },
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
			events := rec.Events()
			sent := c.Sent()
			var recSent [][]byte
			var received int
			syns := map[uint16]probetest.Recorded{}
			type key struct {
				port uint16
				ack  uint32
			}
			answers := map[key]probetest.Recorded{}
			isn := map[uint16]uint32{}
			for _, e := range events {
				var pkt wire.Packet
				if err := wire.Parse(e.Packet, &pkt); err != nil {
					t.Fatalf("recorded an unparsable packet: %v", err)
				}
				if !e.Sent {
					received++
					if k := (key{pkt.DstPort, pkt.Ack}); pkt.Flags&wire.FlagSyn != 0 {
						answers[k] = e
					}
					continue
				}
				recSent = append(recSent, e.Packet)
				if e.Tx != probetest.TxStamp(e.ID) {
					t.Errorf("sent packet id %d: stamp %v, want the kernel's %v", e.ID, e.Tx, probetest.TxStamp(e.ID))
				}
				if pkt.Flags == wire.FlagSyn {
					syns[pkt.SrcPort], isn[pkt.SrcPort] = e, pkt.Seq
				}
			}
			if len(recSent) != len(sent) {
				t.Fatalf("%d packets recorded sent, %d sent", len(recSent), len(sent))
			}
			for i := range sent {
				if !bytes.Equal(sent[i], recSent[i]) {
					t.Errorf("packet %d sent and recorded differ", i)
				}
			}
			if want := 4 + 1; received < want { // the SYN-ACKs and the stray at least
				t.Errorf("%d packets recorded received, want %d at least", received, want)
			}
			if len(results) != 4 {
				t.Fatalf("%d results", len(results))
			}
			for _, r := range results {
				s, a := syns[r.SrcPort], answers[key{r.SrcPort, isn[r.SrcPort] + 1}]
				if !r.KernelClock || a.Rx.Sub(s.Tx) != r.RTT {
					t.Errorf("sport %d: RTT %v (kernel %v); recorded %v", r.SrcPort, r.RTT, r.KernelClock, a.Rx.Sub(s.Tx))
				}
			}
		})
	}
}

// finServer answers each SYN with a SYN-ACK and each FIN with a FIN+ACK
// that acknowledges it (a 3-way close), after rtt, statelessly.
func finServer(_ int) probetest.Responder {
	return func(p *wire.Packet, _ []byte, _ uint32) []probetest.Reply {
		seg := wire.Segment{Src: p.Dst, Dst: p.Src, TTL: 64, SrcPort: p.DstPort, DstPort: p.SrcPort, Window: 65000}
		switch {
		case p.Flags == wire.FlagSyn:
			seg.Seq, seg.Ack, seg.Flags = 5000, p.Seq+1, wire.FlagSyn|wire.FlagAck
		case p.Flags&wire.FlagFin != 0:
			seg.Seq, seg.Ack, seg.Flags = 5001, p.Seq+1, wire.FlagFin|wire.FlagAck
		default:
			return nil
		}
		return []probetest.Reply{{Packet: probetest.Build(seg), After: rtt}}
	}
}
