package rawsock

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// minProbePorts is the smallest source-port range PortRangeOutside accepts.
const minProbePorts = 1024

// PortRangeOutside returns the source ports probes should use given the
// kernel's ephemeral range [lo, hi] (net.ipv4.ip_local_port_range): the
// ports above it if there are at least 1024 of them, else the ports between
// 1024 and lo. Probes from outside the ephemeral range never collide with
// the kernel's own connections.
func PortRangeOutside(lo, hi int) (uint16, uint16, error) {
	if lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("rawsock: bad ephemeral port range %d-%d", lo, hi)
	}
	if 65535-hi >= minProbePorts {
		return uint16(hi + 1), 65535, nil
	}
	if lo-1024 >= minProbePorts {
		return 1024, uint16(lo - 1), nil
	}
	return 0, 0, fmt.Errorf("rawsock: %w: the ephemeral port range %d-%d (net.ipv4.ip_local_port_range) leaves fewer than %d outside it, where probes stay clear of the kernel's own connections: narrow it (Linux's default is 32768-60999)", ErrNoProbePorts, lo, hi, minProbePorts)
}

// ErrNoProbePorts is wrapped by PortRangeOutside's error when the
// kernel's ephemeral range leaves too few ports outside it.
var ErrNoProbePorts = errors.New("too few source ports for probes")

// MaxPacketSize is the buffer size that holds any packet Recv returns:
// with GRO and GSO (veth does both) raw sockets see packets of up to 64 KiB,
// and IPv6 ones get a 40-byte header synthesized in front.
const MaxPacketSize = 65535 + wire.IPv6MinimumSize

// PortRange is a range of ports, both ends included.
type PortRange struct{ Lo, Hi uint16 }

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
}

// FormatRanges writes ranges as "61000-61099,61101-61511".
func FormatRanges(rs []PortRange) string {
	var b strings.Builder
	for i, r := range rs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r.String())
	}
	return b.String()
}

// ErrPortsInUse is wrapped by the errors of ReservePort and ReservePorts
// when other sockets on this host hold the ports asked for.
var ErrPortsInUse = errors.New("ports held by other sockets")

// MaxPortRanges bounds how scattered a PortBlock may be: the RST guard
// has one nftables rule per range and the RST watch three BPF
// instructions.
const MaxPortRanges = 256

// PortRequest says which ports ReservePorts tries and how many it takes.
type PortRequest struct {
	// Lo..Hi are the candidates, both included.
	Lo, Hi uint16
	// Min is the fewest ports the caller can work with; Max the most it
	// wants (Min when zero).
	Min, Max int
	// Start is the first candidate tried; zero picks one at random, such
	// that Max ports above it fit in the range.
	Start uint16
}

// PortBlock is a set of TCP ports that this process holds through the
// kernel for as long as the block is open: one TCP socket per port, bound
// to the wildcard address, neither listening nor connected, without
// SO_REUSEADDR or SO_REUSEPORT. On Linux it is an AF_INET6 socket that
// accepts IPv4 too (IPV6_V6ONLY off), or an AF_INET one where the kernel
// has no IPv6. While it is bound, the kernel refuses the port to every
// other bind (any address, family or socket option) and to connect()'s
// choice of an ephemeral port; it changes nothing on the wire: segments
// for the port still find no socket, and the kernel answers them with RST
// as before.
//
// The ports are ascending; the block may have holes, where other sockets
// hold ports. A PortBlock is not safe for concurrent use.
type PortBlock struct {
	ports []uint16
	fds   []int
	v4    bool // AF_INET sockets: the kernel has no IPv6
}

// ReservePorts takes up to req.Max free ports from req.Lo..req.Hi,
// skipping those that other sockets hold, by trying them in order from
// req.Start (wrapping at req.Hi). Fewer than req.Min free ports is an
// error that wraps ErrPortsInUse. It also takes no more ports than the
// open-file limit leaves room for (RLIMIT_NOFILE, one descriptor each).
func ReservePorts(req PortRequest) (*PortBlock, error) {
	if req.Max == 0 {
		req.Max = req.Min
	}
	span := int(req.Hi) - int(req.Lo) + 1
	if req.Lo == 0 || span <= 0 || req.Min < 1 || req.Max < req.Min {
		return nil, fmt.Errorf("rawsock: bad port request %d-%d, %d to %d ports", req.Lo, req.Hi, req.Min, req.Max)
	}
	room, err := fdRoom()
	if err != nil {
		return nil, err
	}
	if room < req.Min {
		return nil, fmt.Errorf("rawsock: the open-file limit leaves room for %d sockets, and %d source ports need one each: raise it (ulimit -n)", room, req.Min)
	}
	want := min(req.Max, room, span)
	start := int(req.Start)
	if start < int(req.Lo) || start > int(req.Hi) {
		var b [4]byte
		rand.Read(b[:])
		start = int(req.Lo) + int(binary.BigEndian.Uint32(b[:])%uint32(max(span-want+1, 1)))
	}
	blk := &PortBlock{}
	for i := 0; i < span && len(blk.ports) < want; i++ {
		port := uint16(int(req.Lo) + (start-int(req.Lo)+i)%span)
		if err := blk.hold(port); err != nil {
			if errors.Is(err, ErrPortsInUse) {
				continue
			}
			blk.Close()
			return nil, err
		}
	}
	blk.sort()
	if len(blk.ports) < req.Min {
		n := len(blk.ports)
		blk.Close()
		return nil, fmt.Errorf("rawsock: only %d of ports %d-%d are free, %d needed: %w", n, req.Lo, req.Hi, req.Min, ErrPortsInUse)
	}
	if n := len(blk.Ranges()); n > MaxPortRanges {
		blk.Close()
		return nil, fmt.Errorf("rawsock: the free ports in %d-%d are scattered over %d ranges, more than %d: %w", req.Lo, req.Hi, n, MaxPortRanges, ErrPortsInUse)
	}
	return blk, nil
}

// ReservePort holds one port. If another socket holds it, the error wraps
// ErrPortsInUse.
func ReservePort(port uint16) (*PortBlock, error) {
	if port == 0 {
		return nil, errors.New("rawsock: port 0")
	}
	blk := &PortBlock{}
	if err := blk.hold(port); err != nil {
		if errors.Is(err, ErrPortsInUse) {
			return nil, fmt.Errorf("rawsock: port %d: %w", port, ErrPortsInUse)
		}
		return nil, err
	}
	return blk, nil
}

// hold binds a socket to port and adds it to the block. A port that
// another socket holds is an error that wraps ErrPortsInUse.
func (b *PortBlock) hold(port uint16) error {
	fd, v4, err := holdPort(port, b.v4)
	if err != nil {
		return err
	}
	b.v4 = v4
	b.ports = append(b.ports, port)
	b.fds = append(b.fds, fd)
	return nil
}

// sort puts the ports, and their sockets with them, in ascending order:
// a search that wrapped took the high ones first.
func (b *PortBlock) sort() {
	idx := make([]int, len(b.ports))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(i, j int) int { return int(b.ports[i]) - int(b.ports[j]) })
	ports, fds := make([]uint16, len(idx)), make([]int, len(idx))
	for k, i := range idx {
		ports[k], fds[k] = b.ports[i], b.fds[i]
	}
	b.ports, b.fds = ports, fds
}

// Len returns the number of ports held.
func (b *PortBlock) Len() int { return len(b.ports) }

// Ports returns the ports held, ascending. The caller must not change it.
func (b *PortBlock) Ports() []uint16 { return b.ports }

// Lo and Hi return the lowest and highest port held.
func (b *PortBlock) Lo() uint16 { return b.ports[0] }
func (b *PortBlock) Hi() uint16 { return b.ports[len(b.ports)-1] }

// Contains reports whether the block holds port.
func (b *PortBlock) Contains(port uint16) bool {
	_, ok := slices.BinarySearch(b.ports, port)
	return ok
}

// Ranges returns the ports held as ascending ranges of consecutive ports.
func (b *PortBlock) Ranges() []PortRange { return RangesOf(b.ports) }

// IPv4Only reports whether the kernel had no IPv6, so that the block's
// sockets are AF_INET ones: without IPv6 nobody can use the ports over
// IPv6 either.
func (b *PortBlock) IPv4Only() bool { return b.v4 }

// Close closes the sockets, releasing the ports. Further calls do nothing.
func (b *PortBlock) Close() error {
	var errs []error
	for _, fd := range b.fds {
		if err := closePort(fd); err != nil {
			errs = append(errs, err)
		}
	}
	b.fds, b.ports = nil, nil
	return errors.Join(errs...)
}

// RangesOf returns ascending ports (a PortBlock's, a probe.Client's)
// as ranges of consecutive ports.
func RangesOf(ports []uint16) []PortRange {
	var rs []PortRange
	for _, p := range ports {
		if n := len(rs); n > 0 && rs[n-1].Hi+1 == p {
			rs[n-1].Hi = p
			continue
		}
		rs = append(rs, PortRange{p, p})
	}
	return rs
}

// CheckRanges reports port ranges that are empty, reversed, include port 0
// or are more than MaxPortRanges: an error naming the
// first such range, or nil.
func CheckRanges(ranges []PortRange) error {
	if len(ranges) == 0 || len(ranges) > MaxPortRanges {
		return fmt.Errorf("rawsock: %d port ranges (want 1 to %d)", len(ranges), MaxPortRanges)
	}
	for _, r := range ranges {
		if r.Lo == 0 || r.Hi < r.Lo {
			return fmt.Errorf("rawsock: bad port range %d-%d", r.Lo, r.Hi)
		}
	}
	return nil
}
