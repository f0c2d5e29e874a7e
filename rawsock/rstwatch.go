package rawsock

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/net/bpf"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// RSTWatch counts TCP RSTs leaving this host from our source ports without
// our mark: the kernel's automatic RSTs that got past the RSTGuard (or were
// sent with no guard).
//
// It is an AF_PACKET socket on every interface, loopback included, with a
// BPF filter that accepts outgoing IPv4 and IPv6 TCP segments with the RST
// flag, a source port in [lo, hi] and a packet mark other than ours.
// Packet sockets see outgoing packets after netfilter's output and
// postrouting hooks, so a RST the guard dropped never reaches the watch:
// whatever it counts was on its way to the wire.
//
// The methods may be called from any goroutine.
type RSTWatch struct {
	mu sync.Mutex
	fd int // -1 after Close
	n  uint64
}

// NewRSTWatch opens the watch in the calling thread's network namespace
// for source ports lo..hi: NewRSTWatchPorts with one range.
func NewRSTWatch(lo, hi uint16, mark uint32) (*RSTWatch, error) {
	if lo == 0 || hi < lo {
		return nil, fmt.Errorf("rawsock: bad port range %d-%d", lo, hi)
	}
	return NewRSTWatchPorts([]PortRange{{lo, hi}}, mark)
}

// NewRSTWatchPorts opens the watch in the calling thread's network
// namespace for the source ports in ranges (a PortBlock's Ranges). mark is
// the packet mark of our own segments (Config.Mark) and must not be zero.
// It needs CAP_NET_RAW; without it the error wraps os.ErrPermission.
func NewRSTWatchPorts(ranges []PortRange, mark uint32) (*RSTWatch, error) {
	if err := checkRanges(ranges); err != nil {
		return nil, err
	}
	if mark == 0 {
		return nil, errors.New("rawsock: the RST watch needs a non-zero packet mark")
	}
	return newRSTWatch(ranges, mark)
}

// Escaped returns how many RSTs have escaped since NewRSTWatch. It reads
// the packets queued so far without blocking, and adds those the kernel
// had to drop because the queue was full. After Close it returns the
// final count.
func (w *RSTWatch) Escaped() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drain()
	return w.n
}

// Close counts what is still queued and closes the socket. Further calls
// do nothing.
func (w *RSTWatch) Close() error { return w.close() }

// portRangeChecks returns the end of a program that has loaded a port into
// register A: it accepts the packet if the port is in one of ranges and
// drops it otherwise. Each range takes three instructions and ends in its
// own return, so no jump reaches far.
func portRangeChecks(ranges []PortRange) []bpf.Instruction {
	prog := make([]bpf.Instruction, 0, 3*len(ranges)+1)
	for _, r := range ranges {
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpLessThan, Val: uint32(r.Lo), SkipTrue: 2},
			bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: uint32(r.Hi), SkipTrue: 1},
			bpf.RetConstant{Val: wire.FilterAccept})
	}
	return append(prog, bpf.RetConstant{Val: 0})
}
