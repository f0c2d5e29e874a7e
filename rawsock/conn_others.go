//go:build !linux

package rawsock

import (
	"fmt"
	"net/netip"
	"runtime"
	"time"
)

// errNotImplemented is what every function that needs the operating
// system returns off Linux.
var errNotImplemented = fmt.Errorf("rawsock: not implemented on %s", runtime.GOOS)

type connSys struct{ poller }

// poller is the Linux epoll set; here only its wake.
type poller struct{}

func (*poller) wake() {}

func listen(Config) (*Conn, error)                  { return nil, errNotImplemented }
func (*Conn) send([]byte, uint32) error             { return errNotImplemented }
func (*Conn) txTime(uint32, bool) (time.Time, bool) { return time.Time{}, false }
func (*Conn) recv([]byte, time.Time) (int, time.Time, error) {
	return 0, time.Time{}, errNotImplemented
}
func (*Conn) queued() bool                                  { return false }
func (*Conn) close() error                                  { return nil }
func (*Conn) pathMTU(netip.Addr) (int, error)               { return 0, errNotImplemented }
func (*SourceFinder) source(netip.Addr) (netip.Addr, error) { return netip.Addr{}, errNotImplemented }
func (*SourceFinder) pathMTU(netip.Addr) (int, error)       { return 0, errNotImplemented }
func (*SourceFinder) close() error                          { return nil }
func localPortRange() (int, int, error)                     { return 0, 0, errNotImplemented }
func kernelBacklog() bool                                   { return false }
func (*Conn) batchStamps() bool                             { return false }
func (*Conn) shareSends() bool                              { return false }
func (*Conn) families() (v4, v6 bool)                       { return false, false }
