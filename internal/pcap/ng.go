package pcap

import (
	"bufio"
	"encoding/binary"
	"io"
	"time"
)

// ngWriter writes the three pcapng blocks a capture of synprobe's needs
// (draft-ietf-opsawg-pcapng): a Section Header, one Interface
// Description (LINKTYPE_RAW, nanosecond times) and an Enhanced Packet per
// packet with its direction (epb_flags) and a comment. It is written
// here rather than linked from gopacket's pcapgo, whose layers package
// cost every synprobe run, --pcap or not, 2.2 MB of binary, 1.3 MB of
// memory and about 2.5 ms of start-up (docs/design.md); the tests read
// the files back with pcapgo and tcpdump.
type ngWriter struct {
	w   *bufio.Writer
	buf []byte
}

// pcapng block types and option codes.
const (
	blockSHB = 0x0A0D0D0A
	blockIDB = 0x00000001
	blockEPB = 0x00000006

	optEnd         = 0
	optComment     = 1
	optSHBHardware = 2
	optSHBOS       = 3
	optSHBUserAppl = 4
	optIFName      = 2
	optIFDesc      = 3
	optIFTsresol   = 9
	optIFOS        = 12
	optEPBFlags    = 2

	linkTypeRaw = 101 // LINKTYPE_RAW: an IPv4 or IPv6 packet, no link header

	epbInbound  = 1 // epb_flags bits 0-1: the direction
	epbOutbound = 2
)

// le: pcapng files are in the writer's byte order; the section's
// byte-order magic tells readers which. Little-endian, as on the machines
// synprobe runs on (and any reader takes either).
var le = binary.LittleEndian

func newNgWriter(w io.Writer, hardware, os, app, ifName, ifDesc string) (*ngWriter, error) {
	n := &ngWriter{w: bufio.NewWriterSize(w, 64<<10)}
	// Section Header: magic, version 1.0, section length unknown (-1).
	b := le.AppendUint32(nil, 0x1A2B3C4D)
	b = le.AppendUint16(b, 1)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint64(b, ^uint64(0))
	b = appendOpt(b, optSHBHardware, []byte(hardware))
	b = appendOpt(b, optSHBOS, []byte(os))
	b = appendOpt(b, optSHBUserAppl, []byte(app))
	b = appendOpt(b, optEnd, nil)
	if err := n.block(blockSHB, b); err != nil {
		return nil, err
	}
	// Interface Description: link type, reserved, snap length 0 (none).
	b = le.AppendUint16(b[:0], linkTypeRaw)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint32(b, 0)
	b = appendOpt(b, optIFName, []byte(ifName))
	b = appendOpt(b, optIFDesc, []byte(ifDesc))
	b = appendOpt(b, optIFTsresol, []byte{9}) // 10^-9 s
	b = appendOpt(b, optIFOS, []byte(os))
	b = appendOpt(b, optEnd, nil)
	if err := n.block(blockIDB, b); err != nil {
		return nil, err
	}
	return n, nil
}

// writePacket writes one Enhanced Packet Block on interface 0.
func (n *ngWriter) writePacket(t time.Time, data []byte, outbound bool, comment string) error {
	b := n.buf[:0]
	ns := uint64(t.UnixNano())
	b = le.AppendUint32(b, 0) // interface
	b = le.AppendUint32(b, uint32(ns>>32))
	b = le.AppendUint32(b, uint32(ns))
	b = le.AppendUint32(b, uint32(len(data))) // captured
	b = le.AppendUint32(b, uint32(len(data))) // original
	b = append(b, data...)
	b = pad(b)
	flags := uint32(epbInbound)
	if outbound {
		flags = epbOutbound
	}
	b = appendOpt(b, optEPBFlags, le.AppendUint32(nil, flags))
	if comment != "" {
		b = appendOpt(b, optComment, []byte(comment))
	}
	b = appendOpt(b, optEnd, nil)
	n.buf = b
	return n.block(blockEPB, b)
}

func (n *ngWriter) Flush() error { return n.w.Flush() }

// block writes a block: type, total length, body, total length.
func (n *ngWriter) block(typ uint32, body []byte) error {
	total := uint32(12 + len(body))
	var h [8]byte
	le.PutUint32(h[:4], typ)
	le.PutUint32(h[4:], total)
	if _, err := n.w.Write(h[:]); err != nil {
		return err
	}
	if _, err := n.w.Write(body); err != nil {
		return err
	}
	_, err := n.w.Write(h[4:])
	return err
}

// appendOpt appends an option (code, length, value padded to 32 bits);
// optEnd has no value.
func appendOpt(b []byte, code uint16, v []byte) []byte {
	b = le.AppendUint16(b, code)
	b = le.AppendUint16(b, uint16(len(v)))
	b = append(b, v...)
	return pad(b)
}

// pad pads b to a multiple of 4 bytes.
func pad(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
