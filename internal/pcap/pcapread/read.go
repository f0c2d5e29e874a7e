// Package pcapread reads back the files package pcap writes, with
// gopacket's pcapgo: an independent reader for tests and tools. synprobe
// itself does not link it (pcap's writer is its own, for what pcapgo's
// packages cost every run).
package pcapread

import (
	"io"
	"strings"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
)

// Record is a packet read back from a capture file.
type Record struct {
	Data    []byte
	Time    time.Time
	Sent    bool   // outbound (epb_flags); else received
	Kernel  bool   // its comment says a kernel stamp timed it
	Comment string // the packet's first comment
}

// Read reads every packet of a pcapng file.
func Read(r io.Reader) ([]Record, error) {
	ng, err := pcapgo.NewNgReader(r, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		return nil, err
	}
	var recs []Record
	for {
		data, ci, opts, err := ng.ReadPacketDataWithOptions()
		if err == io.EOF {
			return recs, nil
		}
		if err != nil {
			return recs, err
		}
		rec := Record{Data: data, Time: ci.Timestamp}
		if len(opts.Comments) > 0 {
			rec.Comment = opts.Comments[0]
		}
		rec.Sent = opts.Flags != nil && opts.Flags.Direction == pcapgo.NgEpbFlagDirectionOutbound
		rec.Kernel = strings.Contains(rec.Comment, "time: kernel")
		recs = append(recs, rec)
	}
}
