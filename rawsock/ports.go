package rawsock

import "fmt"

// minProbePorts is the smallest source-port range PortRangeOutside accepts.
const minProbePorts = 1024

// PortRangeOutside returns the source ports probes should use given the
// kernel's ephemeral range [lo, hi] (net.ipv4.ip_local_port_range): the
// ports above it if there are at least 1024 of them, else the ports between
// 1024 and lo. Probes from outside the ephemeral range never collide with
// the kernel's own connections.
func PortRangeOutside(lo, hi int) (uint16, uint16, error) {
	if lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("rawsock: bad ephemeral port range %d-%d", lo, hi)
	}
	if 65535-hi >= minProbePorts {
		return uint16(hi + 1), 65535, nil
	}
	if lo-1024 >= minProbePorts {
		return 1024, uint16(lo - 1), nil
	}
	return 0, 0, fmt.Errorf("rawsock: ephemeral port range %d-%d leaves fewer than %d ports for probes", lo, hi, minProbePorts)
}

// MaxPacketSize is the buffer size that holds any packet Recv returns:
// with GRO and GSO (veth does both) raw sockets see packets of up to 64 KiB,
// and IPv6 ones get a 40-byte header synthesized in front.
const MaxPacketSize = 65535 + IPv6MinimumSize
