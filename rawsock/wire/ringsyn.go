package wire

import (
	"encoding/binary"
	"net/netip"
	"slices"

	"golang.org/x/net/bpf"
)

// SYNFilter returns the part of the Ring's program that takes our own
// probes as they leave (RingConfig.Outgoing), from the IPv4 or IPv6
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
