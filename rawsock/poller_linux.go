//go:build linux

package rawsock

import (
	"encoding/binary"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// poller waits for its sockets with epoll, with nanosecond deadlines
// (epollWait), and can be woken through an eventfd: what Conn.Recv and
// Ring.Read wait with.
type poller struct {
	epfd, evfd int
	events     [8]unix.EpollEvent
	closed     func() bool // the owner's: a wake-up while it closes is not ErrWoken
	// evMu keeps close from closing the eventfd under a wake in progress
	// (Wake may come from any goroutine, at any time): a wake after
	// close does nothing, rather than write to a descriptor number the
	// process may have given to another file since.
	evMu sync.RWMutex
}

// open creates the epoll set and the eventfd. On error, close cleans up.
func (p *poller) open(closed func() bool) error {
	p.epfd, p.evfd, p.closed = -1, -1, closed
	var err error
	if p.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return opError("epoll_create1", err)
	}
	if p.evfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return opError("eventfd", err)
	}
	return p.watch(p.evfd)
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
	timeout := time.Duration(-1)
	if !deadline.IsZero() {
		if timeout = time.Until(deadline); timeout <= 0 {
			return os.ErrDeadlineExceeded
		}
	}
	n, err := epollWait(p.epfd, p.events[:], timeout)
	if err != nil && err != unix.EINTR {
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
	timeout := time.Duration(-1)
	if !deadline.IsZero() {
		timeout = max(time.Until(deadline), 0)
	}
	n, err := epollWait(p.epfd, p.events[:], timeout)
	if err != nil && err != unix.EINTR {
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
	case n <= 0 && timeout >= 0 && err == nil: // the time is up
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

// close closes the epoll set and the eventfd.
func (p *poller) close() {
	p.evMu.Lock()
	defer p.evMu.Unlock()
	for _, fd := range []*int{&p.epfd, &p.evfd} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
}
