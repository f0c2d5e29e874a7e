//go:build !linux

package rawsock

type batchSys struct{}

func (*batchSys) init(int) {}

func (*Conn) sendBatch(b *Batch) (int, error) { b.Reset(); return 0, errNotImplemented }
