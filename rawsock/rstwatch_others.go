//go:build !linux

package rawsock

func newRSTWatch([]PortRange, uint32) (*RSTWatch, error) { return nil, errNotImplemented }
func (*RSTWatch) drain()                                 {}
func (*RSTWatch) close() error                           { return nil }
