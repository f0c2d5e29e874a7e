// Package pcap writes the packets a synprobe run sent and received to a
// pcapng file (synprobe --pcap), with the times synprobe took them by:
// the kernel's transmit and receive stamps, or the user-space clock where
// the kernel gave none, each packet's comment saying which. The blocks
// are written by ng.go (pcapng's Section Header, one Interface
// Description, Enhanced Packets); the tests read them back with
// gopacket's pcapgo (package pcapread) and tcpdump.
//
// A Writer is a probe.Recorder. It streams: packets wait in a small queue
// in order of time, each for Reorder (a packet timed before it may be
// recorded a moment later, by another thread), a packet sent until its
// transmit stamp comes (at most Hold), and the packets after it with it;
// beyond MaxQueue packets or MaxBytes, the oldest is written at once.
// The file is in order of time, but for a packet recorded later than
// that; nothing else is kept.
package pcap

import (
	"errors"
	"io"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/synprobe/synprobe/probe"
)

// Bounds of the queue of packets that wait for a transmit stamp.
const (
	// Reorder is how long every packet waits before it is written, for
	// one timed before it that is recorded late: a scan's answer may be
	// recorded by its receiver before the thread that sent the probe has
	// recorded it, and a sending thread may lose its CPU between taking
	// the time and recording the packet (5 ms was too short under the
	// race detector's load: a file out of order in one full test run).
	Reorder = 50 * time.Millisecond
	// Hold is how long a packet sent waits for its kernel transmit stamp.
	// The kernel queues the stamp as the packet leaves; the engine reads
	// it within milliseconds, a scan's receiver as it reads the packet
	// ring's copy of the probe, which at full rate lags by up to some
	// 200 ms here once it also records every packet.
	Hold = time.Second
	// MaxQueue and MaxBytes bound the queue: beyond them the oldest
	// packet is written at once, with the time it has.
	MaxQueue = 1 << 16
	MaxBytes = 16 << 20
	// MaxEarly bounds the stamps kept for packets not recorded yet: a
	// scan's receiver may read a probe's stamp before the thread that
	// sent it has recorded it.
	MaxEarly = 4096
	// FlushEvery is how often what was written goes from the buffer to
	// the file, so that a run killed at once loses little of it.
	FlushEvery = 100 * time.Millisecond
)

// Comments on each packet: which way it went and which clock timed it.
const (
	CommentSentKernel = "sent; time: kernel transmit stamp"
	CommentSentUser   = "sent; time: user-space clock before the send (no kernel transmit stamp)"
	CommentRecvKernel = "received; time: kernel receive stamp"
	CommentRecvUser   = "received; time: user-space clock after the read (no kernel receive stamp)"
)

// comments are the packets' comments, by pop's k: sent or received,
// kernel stamp or user-space clock.
var comments = [4]string{CommentSentKernel, CommentSentUser, CommentRecvKernel, CommentRecvUser}

// entry is a packet waiting to be written.
type entry struct {
	data    []byte
	at      time.Time // the user-space clock's time
	stamp   time.Time // the kernel's, zero if none
	id      uint32
	sent    bool
	waiting bool // sent, its transmit stamp may still come
}

// time is when e went out or came in, as far as is known yet.
func (e *entry) time() time.Time {
	if e.stamp.IsZero() {
		return e.at
	}
	return e.stamp
}

// earlyStamp is a stamp that came before its packet.
type earlyStamp struct {
	id uint32
	t  time.Time
}

// Writer writes packets to a pcapng file as they are recorded. Its
// methods may be called from several goroutines at once.
type Writer struct {
	mu  sync.Mutex
	ng  *ngWriter
	now func() time.Time
	// q[head:] are the packets timed, in order of time; wait[whead:] the
	// packets sent that wait for their transmit stamps, in order of their
	// user-space times (an entry stamped since stays as a tombstone:
	// waiting false). Entries are never reused: a tombstone may still
	// point at one.
	q, wait     []*entry
	head, whead int
	byID        map[uint32]*entry    // the packets waiting for a stamp, by id
	early       map[uint32]time.Time // stamps that came before their packet
	order       []earlyStamp         // early's, oldest first
	n, bytes    int                  // packets and bytes queued
	free        [][]byte
	err         error
	count       uint64
	flush       time.Time // the buffer's last flush
}

// NewWriter writes a pcapng section with one interface of link type
// LINKTYPE_RAW (IPv4 and IPv6 packets, no link-layer header) and
// nanosecond times to w. app names the program in the section header.
func NewWriter(w io.Writer, app string) (*Writer, error) {
	ng, err := newNgWriter(w, runtime.GOARCH, runtime.GOOS, app, "synprobe", "the IP packets synprobe sent and received")
	if err != nil {
		return nil, err
	}
	return &Writer{ng: ng, now: time.Now, byID: map[uint32]*entry{}, early: map[uint32]time.Time{}}, nil
}

// Sent records a packet sent (probe.Recorder).
func (w *Writer) Sent(pkt []byte, id uint32, tx, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t, ok := w.early[id]; ok && tx.IsZero() {
		tx = t
		delete(w.early, id)
	}
	e := w.entry(pkt)
	e.at, e.stamp, e.id, e.sent = at, tx, id, true
	if tx.IsZero() && id != probe.NoTxStamp {
		e.waiting = true
		w.byID[id] = e
		w.wait = insert(w.wait, w.whead, e, func(e *entry) time.Time { return e.at })
		if w.whead > 0 && w.whead >= len(w.wait)/2 {
			w.wait, w.whead = compact(w.wait, w.whead)
		}
	} else {
		w.enqueue(e)
	}
	w.release(w.now())
}

// TxStamp gives the kernel transmit stamp of the packet sent with id
// (probe.Recorder). A stamp for a packet not recorded yet is kept for it
// (the last MaxEarly such); one for a packet already written is ignored.
func (w *Writer) TxStamp(id uint32, tx time.Time) {
	if tx.IsZero() {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if e, ok := w.byID[id]; ok {
		delete(w.byID, id)
		e.stamp, e.waiting = tx, false // a tombstone in wait
		w.enqueue(e)
	} else {
		if len(w.order) >= MaxEarly {
			// Forget the older half.
			for _, o := range w.order[:MaxEarly/2] {
				if t, ok := w.early[o.id]; ok && t.Equal(o.t) {
					delete(w.early, o.id)
				}
			}
			w.order = append(w.order[:0], w.order[MaxEarly/2:]...)
		}
		w.early[id] = tx
		w.order = append(w.order, earlyStamp{id, tx})
	}
	w.release(w.now())
}

// Received records a packet read (probe.Recorder).
func (w *Writer) Received(pkt []byte, rx, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.entry(pkt)
	e.at, e.stamp = at, rx
	w.enqueue(e)
	w.release(w.now())
}

// Flush writes every packet still queued, with the times it has, and
// flushes the file's buffer. It returns the first error writing met.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expire(time.Time{}, true)
	for w.head < len(w.q) {
		w.pop()
	}
	if w.err == nil {
		w.err = w.ng.Flush()
	}
	return w.err
}

// Packets returns how many packets have been written (or dropped after
// an error).
func (w *Writer) Packets() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.count
}

// entry returns a new entry holding a copy of pkt.
func (w *Writer) entry(pkt []byte) *entry {
	var b []byte
	if n := len(w.free); n > 0 {
		b, w.free = w.free[n-1][:0], w.free[:n-1]
	}
	w.n++
	w.bytes += len(pkt)
	return &entry{data: append(b, pkt...)}
}

// enqueue puts e in q, in order of time.
func (w *Writer) enqueue(e *entry) {
	w.q = insert(w.q, w.head, e, (*entry).time)
	if w.head > 0 && w.head >= len(w.q)/2 {
		w.q, w.head = compact(w.q, w.head)
	}
}

// insert puts e into l[head:] after every entry whose key is no later
// than e's. Packets come nearly in order: it looks at the last few.
func insert(l []*entry, head int, e *entry, key func(*entry) time.Time) []*entry {
	t := key(e)
	i := len(l)
	l = append(l, e)
	for ; i > head && key(l[i-1]).After(t); i-- {
		l[i] = l[i-1]
	}
	l[i] = e
	return l
}

// compact moves l[head:] to the front.
func compact(l []*entry, head int) ([]*entry, int) {
	n := copy(l, l[head:])
	clear(l[n:])
	return l[:n], 0
}

// over reports whether the queues hold more than their bounds.
func (w *Writer) over() bool { return w.n > MaxQueue || w.bytes > MaxBytes }

// oldest returns the packet that has waited longest for its stamp, or
// nil; it drops the tombstones before it.
func (w *Writer) oldest() *entry {
	for w.whead < len(w.wait) {
		if e := w.wait[w.whead]; e.waiting {
			return e
		}
		w.wait[w.whead] = nil
		w.whead++
	}
	return nil
}

// expire moves the packets that waited Hold for their stamps (all: every
// one) to q, with their user-space times.
func (w *Writer) expire(now time.Time, all bool) {
	for e := w.oldest(); e != nil && (all || now.Sub(e.at) >= Hold); e = w.oldest() {
		w.wait[w.whead] = nil
		w.whead++
		e.waiting = false
		delete(w.byID, e.id)
		w.enqueue(e)
	}
}

// release writes the packets that need wait no more: recorded Reorder
// ago (a packet timed before one may be recorded after it: a scan's
// sender and receiver record apart), and timed before every packet that
// still waits for its stamp (whose time will be no earlier than its
// user-space time). Beyond the queues' bounds, it writes the earliest
// packet, waiting or not, until they are within them.
func (w *Writer) release(now time.Time) {
	w.expire(now, false)
	for {
		old := w.oldest()
		if w.over() {
			if old != nil && (w.head == len(w.q) || old.at.Before(w.q[w.head].time())) {
				w.wait[w.whead] = nil
				w.whead++
				old.waiting = false
				delete(w.byID, old.id)
				w.enqueue(old) // the earliest: at the front
			}
			w.pop()
			continue
		}
		if w.head == len(w.q) {
			break
		}
		e := w.q[w.head]
		if now.Sub(e.at) < Reorder || (old != nil && e.time().After(old.at)) {
			break
		}
		w.pop()
	}
	if w.err == nil && now.Sub(w.flush) >= FlushEvery {
		w.flush = now
		w.err = w.ng.Flush()
	}
}

// pop writes the packet at the front of q.
func (w *Writer) pop() {
	e := w.q[w.head]
	w.q[w.head] = nil
	w.head++
	k := 0
	if e.stamp.IsZero() {
		k = 1
	}
	if !e.sent {
		k += 2
	}
	if w.err == nil {
		w.err = w.ng.writePacket(e.time(), e.data, e.sent, comments[k])
	}
	w.count++
	w.n--
	w.bytes -= len(e.data)
	if cap(e.data) <= 2048 && len(w.free) < 256 {
		w.free = append(w.free, e.data)
	}
	e.data = nil
}

// ErrNotRegular is what Create returns for an existing file that is not a
// regular file (a directory, a device, a FIFO, a socket).
var ErrNotRegular = errors.New("not a regular file")

// Create opens path for writing a capture, as tcpdump -w does: created
// with mode 0644 (less the umask), or truncated. It refuses an existing
// file that is not a regular one, without waiting for a reader (a FIFO)
// and without truncating anything first. The file is opened with the
// caller's credentials: call it after dropping privileges, so that the
// file is the user's and lands only where the user may write.
func Create(path string) (*os.File, error) {
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, &os.PathError{Op: "open", Path: path, Err: ErrNotRegular}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|syscall.O_NONBLOCK, 0o644)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = &os.PathError{Op: "open", Path: path, Err: ErrNotRegular}
	}
	if err == nil {
		err = f.Truncate(0)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
