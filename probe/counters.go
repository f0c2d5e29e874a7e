package probe

import (
	"sync/atomic"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// Counters are a Client's packet counts since it opened (Client.Counters):
// a snapshot, the caller's to keep.
type Counters struct {
	// Sent counts the packets the client handed to the network: SYNs,
	// and the RSTs, ACKs, data and FINs that follow them.
	Sent uint64
	// SendErrors counts the packets the kernel refused to send (its
	// routes, its firewall, a full queue): not among Sent.
	SendErrors uint64
	// Received counts the packets the client read from its sockets:
	// TCP segments to its source ports and ICMP errors.
	Received uint64
	// Unmatched counts those of the received packets taken for no probe
	// of the client's: late answers, duplicates, strays, packets that do
	// not parse. A packet a scan on the client takes (probe/scan) is not
	// counted here.
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
	}
	return err
}

// take reads one received packet b: parsed into in, matched to its probe
// and counted.
func (p *Prober) take(b []byte, in *inbound) {
	p.count.received.Add(1)
	p.fed(b, in.rx)
	p.took = false
	if wire.Parse(b, &in.pkt) == nil {
		in.user = p.now()
		p.handle(in)
	}
	if !p.took && !p.feedOn.Load() {
		p.count.unmatched.Add(1)
	}
}

// Counters returns the client's packet counts since it opened.
func (c *Client) Counters() Counters { return c.p.count.snapshot() }
