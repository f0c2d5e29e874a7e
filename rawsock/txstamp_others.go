//go:build !linux

package rawsock

type txStampsSys struct{}

func (*txStampsSys) init(int) {}

func (*Conn) readTxStamps(*TxStamps) error         { return ErrNoTxStamps }
func (*PacketSender) readTxStamps(*TxStamps) error { return ErrNoTxStamps }
