//go:build !linux

package rawsock

// RSTWatch is not implemented on this platform.
type RSTWatch struct{}

// NewRSTWatch is not implemented on this platform.
func NewRSTWatch(lo, hi uint16, mark uint32) (*RSTWatch, error) { return nil, errNotImplemented }

// NewRSTWatchPorts is not implemented on this platform.
func NewRSTWatchPorts([]PortRange, uint32) (*RSTWatch, error) { return nil, errNotImplemented }

func (*RSTWatch) Escaped() uint64 { return 0 }
func (*RSTWatch) Close() error    { return nil }
