package wire

import (
	"encoding/binary"
	"net/netip"
)

// IPv4 header field offsets.
const (
	IPv4VersIHLOffset     = 0
	IPv4TOSOffset         = 1
	IPv4TotalLengthOffset = 2
	IPv4IDOffset          = 4
	IPv4FlagsFragOffset   = 6
	IPv4TTLOffset         = 8
	IPv4ProtocolOffset    = 9
	IPv4ChecksumOffset    = 10
	IPv4SrcAddrOffset     = 12
	IPv4DstAddrOffset     = 16
)

const (
	// IPv4MinimumSize is the size of an IPv4 header without options.
	IPv4MinimumSize = 20
	// IPv4MaximumHeaderSize is the size of an IPv4 header with 40 bytes of
	// options (IHL 15).
	IPv4MaximumHeaderSize = 60
	// IPv4Version is the value of the version field.
	IPv4Version = 4
)

// IPv4 flags, as returned by IPv4.Flags.
const (
	IPv4FlagMoreFragments = 1 << 0
	IPv4FlagDontFragment  = 1 << 1
)

// IPv4 is a view of an IPv4 header and its payload. Accessors assume the
// buffer holds at least IPv4MinimumSize bytes (IsValid checks this); only
// Payload also copes with inconsistent length fields.
type IPv4 []byte

// IsValid reports whether b starts with a well-formed IPv4 header of a packet
// whose total length fits in pktLen bytes: version 4, IHL at least 5, header
// within the total length, and total length within pktLen and len(b).
func (b IPv4) IsValid(pktLen int) bool {
	if len(b) < IPv4MinimumSize || b[0]>>4 != IPv4Version {
		return false
	}
	hl, tl := b.HeaderLength(), int(b.TotalLength())
	return hl >= IPv4MinimumSize && hl <= tl && tl <= pktLen && tl <= len(b)
}

// Version returns the IP version field (4 for a valid header).
func (b IPv4) Version() uint8 { return b[IPv4VersIHLOffset] >> 4 }

// HeaderLength returns the header length in bytes (IHL * 4).
func (b IPv4) HeaderLength() int { return int(b[IPv4VersIHLOffset]&0x0f) * 4 }

// TOS returns the type of service byte (DSCP and ECN).
func (b IPv4) TOS() uint8 { return b[IPv4TOSOffset] }

// TotalLength returns the total length field: header plus payload.
func (b IPv4) TotalLength() uint16 {
	return binary.BigEndian.Uint16(b[IPv4TotalLengthOffset:])
}

// ID returns the identification field.
func (b IPv4) ID() uint16 { return binary.BigEndian.Uint16(b[IPv4IDOffset:]) }

// Flags returns the 3 flag bits: IPv4FlagDontFragment, IPv4FlagMoreFragments.
func (b IPv4) Flags() uint8 { return b[IPv4FlagsFragOffset] >> 5 }

// DF reports whether the don't-fragment flag is set.
func (b IPv4) DF() bool { return b.Flags()&IPv4FlagDontFragment != 0 }

// MF reports whether the more-fragments flag is set.
func (b IPv4) MF() bool { return b.Flags()&IPv4FlagMoreFragments != 0 }

// FragmentOffset returns the fragment offset in bytes.
func (b IPv4) FragmentOffset() uint16 {
	return binary.BigEndian.Uint16(b[IPv4FlagsFragOffset:]) << 3
}

// TTL returns the time to live.
func (b IPv4) TTL() uint8 { return b[IPv4TTLOffset] }

// Protocol returns the upper-layer protocol number.
func (b IPv4) Protocol() uint8 { return b[IPv4ProtocolOffset] }

// Checksum returns the header checksum field.
func (b IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(b[IPv4ChecksumOffset:]) }

// SourceAddress returns the source address.
func (b IPv4) SourceAddress() netip.Addr {
	return netip.AddrFrom4([4]byte(b[IPv4SrcAddrOffset : IPv4SrcAddrOffset+4]))
}

// DestinationAddress returns the destination address.
func (b IPv4) DestinationAddress() netip.Addr {
	return netip.AddrFrom4([4]byte(b[IPv4DstAddrOffset : IPv4DstAddrOffset+4]))
}

// Options returns the IP options, between the fixed header and
// HeaderLength, or nil if the header length does not fit in b.
func (b IPv4) Options() []byte {
	hl := b.HeaderLength()
	if hl < IPv4MinimumSize || hl > len(b) {
		return nil
	}
	return b[IPv4MinimumSize:hl]
}

// Payload returns the bytes from HeaderLength to the smaller of TotalLength
// and len(b), so link-layer padding is left out. It returns nil if the
// lengths are inconsistent.
func (b IPv4) Payload() []byte {
	hl, end := b.HeaderLength(), min(int(b.TotalLength()), len(b))
	if hl < IPv4MinimumSize || hl > end {
		return nil
	}
	return b[hl:end]
}

// SetHeaderLength sets the version to 4 and the IHL to hl/4. hl must be a
// multiple of 4 between 20 and 60.
func (b IPv4) SetHeaderLength(hl int) {
	b[IPv4VersIHLOffset] = IPv4Version<<4 | uint8(hl/4)&0x0f
}

// SetTOS sets the type of service byte.
func (b IPv4) SetTOS(tos uint8) { b[IPv4TOSOffset] = tos }

// SetTotalLength sets the total length field.
func (b IPv4) SetTotalLength(n uint16) {
	binary.BigEndian.PutUint16(b[IPv4TotalLengthOffset:], n)
}

// SetID sets the identification field.
func (b IPv4) SetID(id uint16) { binary.BigEndian.PutUint16(b[IPv4IDOffset:], id) }

// SetFlagsFragmentOffset sets the 3 flag bits and the fragment offset, in
// bytes (a multiple of 8).
func (b IPv4) SetFlagsFragmentOffset(flags uint8, offset uint16) {
	binary.BigEndian.PutUint16(b[IPv4FlagsFragOffset:], uint16(flags&7)<<13|offset>>3)
}

// SetTTL sets the time to live.
func (b IPv4) SetTTL(ttl uint8) { b[IPv4TTLOffset] = ttl }

// SetProtocol sets the upper-layer protocol number.
func (b IPv4) SetProtocol(p uint8) { b[IPv4ProtocolOffset] = p }

// SetChecksum sets the header checksum field.
func (b IPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(b[IPv4ChecksumOffset:], c) }

// SetSourceAddress sets the source address; a must be IPv4 or IPv4-mapped.
func (b IPv4) SetSourceAddress(a netip.Addr) {
	a16 := a.As16()
	copy(b[IPv4SrcAddrOffset:IPv4SrcAddrOffset+4], a16[12:])
}

// SetDestinationAddress sets the destination address; a must be IPv4 or
// IPv4-mapped.
func (b IPv4) SetDestinationAddress(a netip.Addr) {
	a16 := a.As16()
	copy(b[IPv4DstAddrOffset:IPv4DstAddrOffset+4], a16[12:])
}

// CalculateChecksum returns the header checksum to store with SetChecksum.
// The current value of the checksum field does not matter.
func (b IPv4) CalculateChecksum() uint16 {
	hl := b.checksumLength()
	sum := Checksum(b[:IPv4ChecksumOffset], 0)
	return ^Checksum(b[IPv4ChecksumOffset+2:hl], sum)
}

// IsChecksumValid reports whether the header checksum is correct.
func (b IPv4) IsChecksumValid() bool {
	return Checksum(b[:b.checksumLength()], 0) == 0xffff
}

// checksumLength is HeaderLength clamped to [IPv4MinimumSize, len(b)].
func (b IPv4) checksumLength() int {
	return max(IPv4MinimumSize, min(b.HeaderLength(), len(b)))
}
