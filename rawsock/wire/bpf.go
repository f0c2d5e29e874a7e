package wire

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"golang.org/x/net/bpf"
)

// FilterAccept is the snap length the filters return for an accepted
// packet: more than any packet, so the whole packet is kept.
const FilterAccept = 262144

// The filters below return FilterAccept (keep the whole packet) or 0 (drop
// it). A load beyond the end of the packet ends the program with 0, so
// short packets are dropped. If lo > hi, every packet is dropped.

// TCPFilterIPv4 returns a program for an AF_INET raw TCP socket, whose data
// starts at the IPv4 header. It accepts TCP packets that are not non-first
// fragments and whose destination port is in [lo, hi]. IP options are
// handled.
func TCPFilterIPv4(lo, hi uint16) []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadAbsolute{Off: IPv4ProtocolOffset, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ProtocolTCP, SkipTrue: 7},
		bpf.LoadAbsolute{Off: IPv4FlagsFragOffset, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 5},
		bpf.LoadMemShift{Off: IPv4VersIHLOffset}, // X = IHL*4
		bpf.LoadIndirect{Off: TCPDstPortOffset, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpLessThan, Val: uint32(lo), SkipTrue: 2},
		bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: uint32(hi), SkipTrue: 1},
		bpf.RetConstant{Val: FilterAccept},
		bpf.RetConstant{Val: 0},
	}
}

// TCPFilterIPv6 returns a program for an AF_INET6 raw TCP socket, whose data
// starts at the TCP header. It accepts segments whose destination port is
// in [lo, hi].
func TCPFilterIPv6(lo, hi uint16) []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadAbsolute{Off: TCPDstPortOffset, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpLessThan, Val: uint32(lo), SkipTrue: 2},
		bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: uint32(hi), SkipTrue: 1},
		bpf.RetConstant{Val: FilterAccept},
		bpf.RetConstant{Val: 0},
	}
}

// ICMPFilterIPv4 returns a program for an AF_INET raw ICMP socket, whose
// data starts at the IPv4 header. It accepts ICMP destination unreachable,
// time exceeded and parameter problem messages (in unfragmented packets or
// first fragments) that quote the first fragment of an IPv4 TCP packet
// whose source port, ours, is in [lo, hi]. IP options are handled in both
// the outer and the quoted header.
func ICMPFilterIPv4(lo, hi uint16) []bpf.Instruction {
	const q = ICMPHeaderSize // offset of the quoted IPv4 header from the ICMP header
	return []bpf.Instruction{
		// Outer header: ICMP, not a non-first fragment.
		/* 0 */ bpf.LoadAbsolute{Off: IPv4ProtocolOffset, Size: 1},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ProtocolICMP, SkipTrue: 22},
		/* 2 */ bpf.LoadAbsolute{Off: IPv4FlagsFragOffset, Size: 2},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 20},
		/* 4 */ bpf.LoadMemShift{Off: IPv4VersIHLOffset}, // X = outer IHL*4: the ICMP header
		// ICMP type 3, 11 or 12.
		/* 5 */ bpf.LoadIndirect{Off: ICMPTypeOffset, Size: 1},
		/* 6 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ICMPv4DestinationUnreachable, SkipTrue: 2},
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: ICMPv4TimeExceeded, SkipTrue: 1},
		/* 8 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ICMPv4ParameterProblem, SkipTrue: 15},
		// Quoted header: TCP, not a non-first fragment.
		/* 9 */ bpf.LoadIndirect{Off: q + IPv4ProtocolOffset, Size: 1},
		/* 10 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ProtocolTCP, SkipTrue: 13},
		/* 11 */ bpf.LoadIndirect{Off: q + IPv4FlagsFragOffset, Size: 2},
		/* 12 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 11},
		// Quoted version 4 and IHL >= 5; then X += quoted IHL*4, the
		// quoted TCP header minus q.
		/* 13 */ bpf.LoadIndirect{Off: q + IPv4VersIHLOffset, Size: 1},
		/* 14 */ bpf.JumpIf{Cond: bpf.JumpLessThan, Val: 0x45, SkipTrue: 9},
		/* 15 */ bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: 0x4f, SkipTrue: 8},
		/* 16 */ bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0f},
		/* 17 */ bpf.ALUOpConstant{Op: bpf.ALUOpShiftLeft, Val: 2},
		/* 18 */ bpf.ALUOpX{Op: bpf.ALUOpAdd},
		/* 19 */ bpf.TAX{},
		// Quoted TCP source port.
		/* 20 */ bpf.LoadIndirect{Off: q + TCPSrcPortOffset, Size: 2},
		/* 21 */ bpf.JumpIf{Cond: bpf.JumpLessThan, Val: uint32(lo), SkipTrue: 2},
		/* 22 */ bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: uint32(hi), SkipTrue: 1},
		/* 23 */ bpf.RetConstant{Val: FilterAccept},
		/* 24 */ bpf.RetConstant{Val: 0},
	}
}

// ICMPFilterIPv6 returns a program for an AF_INET6 raw ICMPv6 socket, whose
// data starts at the ICMPv6 header. It accepts ICMPv6 destination
// unreachable, packet too big, time exceeded and parameter problem messages
// quoting an IPv6 packet whose next header is TCP (no extension headers)
// and whose TCP source port, ours, is in [lo, hi].
func ICMPFilterIPv6(lo, hi uint16) []bpf.Instruction {
	const q = ICMPHeaderSize
	return []bpf.Instruction{
		bpf.LoadAbsolute{Off: ICMPTypeOffset, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpLessThan, Val: ICMPv6DestinationUnreachable, SkipTrue: 7},
		bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: ICMPv6ParameterProblem, SkipTrue: 6},
		bpf.LoadAbsolute{Off: q + IPv6NextHeaderOffset, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ProtocolTCP, SkipTrue: 4},
		bpf.LoadAbsolute{Off: q + IPv6MinimumSize + TCPSrcPortOffset, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpLessThan, Val: uint32(lo), SkipTrue: 2},
		bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: uint32(hi), SkipTrue: 1},
		bpf.RetConstant{Val: FilterAccept},
		bpf.RetConstant{Val: 0},
	}
}

// MaxFilterAddrs is the most addresses per family ReplyFilter and
// SYNFilter check; with more they take every address (the cookies still
// decide).
const MaxFilterAddrs = 16

// ReplyFilter returns the part of rawsock.Ring's program that looks at
// the packet alone, from its IPv4 or IPv6 header (an AF_PACKET SOCK_DGRAM
// socket's data): it accepts the packets to one of dsts that the TCP and
// ICMP filters above (a rawsock.Conn's) for the family accept. For IPv6 the TCP or ICMPv6
// header must follow the fixed header directly. If no address of dsts is
// of the family, nothing is accepted; with more than MaxFilterAddrs, any
// destination is. It is self-contained (it ends in its own returns), so
// it runs alone in the x/net/bpf VM, which knows no ancillary loads.
func ReplyFilter(dsts []netip.Addr, lo, hi uint16, v6 bool) []bpf.Instruction {
	var mine []netip.Addr
	for _, d := range dsts {
		if d.IsValid() && d.Unmap().Is6() == v6 && !slices.Contains(mine, d.Unmap()) {
			mine = append(mine, d.Unmap())
		}
	}
	if len(mine) == 0 {
		return []bpf.Instruction{bpf.RetConstant{Val: 0}}
	}
	if len(mine) > MaxFilterAddrs {
		mine = nil
	}
	var prog []bpf.Instruction
	// The destination address, a word at a time, against each of mine:
	// a mismatch jumps to the next address's check, or after the last
	// to the final ret 0 (patched below); a match jumps to the body.
	var toDrop, toBody []int
	off := uint32(IPv4DstAddrOffset)
	if v6 {
		off = IPv6DstAddrOffset
	}
	for k, d := range mine {
		a := d.AsSlice()
		var checks []int
		for i := 0; i < len(a); i += 4 {
			prog = append(prog,
				bpf.LoadAbsolute{Off: off + uint32(i), Size: 4},
				bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: binary.BigEndian.Uint32(a[i:])})
			checks = append(checks, len(prog)-1)
		}
		if k == len(mine)-1 {
			toDrop = append(toDrop, checks...)
			continue
		}
		prog = append(prog, bpf.Jump{})
		toBody = append(toBody, len(prog)-1)
		for _, i := range checks { // to the next address's first load
			j := prog[i].(bpf.JumpIf)
			j.SkipTrue = uint8(len(prog) - i - 1)
			prog[i] = j
		}
	}
	body := len(prog)
	if v6 {
		tcp := shiftLoads(TCPFilterIPv6(lo, hi), IPv6MinimumSize)
		icmp := shiftLoads(ICMPFilterIPv6(lo, hi), IPv6MinimumSize)
		prog = append(prog,
			bpf.LoadAbsolute{Off: IPv6NextHeaderOffset, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: ProtocolTCP, SkipFalse: uint8(len(tcp))})
		prog = append(prog, tcp...)
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ProtocolICMPv6, SkipTrue: uint8(len(icmp))})
		prog = append(prog, icmp...)
		prog = append(prog, bpf.RetConstant{Val: 0})
	} else {
		// Both filters check the protocol themselves.
		tcp, icmp := TCPFilterIPv4(lo, hi), ICMPFilterIPv4(lo, hi)
		prog = append(prog,
			bpf.LoadAbsolute{Off: IPv4ProtocolOffset, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ProtocolTCP, SkipTrue: uint8(len(tcp))})
		prog = append(prog, tcp...)
		prog = append(prog, icmp...) // ends in ret 0
	}
	drop := len(prog) - 1
	for _, i := range toDrop {
		j := prog[i].(bpf.JumpIf)
		j.SkipTrue = uint8(drop - i - 1)
		prog[i] = j
	}
	for _, i := range toBody {
		prog[i] = bpf.Jump{Skip: uint32(body - i - 1)}
	}
	return prog
}

// shiftLoads returns prog with every absolute load moved off bytes on: a
// filter written for data starting at a transport header, for data that
// starts off bytes earlier.
func shiftLoads(prog []bpf.Instruction, off uint32) []bpf.Instruction {
	for i, ins := range prog {
		if l, ok := ins.(bpf.LoadAbsolute); ok {
			l.Off += off
			prog[i] = l
		}
	}
	return prog
}

// SYNFilter returns the part of rawsock.Ring's program that takes our own
// probes as they leave (rawsock.RingConfig.Outgoing), from the IPv4 or IPv6
// header: TCP SYNs (SYN set; ACK, RST and FIN clear) from one of srcs with
// a source port in [lo, hi]. IPv4 options are handled, a non-first
// fragment refused; for IPv6 the TCP header must follow the fixed header.
// If no address of srcs is of the family, nothing is accepted; with more
// than MaxFilterAddrs, any source is. Self-contained like ReplyFilter.
func SYNFilter(srcs []netip.Addr, lo, hi uint16, v6 bool) []bpf.Instruction {
	var mine []netip.Addr
	for _, a := range srcs {
		if a.IsValid() && a.Unmap().Is6() == v6 && !slices.Contains(mine, a.Unmap()) {
			mine = append(mine, a.Unmap())
		}
	}
	if len(mine) == 0 {
		return []bpf.Instruction{bpf.RetConstant{Val: 0}}
	}
	if len(mine) > MaxFilterAddrs {
		mine = nil
	}
	const synMask = uint32(FlagSyn | FlagAck | FlagRst | FlagFin)
	var body []bpf.Instruction
	if v6 {
		body = []bpf.Instruction{
			bpf.LoadAbsolute{Off: IPv6NextHeaderOffset, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ProtocolTCP, SkipTrue: 7},
			bpf.LoadAbsolute{Off: IPv6MinimumSize + TCPSrcPortOffset, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpLessThan, Val: uint32(lo), SkipTrue: 5},
			bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: uint32(hi), SkipTrue: 4},
			bpf.LoadAbsolute{Off: IPv6MinimumSize + TCPFlagsOffset, Size: 1},
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: synMask},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(FlagSyn), SkipTrue: 1},
			bpf.RetConstant{Val: FilterAccept},
			bpf.RetConstant{Val: 0},
		}
	} else {
		body = []bpf.Instruction{
			bpf.LoadAbsolute{Off: IPv4ProtocolOffset, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ProtocolTCP, SkipTrue: 10},
			bpf.LoadAbsolute{Off: IPv4FlagsFragOffset, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 8},
			bpf.LoadMemShift{Off: IPv4VersIHLOffset}, // X = IHL*4
			bpf.LoadIndirect{Off: TCPSrcPortOffset, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpLessThan, Val: uint32(lo), SkipTrue: 5},
			bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: uint32(hi), SkipTrue: 4},
			bpf.LoadIndirect{Off: TCPFlagsOffset, Size: 1},
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: synMask},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(FlagSyn), SkipTrue: 1},
			bpf.RetConstant{Val: FilterAccept},
			bpf.RetConstant{Val: 0},
		}
	}
	// The source address against each of mine: one block per address
	// (a word at a time; a mismatch goes on to the next block, after the
	// last to the drop below; a match jumps to the body).
	off, words := uint32(IPv4SrcAddrOffset), 1
	if v6 {
		off, words = IPv6SrcAddrOffset, 4
	}
	block := 2*words + 1
	var prog []bpf.Instruction
	for k, a := range mine {
		b := a.AsSlice()
		for i := range words {
			prog = append(prog,
				bpf.LoadAbsolute{Off: off + uint32(4*i), Size: 4},
				bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: binary.BigEndian.Uint32(b[4*i:]), SkipTrue: uint8(block - 2*i - 2)})
		}
		prog = append(prog, bpf.Jump{Skip: uint32((len(mine)-k-1)*block + 1)})
	}
	if len(mine) > 0 {
		prog = append(prog, bpf.RetConstant{Val: 0})
	}
	return append(prog, body...)
}
