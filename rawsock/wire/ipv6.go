package wire

import (
	"encoding/binary"
	"net/netip"
)

// IPv6 header field offsets.
const (
	IPv6VersTCFLOffset     = 0
	IPv6PayloadLenOffset   = 4
	IPv6NextHeaderOffset   = 6
	IPv6HopLimitOffset     = 7
	IPv6SrcAddrOffset      = 8
	IPv6DstAddrOffset      = 24
	IPv6FragmentHeaderSize = 8
)

const (
	// IPv6MinimumSize is the size of the fixed IPv6 header.
	IPv6MinimumSize = 40
	// IPv6Version is the value of the version field.
	IPv6Version = 6
)

// IPv6 extension header numbers skipped by Parse.
const (
	IPv6HopByHopHeader    = 0
	IPv6RoutingHeader     = 43
	IPv6FragmentHeader    = 44
	IPv6DestinationHeader = 60
	IPv6NoNextHeader      = 59
)

// maxExtHeaders bounds the extension header walk in Parse.
const maxExtHeaders = 8

// IPv6 is a view of an IPv6 header and its payload. Accessors assume the
// buffer holds at least IPv6MinimumSize bytes (IsValid checks this).
type IPv6 []byte

// IsValid reports whether b starts with an IPv6 header (version 6) whose
// payload length fits in pktLen and len(b).
func (b IPv6) IsValid(pktLen int) bool {
	if len(b) < IPv6MinimumSize || b[0]>>4 != IPv6Version {
		return false
	}
	n := IPv6MinimumSize + int(b.PayloadLength())
	return n <= pktLen && n <= len(b)
}

// Version returns the IP version field (6 for a valid header).
func (b IPv6) Version() uint8 { return b[IPv6VersTCFLOffset] >> 4 }

// TrafficClass returns the traffic class (DSCP and ECN).
func (b IPv6) TrafficClass() uint8 {
	return uint8(binary.BigEndian.Uint32(b[IPv6VersTCFLOffset:]) >> 20)
}

// FlowLabel returns the 20-bit flow label.
func (b IPv6) FlowLabel() uint32 {
	return binary.BigEndian.Uint32(b[IPv6VersTCFLOffset:]) & 0xfffff
}

// PayloadLength returns the payload length field: the bytes after the fixed
// header, extension headers included.
func (b IPv6) PayloadLength() uint16 { return binary.BigEndian.Uint16(b[IPv6PayloadLenOffset:]) }

// NextHeader returns the next header field: an extension header or the
// upper-layer protocol.
func (b IPv6) NextHeader() uint8 { return b[IPv6NextHeaderOffset] }

// HopLimit returns the hop limit.
func (b IPv6) HopLimit() uint8 { return b[IPv6HopLimitOffset] }

// SourceAddress returns the source address.
func (b IPv6) SourceAddress() netip.Addr {
	return netip.AddrFrom16([16]byte(b[IPv6SrcAddrOffset : IPv6SrcAddrOffset+16]))
}

// DestinationAddress returns the destination address.
func (b IPv6) DestinationAddress() netip.Addr {
	return netip.AddrFrom16([16]byte(b[IPv6DstAddrOffset : IPv6DstAddrOffset+16]))
}

// Payload returns the bytes after the fixed header, up to the smaller of
// the payload length and the end of b.
func (b IPv6) Payload() []byte {
	return b[IPv6MinimumSize:min(IPv6MinimumSize+int(b.PayloadLength()), len(b))]
}

// SetTrafficClass sets the version to 6 and the traffic class, keeping the
// flow label.
func (b IPv6) SetTrafficClass(tc uint8) {
	v := binary.BigEndian.Uint32(b[IPv6VersTCFLOffset:])
	binary.BigEndian.PutUint32(b[IPv6VersTCFLOffset:], IPv6Version<<28|uint32(tc)<<20|v&0xfffff)
}

// SetFlowLabel sets the version to 6 and the flow label (low 20 bits of fl),
// keeping the traffic class.
func (b IPv6) SetFlowLabel(fl uint32) {
	v := binary.BigEndian.Uint32(b[IPv6VersTCFLOffset:])
	binary.BigEndian.PutUint32(b[IPv6VersTCFLOffset:], IPv6Version<<28|v&0x0ff00000|fl&0xfffff)
}

// SetPayloadLength sets the payload length field.
func (b IPv6) SetPayloadLength(n uint16) {
	binary.BigEndian.PutUint16(b[IPv6PayloadLenOffset:], n)
}

// SetNextHeader sets the next header field.
func (b IPv6) SetNextHeader(nh uint8) { b[IPv6NextHeaderOffset] = nh }

// SetHopLimit sets the hop limit.
func (b IPv6) SetHopLimit(h uint8) { b[IPv6HopLimitOffset] = h }

// SetSourceAddress sets the source address (IPv4 addresses are written in
// their IPv4-mapped form).
func (b IPv6) SetSourceAddress(a netip.Addr) {
	a16 := a.As16()
	copy(b[IPv6SrcAddrOffset:IPv6SrcAddrOffset+16], a16[:])
}

// SetDestinationAddress sets the destination address (IPv4 addresses are
// written in their IPv4-mapped form).
func (b IPv6) SetDestinationAddress(a netip.Addr) {
	a16 := a.As16()
	copy(b[IPv6DstAddrOffset:IPv6DstAddrOffset+16], a16[:])
}

// skipExtHeaders walks the IPv6 extension headers starting with next header
// nh at the start of b, and returns the upper-layer protocol and its bytes.
// It skips at most maxExtHeaders hop-by-hop, routing, destination options
// and fragment headers. A fragment header with a non-zero offset gives
// ErrUnsupported, since the upper-layer header is in the first fragment,
// and so does a first fragment of a packet (not of a quote): its checksum
// covers bytes it does not hold.
//
// An extension header longer than b is malformed in a packet (its payload
// length is known to fit), but only truncated in an ICMPv6 quote: quoted
// says which.
func skipExtHeaders(nh uint8, b []byte, quoted bool) (uint8, []byte, error) {
	overrun := ErrMalformed
	if quoted {
		overrun = ErrTruncated
	}
	for range maxExtHeaders {
		switch nh {
		case IPv6HopByHopHeader, IPv6RoutingHeader, IPv6DestinationHeader:
			if len(b) < 8 {
				return nh, nil, ErrTruncated
			}
			n := (int(b[1]) + 1) * 8
			if n > len(b) {
				return nh, nil, overrun
			}
			nh, b = b[0], b[n:]
		case IPv6FragmentHeader:
			if len(b) < IPv6FragmentHeaderSize {
				return nh, nil, ErrTruncated
			}
			off := binary.BigEndian.Uint16(b[2:])
			if off&^7 != 0 {
				return nh, nil, ErrUnsupported
			}
			// A first fragment of a packet (M set) is a part whose
			// checksum cannot be verified; a quote may be one.
			if off&1 != 0 && !quoted {
				return nh, nil, ErrUnsupported
			}
			nh, b = b[0], b[IPv6FragmentHeaderSize:]
		default:
			return nh, b, nil
		}
	}
	switch nh {
	case IPv6HopByHopHeader, IPv6RoutingHeader, IPv6DestinationHeader, IPv6FragmentHeader:
		return nh, nil, ErrUnsupported // too many extension headers
	}
	return nh, b, nil
}
