//go:build !linux

package rawsock

import (
	"net"
	"net/netip"
)

// NextHop is where the packets to a destination leave this host.
type NextHop struct {
	Ifindex        int
	Gateway        netip.Addr
	SrcMAC, DstMAC net.HardwareAddr
}

// DirectPath is not implemented on this platform.
func DirectPath([]netip.Prefix, int) (NextHop, error) { return NextHop{}, errNotImplemented }

// PacketSender is not implemented on this platform.
type PacketSender struct{}

// NewPacketSender is not implemented on this platform.
func NewPacketSender(NextHop, bool) (*PacketSender, error) { return nil, errNotImplemented }

func (*PacketSender) SendBatch(b *Batch) (int, error) { b.Reset(); return 0, errNotImplemented }
func (*PacketSender) Close() error                    { return nil }
