package wire

import "encoding/binary"

// TCP header field offsets.
const (
	TCPSrcPortOffset   = 0
	TCPDstPortOffset   = 2
	TCPSeqNumOffset    = 4
	TCPAckNumOffset    = 8
	TCPDataOffset      = 12
	TCPFlagsOffset     = 13
	TCPWinSizeOffset   = 14
	TCPChecksumOffset  = 16
	TCPUrgentPtrOffset = 18
)

const (
	// TCPMinimumSize is the size of a TCP header without options.
	TCPMinimumSize = 20
	// TCPMaximumHeaderSize is the size of a TCP header with 40 bytes of
	// options (data offset 15).
	TCPMaximumHeaderSize = TCPMinimumSize + MaxOptionsSize
)

// TCPFlags is the TCP flags byte.
type TCPFlags uint8

// TCP flags.
const (
	FlagFin TCPFlags = 1 << iota
	FlagSyn
	FlagRst
	FlagPsh
	FlagAck
	FlagUrg
	FlagEce
	FlagCwr
)

// String returns one letter per flag set, in bit order: F S R P A U E C, so
// SYN|ACK is "SA" and RST|ACK is "RA". No flag at all is ".". It does not
// allocate.
func (f TCPFlags) String() string { return tcpFlagNames[f] }

// tcpFlagNames holds the names of all 256 flag combinations, as substrings
// of one string.
var tcpFlagNames = func() (names [256]string) {
	const letters = "FSRPAUEC"
	var all []byte
	var end [256]int
	for f := range 256 {
		if f == 0 {
			all = append(all, '.')
		}
		for i := range 8 {
			if f&(1<<i) != 0 {
				all = append(all, letters[i])
			}
		}
		end[f] = len(all)
	}
	s, start := string(all), 0
	for f := range 256 {
		names[f], start = s[start:end[f]], end[f]
	}
	return names
}()

// Has reports whether all the flags in g are set in f.
func (f TCPFlags) Has(g TCPFlags) bool { return f&g == g }

// TCP is a view of a TCP header and its payload. Accessors assume the buffer
// holds at least TCPMinimumSize bytes; Options and Payload also cope with
// an inconsistent data offset.
type TCP []byte

// SrcPort returns the source port.
func (b TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(b[TCPSrcPortOffset:]) }

// DstPort returns the destination port.
func (b TCP) DstPort() uint16 { return binary.BigEndian.Uint16(b[TCPDstPortOffset:]) }

// Seq returns the sequence number.
func (b TCP) Seq() uint32 { return binary.BigEndian.Uint32(b[TCPSeqNumOffset:]) }

// Ack returns the acknowledgment number.
func (b TCP) Ack() uint32 { return binary.BigEndian.Uint32(b[TCPAckNumOffset:]) }

// DataOffset returns the header length in bytes, options included.
func (b TCP) DataOffset() int { return int(b[TCPDataOffset]>>4) * 4 }

// Flags returns the flags byte.
func (b TCP) Flags() TCPFlags { return TCPFlags(b[TCPFlagsOffset]) }

// Window returns the window size field (not scaled).
func (b TCP) Window() uint16 { return binary.BigEndian.Uint16(b[TCPWinSizeOffset:]) }

// Checksum returns the checksum field.
func (b TCP) Checksum() uint16 { return binary.BigEndian.Uint16(b[TCPChecksumOffset:]) }

// UrgentPointer returns the urgent pointer.
func (b TCP) UrgentPointer() uint16 { return binary.BigEndian.Uint16(b[TCPUrgentPtrOffset:]) }

// Options returns the options, between the fixed header and DataOffset, or
// nil if the data offset is below 20 or beyond the end of b.
func (b TCP) Options() []byte {
	n := b.DataOffset()
	if n < TCPMinimumSize || n > len(b) {
		return nil
	}
	return b[TCPMinimumSize:n]
}

// Payload returns the bytes after DataOffset, or nil if the data offset is
// below 20 or beyond the end of b.
func (b TCP) Payload() []byte {
	n := b.DataOffset()
	if n < TCPMinimumSize || n > len(b) {
		return nil
	}
	return b[n:]
}

// SetSrcPort sets the source port.
func (b TCP) SetSrcPort(p uint16) { binary.BigEndian.PutUint16(b[TCPSrcPortOffset:], p) }

// SetDstPort sets the destination port.
func (b TCP) SetDstPort(p uint16) { binary.BigEndian.PutUint16(b[TCPDstPortOffset:], p) }

// SetSeq sets the sequence number.
func (b TCP) SetSeq(n uint32) { binary.BigEndian.PutUint32(b[TCPSeqNumOffset:], n) }

// SetAck sets the acknowledgment number.
func (b TCP) SetAck(n uint32) { binary.BigEndian.PutUint32(b[TCPAckNumOffset:], n) }

// SetDataOffset sets the header length in bytes (a multiple of 4 between 20
// and 60); the reserved bits and the old NS bit are cleared.
func (b TCP) SetDataOffset(n int) { b[TCPDataOffset] = uint8(n/4) << 4 }

// SetFlags sets the flags byte.
func (b TCP) SetFlags(f TCPFlags) { b[TCPFlagsOffset] = uint8(f) }

// SetWindow sets the window size field.
func (b TCP) SetWindow(w uint16) { binary.BigEndian.PutUint16(b[TCPWinSizeOffset:], w) }

// SetChecksum sets the checksum field.
func (b TCP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(b[TCPChecksumOffset:], c) }

// SetUrgentPointer sets the urgent pointer.
func (b TCP) SetUrgentPointer(p uint16) {
	binary.BigEndian.PutUint16(b[TCPUrgentPtrOffset:], p)
}

// CalculateChecksum returns the checksum to store with SetChecksum for the
// whole segment b (header, options and payload), given the pseudo-header
// sum from PseudoHeaderChecksum. The current checksum field does not matter.
func (b TCP) CalculateChecksum(pseudo uint16) uint16 {
	sum := Checksum(b[:TCPChecksumOffset], pseudo)
	return ^Checksum(b[TCPChecksumOffset+2:], sum)
}

// IsChecksumValid reports whether the checksum field of segment b is correct
// for the given pseudo-header sum.
func (b TCP) IsChecksumValid(pseudo uint16) bool {
	return Checksum(b, pseudo) == 0xffff
}
