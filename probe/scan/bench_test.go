package scan

import (
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// BenchmarkPermAt: a /16 with 1000 ports (65.5M pairs; the Feistel domain
// is 2^26, so cycle walking averages 1.02 encryptions).
func BenchmarkPermAt(b *testing.B) {
	for _, bc := range []struct {
		name string
		n    uint64
	}{
		{"16x1000", 65536 * 1000},
		{"worst", 1<<24 + 1}, // domain 2^26: about 4 encryptions per At
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := NewPerm(bc.n, testKey)
			b.ReportAllocs()
			var sink uint64
			var i uint64
			for b.Loop() {
				sink += p.At(i)
				if i++; i == bc.n {
					i = 0
				}
			}
			_ = sink
		})
	}
}

// BenchmarkSetPair: a /16 with 1000 ports in 4 ranges behind 99 other
// blocks, as the scanner calls it: at permuted indices.
func BenchmarkSetPair(b *testing.B) {
	spec, _ := ParseSpec("198.18.0.0/16:1-100,443,1000-1800,8000-8098")
	other, _ := ParseSpec("[2001:db8::/120]:22,80")
	host, _ := ParseSpec("h:443")
	blocks := []Block{{Spec: &spec}}
	for range 49 {
		blocks = append(blocks, Block{Spec: &other},
			Block{Spec: &host, Addrs: []netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1")}})
	}
	s := mustNewSet(b, blocks...)
	p := NewPerm(s.Len(), testKey)
	idx := make([]uint64, 1<<16)
	for i := range idx {
		idx[i] = p.At(uint64(i))
	}
	b.ReportAllocs()
	var sink uint16
	i := 0
	for b.Loop() {
		_, port, _ := s.Pair(idx[i&(len(idx)-1)])
		sink += port
		i++
	}
	_ = sink
}

func BenchmarkLimiterReserve(b *testing.B) {
	l := NewLimiter(1e9, 64)
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Nanosecond)
		l.Reserve(now, 1)
	}
}

// BenchmarkSendTimes: a probe's put and its answer's get, 1,000 probes
// apart (100 ms at 10,000 probes a second), in a table of the command
// line's size (65,536 slots) and of the largest (524,288).
func BenchmarkSendTimes(b *testing.B) {
	for _, rate := range []float64{10000, 1e6} {
		b.Run(strconv.FormatFloat(rate, 'f', 0, 64), func(b *testing.B) {
			st := newSendTimes(rate, time.Second)
			perm := NewPerm(1<<20, testKey)
			order := make([]uint64, 1<<20)
			for i := range order {
				order[i] = perm.At(uint64(i))
			}
			i := 0
			for b.Loop() {
				st.put(order[i], 0, int64(i))
				st.get(order[(i-1000)&(len(order)-1)], 0)
				i = (i + 1) & (len(order) - 1)
			}
		})
	}
}
