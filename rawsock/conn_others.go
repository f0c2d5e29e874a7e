//go:build !linux

package rawsock

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"time"
)

// Config selects what Listen opens. See the Linux documentation.
type Config struct {
	IPv4, IPv6     bool
	PortLo, PortHi uint16
	Interface      string
	Mark           uint32
	NoTxStamps     bool
	RecvBuffer     int
	SendOnly       bool
}

// Conn is not implemented on this platform.
type Conn struct{}

var errNotImplemented = fmt.Errorf("rawsock: not implemented on %s", runtime.GOOS)

// Listen is not implemented on this platform.
func Listen(Config) (*Conn, error) { return nil, errNotImplemented }

func (*Conn) Send([]byte, uint32) error { return errNotImplemented }
func (*Conn) Recv([]byte, time.Time) (int, time.Time, error) {
	return 0, time.Time{}, errNotImplemented
}
func (*Conn) Wake()        {}
func (*Conn) Queued() bool { return false }

// ErrWoken is what Recv returns when Wake interrupted it.
var ErrWoken = errors.New("rawsock: woken")

func (*Conn) TxTime(uint32, bool) (time.Time, bool)    { return time.Time{}, false }
func (*Conn) Close() error                             { return nil }
func SourceFor(netip.Addr, string) (netip.Addr, error) { return netip.Addr{}, errNotImplemented }
func ProbePortRange() (uint16, uint16, error)          { return 0, 0, errNotImplemented }

// SourceFinder is not implemented on this platform.
type SourceFinder struct{ Interface string }

func (*SourceFinder) Source(netip.Addr) (netip.Addr, error) { return netip.Addr{}, errNotImplemented }
func (*SourceFinder) Close() error                          { return nil }

func (*SourceFinder) PathMTU(netip.Addr) (int, error) { return 0, errNotImplemented }
