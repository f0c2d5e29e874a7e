package rstguard

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/net/bpf"

	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// Watch counts TCP RSTs leaving this host from our source ports without
// our mark: the kernel's automatic RSTs that got past the Guard (or were
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
type Watch struct {
	mu sync.Mutex
	fd int // -1 after Close
	n  uint64
}

// NewWatch opens the watch in the calling thread's network namespace
// for source ports lo..hi: NewWatchPorts with one range.
func NewWatch(lo, hi uint16, mark uint32) (*Watch, error) {
	if lo == 0 || hi < lo {
		return nil, fmt.Errorf("rawsock: bad port range %d-%d", lo, hi)
	}
	return NewWatchPorts([]rawsock.PortRange{{Lo: lo, Hi: hi}}, mark)
}

// NewWatchPorts opens the watch in the calling thread's network
// namespace for the source ports in ranges (a rawsock.PortBlock's
// Ranges). mark is the packet mark of our own segments
// (rawsock.Config.Mark) and must not be zero. It needs CAP_NET_RAW;
// without it the error wraps os.ErrPermission.
func NewWatchPorts(ranges []rawsock.PortRange, mark uint32) (*Watch, error) {
	if err := rawsock.CheckRanges(ranges); err != nil {
		return nil, err
	}
	if mark == 0 {
		return nil, errors.New("rawsock: the RST watch needs a non-zero packet mark")
	}
	return newWatch(ranges, mark)
}

// Escaped returns how many RSTs have escaped since NewWatch. It reads
// the packets queued so far without blocking, and adds those the kernel
// had to drop because the queue was full. After Close it returns the
// final count.
func (w *Watch) Escaped() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.drain()
	return w.n
}

// Close counts what is still queued and closes the socket. Further calls
// do nothing.
func (w *Watch) Close() error { return w.close() }

// portRangeChecks returns the end of a program that has loaded a port into
// register A: it accepts the packet if the port is in one of ranges and
// drops it otherwise. Each range takes three instructions and ends in its
// own return, so no jump reaches far.
func portRangeChecks(ranges []rawsock.PortRange) []bpf.Instruction {
	prog := make([]bpf.Instruction, 0, 3*len(ranges)+1)
	for _, r := range ranges {
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpLessThan, Val: uint32(r.Lo), SkipTrue: 2},
			bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: uint32(r.Hi), SkipTrue: 1},
			bpf.RetConstant{Val: wire.FilterAccept})
	}
	return append(prog, bpf.RetConstant{Val: 0})
}
