package netlab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// ErrTruncated reports a pcap file that ends inside a header or a record.
var ErrTruncated = errors.New("netlab: truncated pcap")

// pcap magic numbers, as read in the file's byte order.
const (
	magicMicro = 0xa1b2c3d4
	magicNano  = 0xa1b23c4d
)

// Link types (https://www.tcpdump.org/linktypes.html) that ParsePCAP turns
// into IP packets.
const (
	linkEthernet = 1
	linkRaw      = 101
	linkLinuxSLL = 113
	linkIPv4     = 228
	linkIPv6     = 229
)

const (
	globalHeaderLen = 24
	recordHeaderLen = 16
)

// ParsePCAP parses a classic pcap file (not pcapng) with micro- or
// nanosecond time stamps in either byte order and returns its IP packets.
// Ethernet (with an optional 802.1Q tag), Linux cooked (SLL) and raw IP link
// types are understood; frames that carry no IPv4 or IPv6 packet (ARP, runts)
// are skipped. Data slices alias b.
//
// A file cut short returns the packets before the cut and an error wrapping
// ErrTruncated, as tcpdump killed mid-write leaves.
func ParsePCAP(b []byte) ([]CapturedPacket, error) {
	if len(b) < globalHeaderLen {
		return nil, fmt.Errorf("%w: %d-byte global header", ErrTruncated, len(b))
	}
	var bo binary.ByteOrder
	var nano bool
	switch {
	case binary.LittleEndian.Uint32(b) == magicMicro:
		bo = binary.LittleEndian
	case binary.LittleEndian.Uint32(b) == magicNano:
		bo, nano = binary.LittleEndian, true
	case binary.BigEndian.Uint32(b) == magicMicro:
		bo = binary.BigEndian
	case binary.BigEndian.Uint32(b) == magicNano:
		bo, nano = binary.BigEndian, true
	default:
		return nil, fmt.Errorf("netlab: not a pcap file (magic %#08x)", binary.BigEndian.Uint32(b))
	}
	if major := bo.Uint16(b[4:]); major != 2 {
		return nil, fmt.Errorf("netlab: pcap version %d not supported", major)
	}
	link := bo.Uint32(b[20:]) & 0x0fffffff // upper bits: FCS length flags
	switch link {
	case linkEthernet, linkRaw, linkLinuxSLL, linkIPv4, linkIPv6:
	default:
		return nil, fmt.Errorf("netlab: pcap link type %d not supported", link)
	}

	var pkts []CapturedPacket
	for off := globalHeaderLen; off < len(b); {
		if len(b)-off < recordHeaderLen {
			return pkts, fmt.Errorf("%w: record header at offset %d", ErrTruncated, off)
		}
		h := b[off : off+recordHeaderLen]
		sec, frac, incl := bo.Uint32(h), bo.Uint32(h[4:]), bo.Uint32(h[8:])
		off += recordHeaderLen
		if uint64(incl) > uint64(len(b)-off) {
			return pkts, fmt.Errorf("%w: %d-byte record at offset %d, %d bytes left",
				ErrTruncated, incl, off-recordHeaderLen, len(b)-off)
		}
		frame := b[off : off+int(incl) : off+int(incl)]
		orig := int(bo.Uint32(h[12:]))
		off += int(incl)

		nsec := int64(frac)
		if !nano {
			nsec *= 1000
		}
		if ip := ipPayload(link, frame); ip != nil {
			n := len(ip) + orig - len(frame) // the packet's length on the wire
			pkts = append(pkts, CapturedPacket{Time: time.Unix(int64(sec), nsec), Data: trimLength(ip), Len: n})
		}
	}
	return pkts, nil
}

// trimLength returns ip with its length field cut down to the bytes
// captured, when the snapshot is shorter than the packet (copied first:
// the capture buffer stays intact).
func trimLength(ip []byte) []byte {
	switch {
	case len(ip) >= 20 && ip[0]>>4 == 4 && int(binary.BigEndian.Uint16(ip[2:])) > len(ip):
		ip = append([]byte(nil), ip...)
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	case len(ip) >= 40 && ip[0]>>4 == 6 && int(binary.BigEndian.Uint16(ip[4:]))+40 > len(ip):
		ip = append([]byte(nil), ip...)
		binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-40))
	}
	return ip
}

// ipPayload strips the link-layer header of frame and returns the IP packet,
// or nil when the frame carries none.
func ipPayload(link uint32, frame []byte) []byte {
	var etherType uint16
	switch link {
	case linkEthernet:
		if len(frame) < 14 {
			return nil
		}
		etherType, frame = binary.BigEndian.Uint16(frame[12:]), frame[14:]
		if etherType == 0x8100 { // 802.1Q tag: TCI, then the real type
			if len(frame) < 4 {
				return nil
			}
			etherType, frame = binary.BigEndian.Uint16(frame[2:]), frame[4:]
		}
	case linkLinuxSLL:
		if len(frame) < 16 {
			return nil
		}
		etherType, frame = binary.BigEndian.Uint16(frame[14:]), frame[16:]
	default: // raw IP
		if len(frame) == 0 {
			return nil
		}
		switch frame[0] >> 4 {
		case 4:
			etherType = 0x0800
		case 6:
			etherType = 0x86dd
		}
	}
	switch {
	case etherType == 0x0800 && len(frame) > 0 && frame[0]>>4 == 4:
		return frame
	case etherType == 0x86dd && len(frame) > 0 && frame[0]>>4 == 6:
		return frame
	}
	return nil
}
