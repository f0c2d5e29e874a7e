//go:build linux

package rawsock

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// poller waits for its sockets with epoll, with nanosecond deadlines
// (epollWait), and can be woken through an eventfd: what Conn.Recv and
// Ring.Read wait with.
//
// In a Conn's poller, a wait with no deadline, or one further than
// parkAhead, parks the goroutine in Go's network poller instead of
// blocking its thread in epoll_wait: a thread blocked in a
// system call keeps its P, and Go's sysmon then wakes every 20 µs to 10 ms
// to take it back, without ever sleeping deeply. Under `synprobe serve`'s
// 10,000 probes a second that took 47-54% of a core against 32-39% parked
// (docs/serve.md). Go's poller has a millisecond's resolution, so a park
// ends parkAhead before the deadline and the rest is waited in
// epoll_pwait2, to the nanosecond. Go's poller watches a second epoll
// set, parkfd, which holds the first only while a wait parks: were the
// first always in Go's poller, every packet would wake one of Go's
// threads, parked or not (at 10,000 probes a second, 2,000 wake-ups a
// second and some 6% of a core).
type poller struct {
	epfd, evfd int
	parkfd     int // -1: none
	events     [8]unix.EpollEvent
	file       *os.File        // parkfd, registered with Go's poller
	raw        syscall.RawConn // file's
	closed     func() bool     // the owner's: a wake-up while it closes is not ErrWoken
	// evMu keeps close from closing the eventfd under a wake in progress
	// (Wake may come from any goroutine, at any time): a wake after
	// close does nothing, rather than write to a descriptor number the
	// process may have given to another file since.
	evMu sync.RWMutex
}

// open creates the epoll set and the eventfd; park says whether long
// waits park in Go's poller (Conn's) or block in epoll_pwait2 (Ring's:
// a client's engine reads a scan's ring without waiting on it, and other
// readers' waits are short at a scan's rates). (A ring scan
// that missed a third of its answers under the full test suite was first
// blamed on the park; the cause was the scan's wait, docs/design.md.) On
// error, close cleans up.
func (p *poller) open(closed func() bool, park bool) error {
	p.epfd, p.evfd, p.parkfd, p.closed = -1, -1, -1, closed
	var err error
	if p.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return opError("epoll_create1", err)
	}
	if p.evfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return opError("eventfd", err)
	}
	if err := p.watch(p.evfd); err != nil {
		return err
	}
	if !park {
		return nil
	}
	// Non-blocking, so that os.NewFile registers it with Go's poller;
	// a file that could not be (it then reports ErrNoDeadline) is simply
	// never parked on.
	if p.parkfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return opError("epoll_create1", err)
	}
	if err := unix.SetNonblock(p.parkfd, true); err != nil {
		unix.Close(p.parkfd)
		p.parkfd = -1
		return opError("fcntl", err)
	}
	p.file = os.NewFile(uintptr(p.parkfd), "epoll")
	if p.file.SetReadDeadline(time.Time{}) != nil {
		return nil
	}
	if p.raw, err = p.file.SyscallConn(); err != nil {
		p.raw = nil
	}
	return nil
}

// parkAhead is how long before a deadline a wait stops parking in Go's
// poller (a millisecond's resolution, and the wake-up of a locked thread)
// and waits the rest in epoll_pwait2.
const parkAhead = 2 * time.Millisecond

// epoll waits for events until deadline (zero: none): parked in Go's
// poller until parkAhead before it, then in epoll_pwait2. It returns the
// number of events (0 once the deadline has passed).
func (p *poller) epoll(deadline time.Time) (int, error) {
	timeout := time.Duration(-1)
	if !deadline.IsZero() {
		timeout = max(time.Until(deadline), 0)
	}
	if p.raw != nil && (timeout < 0 || timeout > parkAhead) {
		var park time.Time
		if timeout >= 0 {
			park = deadline.Add(-parkAhead)
		}
		n, err := p.park(park)
		if errors.Is(err, net.ErrClosed) {
			return 0, nil // the owner sees it
		}
		if n != 0 || err != nil || timeout < 0 {
			return n, err
		}
		timeout = max(time.Until(deadline), 0)
	}
	n, err := epollWait(p.epfd, p.events[:], timeout)
	if err == unix.EINTR {
		return 0, nil
	}
	return n, err
}

// park waits in Go's poller until the epoll set has events or until
// (zero: no limit); 0 and no error once that time has come, net.ErrClosed
// once close has closed the set.
func (p *poller) park(until time.Time) (int, error) {
	if err := p.file.SetReadDeadline(until); err != nil {
		return 0, err
	}
	// epfd in parkfd for the park's time: events that come from now on
	// wake Go's poller; those that came before, the first look finds.
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(p.epfd)}
	if err := unix.EpollCtl(p.parkfd, unix.EPOLL_CTL_ADD, p.epfd, &ev); err != nil {
		p.raw = nil // wait in epoll_pwait2 from now on
		return 0, nil
	}
	defer unix.EpollCtl(p.parkfd, unix.EPOLL_CTL_DEL, p.epfd, nil)
	var n int
	var werr error
	err := p.raw.Read(func(uintptr) bool {
		n, werr = epollWait(p.epfd, p.events[:], 0)
		if werr == unix.EINTR {
			n, werr = 0, nil
		}
		return n > 0 || werr != nil
	})
	switch {
	case werr != nil:
		return 0, werr
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, nil
	case err != nil && p.closed():
		return 0, net.ErrClosed
	case err != nil:
		// Not closed, yet Go's poller failed: wait in epoll_pwait2 from
		// now on rather than return at once, again and again.
		p.raw = nil
		return 0, nil
	}
	return n, nil
}

// watch adds fd to the set, for reading.
func (p *poller) watch(fd int) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return opError("epoll_ctl", err)
	}
	return nil
}

// wait returns nil when a socket may be readable (or the owner is
// closing: the caller checks), os.ErrDeadlineExceeded once the deadline
// has passed (a zero one never does) and ErrWoken after wake.
func (p *poller) wait(deadline time.Time) error {
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		return os.ErrDeadlineExceeded
	}
	n, err := p.epoll(deadline)
	if err != nil {
		return opError("epoll_wait", err)
	}
	for _, ev := range p.events[:max(n, 0)] {
		if int(ev.Fd) == p.evfd {
			var v [8]byte
			unix.Read(p.evfd, v[:])
			if !p.closed() {
				return ErrWoken
			}
		}
	}
	return nil
}

// ready waits until deadline (one passed: not at all) for sockets to be
// readable and returns their events: nil and os.ErrDeadlineExceeded once
// the deadline has passed with none, ErrWoken after wake.
func (p *poller) ready(deadline time.Time) ([]unix.EpollEvent, error) {
	n, err := p.epoll(deadline)
	if err != nil {
		return nil, opError("epoll_wait", err)
	}
	events := p.events[:max(n, 0)]
	woken := false
	for _, ev := range events {
		if int(ev.Fd) == p.evfd {
			var v [8]byte
			unix.Read(p.evfd, v[:])
			woken = !p.closed()
		}
	}
	switch {
	case woken:
		return events, ErrWoken
	case n <= 0 && !deadline.IsZero() && !time.Now().Before(deadline): // the time is up
		return nil, os.ErrDeadlineExceeded
	}
	return events, nil
}

// wake makes a blocked wait (or the next one) return.
func (p *poller) wake() {
	p.evMu.RLock()
	defer p.evMu.RUnlock()
	if p.evfd < 0 {
		return
	}
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(p.evfd, one[:])
}

// close closes the epoll set and the eventfd. The owner must not call it
// while a wait runs (Conn and Ring hold their receive lock for both).
func (p *poller) close() {
	p.evMu.Lock()
	defer p.evMu.Unlock()
	if p.file != nil {
		// And with it parkfd, once a park in progress has returned.
		p.file.Close()
		p.parkfd = -1
	}
	for _, fd := range []*int{&p.epfd, &p.evfd} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}
