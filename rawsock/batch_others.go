//go:build !linux

package rawsock

type batchSys struct{}

func (*batchSys) init(int) {}

// SendBatch is not implemented on this platform.
func (*Conn) SendBatch(b *Batch) (int, error) { b.Reset(); return 0, errNotImplemented }
