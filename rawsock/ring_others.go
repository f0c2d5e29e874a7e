//go:build !linux

package rawsock

import (
	"sync/atomic"
	"time"
)

type ringSys struct {
	poller
	read atomic.Uint64
}

func listenRing(RingConfig) (*Ring, error) { return nil, errNotImplemented }
func (*Ring) readWith(time.Time, func([]byte, time.Time), func([]byte, time.Time, uint32)) (int, error) {
	return 0, errNotImplemented

}
func (*Ring) badChecksums() uint64 { return 0 }
func (*Ring) pending() float64     { return 0 }
func (*Ring) dropped() uint64      { return 0 }
func (*Ring) mark() uint64         { return 0 }
func (*Ring) close() error         { return nil }
