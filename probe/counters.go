package probe

import (
	"sync/atomic"

	"github.com/synprobe/synprobe/probe/internal/core"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// Counters are a Client's packet counts since it opened (Client.Counters):
// a snapshot, the caller's to keep.
type Counters struct {
	// Sent counts the packets the client handed to the network: SYNs,
	// and the RSTs, ACKs, data and FINs that follow them. A scan's
	// probes and RSTs are its Summary's, whether they leave through the
	// client's sockets or senders of the scan's own.
	Sent uint64
	// SendErrors counts the packets the kernel refused to send (its
	// routes, its firewall, a full queue): not among Sent.
	SendErrors uint64
	// Received counts the packets the client read from its sockets:
	// TCP segments to its source ports and ICMP errors.
	Received uint64
	// Unmatched counts those of the received packets taken for no probe
	// of the client's: late answers, duplicates, strays, packets that do
	// not parse. An answer to a scan on the client (probe/scan) is not
	// counted here: those the client's sockets read are handed to a
	// small scan, and those they read beside a big scan's ring are
	// copies of what the ring gives it.
	Unmatched uint64
}

// counters are the engine's; written by its thread alone, read by any.
type counters struct {
	sent, sendErrors, received, unmatched atomic.Uint64
}

func (c *counters) snapshot() Counters {
	return Counters{
		Sent:       c.sent.Load(),
		SendErrors: c.sendErrors.Load(),
		Received:   c.received.Load(),
		Unmatched:  c.unmatched.Load(),
	}
}

// send sends one packet and counts it.
func (p *Prober) send(pkt []byte, id uint32) error {
	err := p.conn.Send(pkt, id)
	if err != nil {
		p.count.sendErrors.Add(1)
	} else {
		p.count.sent.Add(1)
		if p.rec != nil {
			p.recordSent(pkt, id, p.now(), pkt[0]>>4 == 6)
		}
	}
	return err
}

// take reads one received packet b: parsed into in, matched to its probe
// and counted.
func (p *Prober) take(b []byte, in *inbound) {
	p.count.received.Add(1)
	in.raw = b
	p.fed(b, in.rx)
	if p.rec != nil {
		p.recordRx(b, in.rx)
	}
	p.took = false
	parsed := wire.Parse(b, &in.pkt) == nil
	if parsed {
		in.user = p.now()
		p.handle(in)
	}
	if !p.took && !p.feedOn.Load() && !(parsed && p.scanAnswer(&in.pkt)) {
		p.count.unmatched.Add(1)
	}
}

// scanAnswer reports whether pkt answers a scan's SYN (core.ScanID in its
// ISN): a big scan reads its answers from its ring, and the client's own
// sockets, if they receive, read copies of them, which are the scan's,
// not strays.
func (p *Prober) scanAnswer(pkt *wire.Packet) bool {
	a, ok := core.Of(pkt, p.portLo, p.portHi)
	return ok && a.Keyed(&p.cookie, core.ScanID)
}

// Counters returns the client's packet counts since it opened.
func (c *Client) Counters() Counters { return c.p.count.snapshot() }
