//go:build linux

package rawsock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/rawsock/internal/nl"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// ringSys is a Ring's Linux part: the socket and the mapped ring.
type ringSys struct {
	fd        int
	poller    // the socket, and the eventfd that wakes Read
	mem       []byte
	blockSize int
	blocks    int
	cur       atomic.Int32 // the next block to read; written by Read only

	mu      sync.Mutex // held by Read; Close waits for it
	closeMu sync.Mutex // guards what follows; Close unmaps under it, Pending reads under it
	closed  bool
	drops   uint64        // packets lost, from the kernel's statistics
	stored  uint64        // packets put in the ring, from the same
	read    atomic.Uint64 // packets in the blocks Read gave back
	badSums atomic.Uint64 // packets dropped for a wrong checksum
	scratch wire.Packet   // for the checksum check; used by Read only
}

// Offsets in struct tpacket_block_desc and its tpacket_hdr_v1.
const (
	blockHdrOffset = 8 // tpacket_block_desc.hdr
	blockStatusOff = blockHdrOffset + 0
	blockNumPkts   = blockHdrOffset + 4
	blockFirstPkt  = blockHdrOffset + 8
)

// listenRing is ListenRing on Linux.
func listenRing(cfg RingConfig) (*Ring, error) {
	if cfg.PortLo == 0 || cfg.PortHi < cfg.PortLo {
		return nil, fmt.Errorf("rawsock: bad port range %d-%d", cfg.PortLo, cfg.PortHi)
	}
	if (cfg.Src4.IsValid() && !cfg.Src4.Is4()) || (cfg.Src6.IsValid() && !cfg.Src6.Is6()) {
		return nil, errors.New("rawsock: ring addresses of the wrong family")
	}
	addrs := append([]netip.Addr{cfg.Src4, cfg.Src6}, cfg.Addrs...)
	if !slices.ContainsFunc(addrs, netip.Addr.IsValid) {
		return nil, errors.New("rawsock: ring without an address")
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = 32 << 10
	}
	if cfg.Blocks == 0 {
		cfg.Blocks = 512
	}
	page := os.Getpagesize()
	if cfg.BlockSize < page || cfg.BlockSize&(cfg.BlockSize-1) != 0 || cfg.Blocks < 2 {
		return nil, fmt.Errorf("rawsock: bad ring size %d blocks of %d bytes", cfg.Blocks, cfg.BlockSize)
	}
	retire := cfg.Retire
	if retire <= 0 {
		retire = time.Millisecond
	}
	prog, err := bpf.Assemble(ringFilter(addrs, cfg.PortLo, cfg.PortHi, cfg.Outgoing))
	if err != nil {
		return nil, fmt.Errorf("rawsock: assemble filter: %w", err)
	}
	r := &Ring{ringSys{fd: -1, poller: poller{epfd: -1, evfd: -1, parkfd: -1}, blockSize: cfg.BlockSize, blocks: cfg.Blocks}}
	if err := r.open(cfg, prog, retire); err != nil {
		r.release()
		return nil, err
	}
	return r, nil
}

func (r *Ring) open(cfg RingConfig, prog []bpf.RawInstruction, retire time.Duration) error {
	var err error
	// Protocol 0: nothing is received before bind, when the filter and
	// the ring are in place.
	if r.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0); err != nil {
		return opError("socket", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: (*unix.SockFilter)(unsafe.Pointer(&prog[0]))}
	if err := unix.SetsockoptSockFprog(r.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
		return opError("setsockopt SO_ATTACH_FILTER", err)
	}
	// Our own probes leave through the same device: without this, every
	// one of them would be cloned for the tap before the filter drops it.
	// (Before Linux 4.20 the filter's packet type check does the job.)
	if !cfg.Outgoing {
		_ = unix.SetsockoptInt(r.fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
	}
	if err := unix.SetsockoptInt(r.fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return opError("setsockopt PACKET_VERSION", err)
	}
	const frame = 2048 // only for the kernel's bookkeeping in V3
	req := unix.TpacketReq3{
		Block_size:     uint32(cfg.BlockSize),
		Block_nr:       uint32(cfg.Blocks),
		Frame_size:     frame,
		Frame_nr:       uint32(cfg.BlockSize / frame * cfg.Blocks),
		Retire_blk_tov: uint32((retire + time.Millisecond - 1) / time.Millisecond),
	}
	if err := unix.SetsockoptTpacketReq3(r.fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return opError("setsockopt PACKET_RX_RING", err)
	}
	if r.mem, err = unix.Mmap(r.fd, 0, cfg.BlockSize*cfg.Blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
		return opError("mmap", err)
	}
	if err := r.poller.open(r.isClosed, false); err != nil {
		return err
	}
	if err := r.watch(r.fd); err != nil {
		return err
	}
	if err := unix.Bind(r.fd, &unix.SockaddrLinklayer{Protocol: nl.Htons(unix.ETH_P_ALL), Ifindex: cfg.Ifindex}); err != nil {
		return opError("bind", err)
	}
	return nil
}

// readWith is Read. When raw is set, it gets every packet with its
// tp_status, before any check, instead of fn (for tests).
func (r *Ring) readWith(deadline time.Time, fn func([]byte, time.Time), raw func([]byte, time.Time, uint32)) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		if r.isClosed() {
			return 0, net.ErrClosed
		}
		if n, ok := r.readBlock(fn, raw); ok {
			return n, nil
		}
		if err := r.wait(deadline); err != nil {
			return 0, err
		}
	}
}

// checksumOK reports whether a packet with this tp_status has checksums
// the kernel would take, as far as Parse, which verifies every packet the
// Ring hands on, cannot tell: Parse takes a TCP checksum that holds the
// pseudo-header sum alone as one left partial by a sender on this host,
// but here the kernel says which are partial (TP_STATUS_CSUMNOTREADY). A
// packet not marked so, whose field is in that form, must verify in full.
// (TP_STATUS_CSUM_VALID: the device verified it; before Linux 6.1 the flag
// was also set for CHECKSUM_COMPLETE, which verifies nothing, so it only
// spares the packet this check, not Parse's.)
func (r *Ring) checksumOK(pkt []byte, status uint32) bool {
	if status&(unix.TP_STATUS_CSUMNOTREADY|unix.TP_STATUS_CSUM_VALID) != 0 || !wire.MaybePartial(pkt) {
		return true
	}
	return wire.ParseChecksums(pkt, &r.scratch, wire.ChecksumsVerify) != wire.ErrChecksum
}

func (r *Ring) badChecksums() uint64 { return r.badSums.Load() }

// readBlock hands the packets of the current block to fn and gives the
// block back to the kernel, if the kernel has handed it over.
func (r *Ring) readBlock(fn func([]byte, time.Time), raw func([]byte, time.Time, uint32)) (int, bool) {
	cur := int(r.cur.Load())
	b := r.mem[cur*r.blockSize : (cur+1)*r.blockSize]
	status := (*uint32)(unsafe.Pointer(&b[blockStatusOff]))
	if atomic.LoadUint32(status)&unix.TP_STATUS_USER == 0 {
		return 0, false
	}
	ne := binary.NativeEndian
	n := int(ne.Uint32(b[blockNumPkts:]))
	off := int(ne.Uint32(b[blockFirstPkt:]))
	got := 0
	for range n {
		// The kernel's offsets are trusted, but checked: a bad one ends
		// the block rather than the program.
		if off <= 0 || off+unix.SizeofTpacket3Hdr > len(b) {
			break
		}
		h := (*unix.Tpacket3Hdr)(unsafe.Pointer(&b[off]))
		start := off + int(h.Mac)
		end := start + int(h.Snaplen)
		if start < off || end > len(b) {
			break
		}
		pkt, rx := b[start:end:end], time.Unix(int64(h.Sec), int64(h.Nsec))
		switch {
		case raw != nil:
			raw(pkt, rx, h.Status)
			got++
		case r.checksumOK(pkt, h.Status):
			fn(pkt, rx)
			got++
		default:
			r.badSums.Add(1)
		}
		if h.Next_offset == 0 {
			break
		}
		off += int(h.Next_offset)
	}
	atomic.StoreUint32(status, unix.TP_STATUS_KERNEL)
	r.read.Add(uint64(n)) // the block's packets, also any a bad offset skipped
	r.cur.Store(int32((cur + 1) % r.blocks))
	return got, true
}

func (r *Ring) pending() float64 {
	r.closeMu.Lock() // Close unmaps the ring under it
	defer r.closeMu.Unlock()
	if r.closed {
		return 0
	}
	n := 0
	for i, cur := 0, int(r.cur.Load()); i < r.blocks; i++ {
		b := (cur + i) % r.blocks
		if atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.mem[b*r.blockSize+blockStatusOff])))&unix.TP_STATUS_USER == 0 {
			break
		}
		n++
	}
	return float64(n) / float64(r.blocks)
}

func (r *Ring) dropped() uint64 {
	r.closeMu.Lock()
	defer r.closeMu.Unlock()
	r.readStats()
	return r.drops
}

func (r *Ring) mark() uint64 {
	r.closeMu.Lock()
	defer r.closeMu.Unlock()
	r.readStats()
	return r.stored
}

// readStats adds the kernel's counters, which reset on every read, to
// ours. r.closeMu is held.
func (r *Ring) readStats() {
	if r.closed {
		return
	}
	if st, err := unix.GetsockoptTpacketStatsV3(r.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
		// Packets counts the dropped ones too.
		r.drops += uint64(st.Drops)
		r.stored += uint64(st.Packets - st.Drops)
	}
}

func (r *Ring) isClosed() bool {
	r.closeMu.Lock()
	defer r.closeMu.Unlock()
	return r.closed
}

func (r *Ring) close() error {
	r.dropped()
	r.closeMu.Lock()
	if r.closed {
		r.closeMu.Unlock()
		return nil
	}
	r.closed = true
	r.closeMu.Unlock()
	r.wake()
	r.mu.Lock() // Read has returned and will not touch the ring again
	defer r.mu.Unlock()
	r.closeMu.Lock() // nor Pending nor Dropped
	defer r.closeMu.Unlock()
	r.release()
	return nil
}

func (r *Ring) release() {
	if r.mem != nil {
		unix.Munmap(r.mem)
		r.mem = nil
	}
	if r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
	r.poller.close()
}

// ringFilter returns the ring's program: the checks that need the
// kernel's ancillary data (packet type, link-layer protocol) first, then
// ringFilterBody for IPv4 or IPv6. The socket is SOCK_DGRAM, so the data
// starts at the network header. With outgoing, our probes leaving are
// taken too (synCopyBody):
//
//	[ld type; jne PACKET_OUTGOING -> in; ja out]
//	in: ld type; jne PACKET_HOST -> drop
//	ld proto; jne ETH_P_IP -> v6
//	  <IPv4 body>
//	v6: jne ETH_P_IPV6 -> drop
//	  <IPv6 body>
//	drop: ret 0
//	[out: ld proto; jne ETH_P_IP -> out6
//	  <IPv4 SYN body>
//	out6: jne ETH_P_IPV6 -> drop6
//	  <IPv6 SYN body>
//	drop6: ret 0]
func ringFilter(addrs []netip.Addr, lo, hi uint16, outgoing bool) []bpf.Instruction {
	in := ringFilterIn(addrs, lo, hi)
	if !outgoing {
		return in
	}
	v4, v6 := wire.SYNFilter(addrs, lo, hi, false), wire.SYNFilter(addrs, lo, hi, true)
	prog := []bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.PACKET_OUTGOING, SkipTrue: 1},
		bpf.Jump{Skip: uint32(len(in))},
	}
	prog = append(prog, in...)
	prog = append(prog,
		bpf.LoadExtension{Num: bpf.ExtProto},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.ETH_P_IP, SkipTrue: uint8(len(v4))})
	prog = append(prog, v4...)
	prog = append(prog, bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.ETH_P_IPV6, SkipTrue: uint8(len(v6))})
	prog = append(prog, v6...)
	return append(prog, bpf.RetConstant{Val: 0})
}

// ringFilterIn is the part of ringFilter for packets that come in.
func ringFilterIn(addrs []netip.Addr, lo, hi uint16) []bpf.Instruction {
	v4, v6 := wire.ReplyFilter(addrs, lo, hi, false), wire.ReplyFilter(addrs, lo, hi, true)
	prog := []bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.PACKET_HOST}, // SkipTrue: drop, below
		bpf.LoadExtension{Num: bpf.ExtProto},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.ETH_P_IP, SkipTrue: uint8(len(v4))},
	}
	prog = append(prog, v4...)
	prog = append(prog, bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.ETH_P_IPV6, SkipTrue: uint8(len(v6))})
	prog = append(prog, v6...)
	prog = append(prog, bpf.RetConstant{Val: 0})
	j := prog[1].(bpf.JumpIf)
	j.SkipTrue = uint8(len(prog) - 1 - 2)
	prog[1] = j
	return prog
}
