//go:build linux

package rstguard

import (
	"fmt"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/internal/nl"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// rstDrainMax bounds the packets one Escaped call reads; the rest wait
// for the next call (or are counted as drops, should the queue fill).
const rstDrainMax = 4096

// newWatch is NewWatchPorts on Linux; its arguments are checked.
func newWatch(ranges []rawsock.PortRange, mark uint32) (*Watch, error) {
	prog, err := bpf.Assemble(rstWatchFilter(ranges, mark))
	if err != nil {
		return nil, fmt.Errorf("rawsock: assemble filter: %w", err)
	}
	// Protocol 0: the socket receives nothing until bind, so no packet
	// can queue before the filter is in place, and there is nothing to
	// drain. (Draining after the filter was attached would throw away
	// RSTs that passed it.)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, nl.OpError("socket", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: (*unix.SockFilter)(unsafe.Pointer(&prog[0]))}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		unix.Close(fd)
		return nil, nl.OpError("setsockopt SO_ATTACH_FILTER", err)
	}
	// Every protocol on every interface (ifindex 0).
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: nl.Htons(unix.ETH_P_ALL)}); err != nil {
		unix.Close(fd)
		return nil, nl.OpError("bind", err)
	}
	return &Watch{fd: fd}, nil
}

// drain counts and discards the queued packets, and the ones the socket
// dropped. w.mu is held.
func (w *Watch) drain() {
	if w.fd < 0 {
		return
	}
	for range rstDrainMax {
		// The packet is counted, not read: a zero-length recvfrom frees
		// it (a zero-length read(2) would return 0 and leave it queued).
		_, _, err := unix.Recvfrom(w.fd, nil, unix.MSG_DONTWAIT)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			break // EAGAIN: empty
		}
		w.n++
	}
	// PACKET_STATISTICS counts the packets that passed the filter but
	// found the queue full, and resets on every read.
	if st, err := unix.GetsockoptTpacketStats(w.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
		w.n += uint64(st.Drops)
	}
}

func (w *Watch) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fd < 0 {
		return nil
	}
	w.drain()
	err := unix.Close(w.fd)
	w.fd = -1
	if err != nil {
		return nl.OpError("close", err)
	}
	return nil
}

// rstWatchFilter returns the watch's program: the checks that need the
// kernel's ancillary data (packet type, mark, link-layer protocol) first,
// then rstFilterBody for IPv4 or IPv6. The socket is SOCK_DGRAM, so the
// data starts at the network header. The bodies end in their own returns
// and may be longer than a conditional jump reaches, so they are entered
// by falling through or by an unconditional jump.
//
//	ld type; jne PACKET_OUTGOING -> drop
//	ld mark; jeq MARK -> drop
//	ld proto; jeq ETH_P_IP -> v4
//	ja v6
//	drop: ret 0
//	v4: <IPv4 body>
//	v6: jeq ETH_P_IPV6 -> body6
//	ret 0
//	body6: <IPv6 body>
func rstWatchFilter(ranges []rawsock.PortRange, mark uint32) []bpf.Instruction {
	v4, v6 := rstFilterBody(ranges, false), rstFilterBody(ranges, true)
	prog := []bpf.Instruction{
		/* 0 */ bpf.LoadExtension{Num: bpf.ExtType},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.PACKET_OUTGOING, SkipTrue: 5},
		/* 2 */ bpf.LoadExtension{Num: bpf.ExtMark},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: mark, SkipTrue: 3},
		/* 4 */ bpf.LoadExtension{Num: bpf.ExtProto},
		/* 5 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IP, SkipTrue: 2},
		/* 6 */ bpf.Jump{Skip: uint32(len(v4) + 1)},
		/* 7 */ bpf.RetConstant{Val: 0},
	}
	prog = append(prog, v4...)
	prog = append(prog,
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.ETH_P_IPV6, SkipTrue: 1},
		bpf.RetConstant{Val: 0})
	return append(prog, v6...)
}

// rstFilterBody returns the part of the watch's program that looks at the
// packet alone, from its IPv4 or IPv6 header: it accepts TCP segments with
// the RST flag and a source port in one of ranges. For IPv4 it skips
// non-first fragments and copes with IP options; for IPv6 the TCP header
// must follow the fixed header directly. It is self-contained (it ends in
// its own returns), so it runs alone in the x/net/bpf VM, which knows no
// ancillary loads.
func rstFilterBody(ranges []rawsock.PortRange, v6 bool) []bpf.Instruction {
	var prog []bpf.Instruction
	if v6 {
		const tcp = wire.IPv6MinimumSize
		prog = []bpf.Instruction{
			/* 0 */ bpf.LoadAbsolute{Off: wire.IPv6NextHeaderOffset, Size: 1},
			/* 1 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: wire.ProtocolTCP, SkipTrue: 4},
			/* 2 */ bpf.LoadAbsolute{Off: tcp + wire.TCPFlagsOffset, Size: 1},
			/* 3 */ bpf.JumpIf{Cond: bpf.JumpBitsNotSet, Val: uint32(wire.FlagRst), SkipTrue: 2},
			/* 4 */ bpf.LoadAbsolute{Off: tcp + wire.TCPSrcPortOffset, Size: 2},
			/* 5 */ bpf.Jump{Skip: 1},
			/* 6 */ bpf.RetConstant{Val: 0},
		}
	} else {
		prog = []bpf.Instruction{
			/* 0 */ bpf.LoadAbsolute{Off: wire.IPv4ProtocolOffset, Size: 1},
			/* 1 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: wire.ProtocolTCP, SkipTrue: 7},
			/* 2 */ bpf.LoadAbsolute{Off: wire.IPv4FlagsFragOffset, Size: 2},
			/* 3 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 5},
			/* 4 */ bpf.LoadMemShift{Off: wire.IPv4VersIHLOffset}, // X = IHL*4: the TCP header
			/* 5 */ bpf.LoadIndirect{Off: wire.TCPFlagsOffset, Size: 1},
			/* 6 */ bpf.JumpIf{Cond: bpf.JumpBitsNotSet, Val: uint32(wire.FlagRst), SkipTrue: 2},
			/* 7 */ bpf.LoadIndirect{Off: wire.TCPSrcPortOffset, Size: 2},
			/* 8 */ bpf.Jump{Skip: 1},
			/* 9 */ bpf.RetConstant{Val: 0},
		}
	}
	return append(prog, portRangeChecks(ranges)...)
}
