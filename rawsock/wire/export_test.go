package wire

// The unexported helpers the external tests check against.
var (
	SkipExtHeaders = skipExtHeaders
	IsICMPv4Error  = isICMPv4Error
	IsICMPv6Error  = isICMPv6Error
)

// SipHash24 is SipHash-2-4 of msg under c's key.
func SipHash24(c Cookie, msg []byte) uint64 { return sipHash24(c.k0, c.k1, msg) }

// The errors of Segment.Build.
var (
	ErrAddrFamily    = errAddrFamily
	ErrOptionsLength = errOptionsLength
	ErrTooLong       = errTooLong
)
