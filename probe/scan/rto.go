package scan

import (
	"math"
	"net/netip"
	"sync"
	"time"
)

// MinRTO is the shortest a scan waits for a host's answer after a probe a
// retry will follow, however fast the host answered before: the SYN-ACKs
// timed from one host shorten its wait from the timeout (-w) to SRTT + 4
// RTTVAR (RFC 6298), never below this; after the last probe, to that plus
// the server's SYN-ACK retransmission timer (probe.SynAckRTO).
const MinRTO = 100 * time.Millisecond

// hostRTTs keeps an RFC 6298 RTT estimate per host that answered, in a
// fixed-size open-addressing table: memory does not grow with the number
// of hosts beyond it. A host the table has no room for has no estimate,
// and waits the full timeout. Safe for concurrent use.
type hostRTTs struct {
	mu   sync.Mutex
	keys [][2]uint64 // As16 of the address; zero: empty
	est  []rttEstimate
	mask uint64
}

// rttEstimate holds SRTT and RTTVAR in microseconds.
type rttEstimate struct {
	srtt, rttvar uint32
}

// maxProbe bounds the slots a lookup visits; maxHostRTTs bounds the
// table (1.5 MiB).
const (
	maxProbe    = 16
	maxHostRTTs = 1 << 16
)

func newHostRTTs(hosts uint64) *hostRTTs {
	size := uint64(256)
	for size < 2*hosts && size < maxHostRTTs {
		size <<= 1
	}
	return &hostRTTs{keys: make([][2]uint64, size), est: make([]rttEstimate, size), mask: size - 1}
}

func addrKey(a netip.Addr) [2]uint64 {
	b := a.As16()
	var k [2]uint64
	for i := range 8 {
		k[0] = k[0]<<8 | uint64(b[i])
		k[1] = k[1]<<8 | uint64(b[8+i])
	}
	return k
}

func (t *hostRTTs) slot(k [2]uint64, insert bool) int {
	h := (k[0]*0x9e3779b97f4a7c15 ^ k[1]) * 0xbf58476d1ce4e5b9
	i := h >> 32 & t.mask
	for range maxProbe {
		switch t.keys[i] {
		case k:
			return int(i)
		case [2]uint64{}:
			if !insert {
				return -1
			}
			t.keys[i] = k
			return int(i)
		}
		i = (i + 1) & t.mask
	}
	return -1
}

// add counts an RTT measured to host a.
func (t *hostRTTs) add(a netip.Addr, rtt time.Duration) {
	if rtt <= 0 {
		return
	}
	us := uint32(min(rtt/time.Microsecond, math.MaxUint32/2))
	if us == 0 {
		us = 1
	}
	k := addrKey(a)
	t.mu.Lock()
	defer t.mu.Unlock()
	i := t.slot(k, true)
	if i < 0 {
		return
	}
	e := &t.est[i]
	if e.srtt == 0 {
		e.srtt, e.rttvar = us, us/2
		return
	}
	d := int64(e.srtt) - int64(us)
	if d < 0 {
		d = -d
	}
	e.rttvar = uint32(int64(e.rttvar) + (d-int64(e.rttvar))/4)
	e.srtt = uint32(int64(e.srtt) + (int64(us)-int64(e.srtt))/8)
}

// timeout returns how long to wait for host a's answer after its probe:
// SRTT + 4 RTTVAR, at least MinRTO, plus extra, at most max, which is also
// the wait for a host never measured.
func (t *hostRTTs) timeout(a netip.Addr, extra, max time.Duration) time.Duration {
	k := addrKey(a)
	t.mu.Lock()
	defer t.mu.Unlock()
	i := t.slot(k, false)
	if i < 0 {
		return max
	}
	e := &t.est[i]
	return min(max, extra+RTO(time.Duration(e.srtt)*time.Microsecond, time.Duration(e.rttvar)*time.Microsecond))
}

// RTO is RFC 6298's retransmission timeout, SRTT + max(G, 4 RTTVAR) with
// a clock granularity G of 1 ms, and at least MinRTO.
func RTO(srtt, rttvar time.Duration) time.Duration {
	return max(MinRTO, srtt+max(time.Millisecond, 4*rttvar))
}
