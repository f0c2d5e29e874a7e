package trace_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/synprobe/synprobe/probe/trace"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// A router's quote of a SYN whose MSS a middlebox clamped to 1200.
func ExampleCompare() {
	o := wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true, TSVal: 1}
	opts := make([]byte, wire.MaxOptionsSize)
	seg := wire.Segment{
		Src: netip.MustParseAddr("198.18.0.1"), Dst: netip.MustParseAddr("198.18.0.26"),
		TTL: 3, ID: 0xc0ff, DF: true, SrcPort: 61000, DstPort: 443,
		Seq: 0xc0ffee00, Flags: wire.FlagSyn, Window: 64240, Options: opts[:o.Encode(opts)],
	}
	sent := make([]byte, seg.Len())
	seg.Build(sent)

	// What the router at hop 3 quotes: TTL 1, MSS 1200, checksums made
	// right by the middlebox.
	seg.TTL = 1
	binary.BigEndian.PutUint16(seg.Options[2:], 1200)
	quote := make([]byte, seg.Len())
	seg.Build(quote)

	c, err := trace.Compare(sent, quote)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Len, "bytes, partial:", c.Partial())
	for _, ch := range c.Changes {
		fmt.Println(ch)
	}
	// Output:
	// 60 bytes, partial: false
	// mss 1460→1200
}
