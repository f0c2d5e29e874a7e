package wire

import "encoding/binary"

// MaxOptionsSize is the largest TCP options area: data offset 15 minus the
// 20-byte fixed header.
const MaxOptionsSize = 40

// TCP option kinds and lengths.
const (
	TCPOptionEOL           = 0
	TCPOptionNOP           = 1
	TCPOptionMSS           = 2
	TCPOptionWS            = 3
	TCPOptionSACKPermitted = 4
	TCPOptionSACK          = 5
	TCPOptionTS            = 8

	TCPOptionMSSLength           = 4
	TCPOptionWSLength            = 3
	TCPOptionSACKPermittedLength = 2
	TCPOptionTSLength            = 10
)

// SYNOptions holds the options a SYN or SYN-ACK negotiates.
//
// The zero value has WScale 0, which means a window scale option with shift
// 0: set WScale to -1 for "absent".
type SYNOptions struct {
	MSS           uint16 // 0 = absent
	WScale        int    // window scale shift; -1 = absent
	SACKPermitted bool
	Timestamps    bool // TS option present
	TSVal, TSEcr  uint32
}

// ParseSYNOptions parses the options of a TCP header (TCP.Options). It is
// tolerant of garbage and never panics: it stops at EOL, at the end of opts,
// or at the first option whose length is below 2 or runs past the end; it
// skips NOPs, unknown kinds, and known kinds with the wrong length. When an
// option appears twice, the last one wins.
//
// MSS is 0 and WScale -1 when absent; the window scale shift is returned as
// sent, even above the RFC 7323 limit of 14. A present MSS option with
// value 0 is indistinguishable from an absent one.
func ParseSYNOptions(opts []byte) SYNOptions {
	o := SYNOptions{WScale: -1}
	for i := 0; i < len(opts); {
		kind := opts[i]
		switch kind {
		case TCPOptionEOL:
			return o
		case TCPOptionNOP:
			i++
			continue
		}
		if i+1 >= len(opts) {
			return o
		}
		n := int(opts[i+1])
		if n < 2 || n > len(opts)-i {
			return o
		}
		v := opts[i+2 : i+n]
		switch {
		case kind == TCPOptionMSS && n == TCPOptionMSSLength:
			o.MSS = binary.BigEndian.Uint16(v)
		case kind == TCPOptionWS && n == TCPOptionWSLength:
			o.WScale = int(v[0])
		case kind == TCPOptionSACKPermitted && n == TCPOptionSACKPermittedLength:
			o.SACKPermitted = true
		case kind == TCPOptionTS && n == TCPOptionTSLength:
			o.Timestamps = true
			o.TSVal = binary.BigEndian.Uint32(v[0:4])
			o.TSEcr = binary.BigEndian.Uint32(v[4:8])
		}
		i += n
	}
	return o
}

// Len returns the number of bytes Encode writes: a multiple of 4, at most
// 20.
func (o *SYNOptions) Len() int {
	n := 0
	if o.MSS != 0 {
		n += 4
	}
	if o.Timestamps {
		n += 12 // SACK_PERM, if any, shares the first word
	} else if o.SACKPermitted {
		n += 4
	}
	if o.WScale >= 0 {
		n += 4
	}
	return n
}

// Encode writes the options into b in the order and layout of a Linux
// client SYN (tcp_options_write), and returns the number of bytes written,
// always a multiple of 4:
//
//	MSS        02 04 mm mm
//	SACK+TS    04 02 08 0a tsval tsecr
//	TS only    01 01 08 0a tsval tsecr
//	SACK only  01 01 04 02
//	WS         01 03 03 ws
//
// With everything present that is exactly 20 bytes. It returns 0 if no
// option is present, or if b is shorter than Len(); a buffer of
// MaxOptionsSize bytes is always enough. A WScale above 255 is written as
// 255; a negative one means absent. TSVal and TSEcr are only written when
// Timestamps is set.
func (o *SYNOptions) Encode(b []byte) int {
	n := o.Len()
	if n == 0 || len(b) < n {
		return 0
	}
	b = b[:n]
	i := 0
	if o.MSS != 0 {
		b[i], b[i+1] = TCPOptionMSS, TCPOptionMSSLength
		binary.BigEndian.PutUint16(b[i+2:], o.MSS)
		i += 4
	}
	if o.Timestamps {
		if o.SACKPermitted {
			b[i], b[i+1] = TCPOptionSACKPermitted, TCPOptionSACKPermittedLength
		} else {
			b[i], b[i+1] = TCPOptionNOP, TCPOptionNOP
		}
		b[i+2], b[i+3] = TCPOptionTS, TCPOptionTSLength
		binary.BigEndian.PutUint32(b[i+4:], o.TSVal)
		binary.BigEndian.PutUint32(b[i+8:], o.TSEcr)
		i += 12
	} else if o.SACKPermitted {
		b[i], b[i+1] = TCPOptionNOP, TCPOptionNOP
		b[i+2], b[i+3] = TCPOptionSACKPermitted, TCPOptionSACKPermittedLength
		i += 4
	}
	if o.WScale >= 0 {
		b[i], b[i+1], b[i+2] = TCPOptionNOP, TCPOptionWS, TCPOptionWSLength
		b[i+3] = uint8(min(o.WScale, 255))
		i += 4
	}
	return i
}
