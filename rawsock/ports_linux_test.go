//go:build linux

package rawsock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// These tests bind real ports of the current network namespace (no
// privileges needed above 1024). Other sockets may hold some of them:
// every check allows for that, as ReservePorts itself must.

const (
	testPortLo = 62000
	testPortHi = 62999
)

func reserve(t testing.TB, req PortRequest) *PortBlock {
	t.Helper()
	b, err := ReservePorts(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// bindErr tries what another program could do with port: bind it on
// either family or on loopback, with or without SO_REUSEADDR and
// SO_REUSEPORT, or connect from it.
func bindErrs(port uint16) map[string]error {
	lc := func(reuse bool) net.ListenConfig {
		return net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			c.Control(func(fd uintptr) {
				if reuse {
					unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
					unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
				}
			})
			return nil
		}}
	}
	errs := map[string]error{}
	for _, a := range []struct{ name, network, addr string }{
		{"tcp4 any", "tcp4", "0.0.0.0"},
		{"tcp4 loopback", "tcp4", "127.0.0.1"},
		{"tcp6 any", "tcp6", "[::]"},
		{"tcp6 loopback", "tcp6", "[::1]"},
	} {
		for _, reuse := range []bool{false, true} {
			l := lc(reuse)
			ln, err := l.Listen(context.Background(), a.network, fmt.Sprintf("%s:%d", a.addr, port))
			if err == nil {
				ln.Close()
			}
			errs[fmt.Sprintf("listen %s reuse=%v", a.name, reuse)] = err
		}
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}, Timeout: time.Second}
	c, err := d.Dial("tcp4", "127.0.0.1:1")
	if err == nil {
		c.Close()
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		err = nil // it got as far as sending its SYN
	}
	errs["connect from it"] = err
	return errs
}

// TestReservePortsHolds: while the block is open, nobody else can bind
// or connect from its ports; after Close they can.
func TestReservePortsHolds(t *testing.T) {
	b, err := ReservePorts(PortRequest{Lo: testPortLo, Hi: testPortHi, Min: 16})
	if err != nil {
		t.Fatal(err)
	}
	if b.Len() != 16 || b.IPv4Only() {
		t.Fatalf("%d ports, IPv4 only %v", b.Len(), b.IPv4Only())
	}
	if !slices.IsSorted(b.Ports()) || b.Lo() != b.Ports()[0] || b.Hi() != b.Ports()[15] {
		t.Fatalf("ports %v, lo %d, hi %d", b.Ports(), b.Lo(), b.Hi())
	}
	port := b.Ports()[7]
	for what, err := range bindErrs(port) {
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("%s port %d while held: %v, want EADDRINUSE", what, port, err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for what, err := range bindErrs(port) {
		if err != nil {
			t.Errorf("%s port %d after Close: %v", what, port, err)
		}
	}
}

// TestReservePortsDisjoint: six blocks taken at once from the same range,
// all starting at the same port, never share one.
func TestReservePortsDisjoint(t *testing.T) {
	const n, size = 6, 100
	blocks := make([]*PortBlock, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			blocks[i], errs[i] = ReservePorts(PortRequest{Lo: testPortLo, Hi: testPortHi, Min: size, Start: testPortLo})
		})
	}
	wg.Wait()
	owner := map[uint16]int{}
	for i, b := range blocks {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		defer b.Close()
		if b.Len() != size {
			t.Errorf("block %d holds %d ports", i, b.Len())
		}
		for _, p := range b.Ports() {
			if j, ok := owner[p]; ok {
				t.Errorf("port %d in blocks %d and %d", p, j, i)
			}
			owner[p] = i
		}
	}
}

// TestReservePortsSkipsHeld: ports that listeners hold are skipped and
// become holes between the block's ranges; too few free ports is an
// error that says so.
func TestReservePortsSkipsHeld(t *testing.T) {
	const lo, hi = testPortLo + 500, testPortLo + 539
	held := map[uint16]bool{}
	for _, p := range []uint16{lo, lo + 3, lo + 4, lo + 10, hi} {
		ln, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			continue // somebody else holds it: a hole all the same
		}
		defer ln.Close()
		held[p] = true
	}
	if len(held) == 0 {
		t.Skip("could not bind any test port")
	}
	b := reserve(t, PortRequest{Lo: lo, Hi: hi, Min: 30, Max: 40, Start: lo})
	for _, p := range b.Ports() {
		if held[p] {
			t.Errorf("port %d is held by a listener but in the block", p)
		}
	}
	if b.Len() > 40-len(held) {
		t.Errorf("%d ports from %d candidates, %d of them held", b.Len(), 40, len(held))
	}
	rs := b.Ranges()
	n := 0
	for i, r := range rs {
		n += int(r.Hi-r.Lo) + 1
		if i > 0 && r.Lo <= rs[i-1].Hi+1 {
			t.Errorf("ranges %v overlap or touch", rs)
		}
	}
	if n != b.Len() || !b.Contains(rs[0].Lo) || b.Contains(lo+3) && held[lo+3] {
		t.Errorf("ranges %v for %d ports", rs, b.Len())
	}
	t.Logf("ranges %s", FormatRanges(rs))

	_, err := ReservePorts(PortRequest{Lo: lo, Hi: hi, Min: 1})
	if !errors.Is(err, ErrPortsInUse) {
		t.Errorf("reserving from a range whose ports are all held: %v, want ErrPortsInUse", err)
	}
	t.Logf("%v", err)
}

func TestReservePort(t *testing.T) {
	b := reserve(t, PortRequest{Lo: testPortLo, Hi: testPortHi, Min: 1})
	p := b.Ports()[0]
	if _, err := ReservePort(p); !errors.Is(err, ErrPortsInUse) {
		t.Errorf("ReservePort(%d) held by a block: %v, want ErrPortsInUse", p, err)
	}
	b.Close()
	one, err := ReservePort(p)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if one.Len() != 1 || !one.Contains(p) || one.Ranges()[0] != (PortRange{p, p}) {
		t.Errorf("ReservePort(%d): %v", p, one.Ports())
	}
}

// TestReservePortsFDLimit: the block takes no more ports than the
// open-file limit leaves room for, and says so when that is too few.
func TestReservePortsFDLimit(t *testing.T) {
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = uint64(len(ents) + portFDMargin + 30)
	if lim.Cur > old.Max {
		t.Skip("hard limit too low")
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	defer unix.Setrlimit(unix.RLIMIT_NOFILE, &old)
	b, err := ReservePorts(PortRequest{Lo: testPortLo, Hi: testPortHi, Min: 10, Max: 500})
	if err != nil {
		t.Fatal(err)
	}
	n := b.Len()
	b.Close()
	if n < 10 || n > 31 { // /proc/self/fd's own descriptor was counted
		t.Errorf("%d ports with room for about 30", n)
	}
	if _, err := ReservePorts(PortRequest{Lo: testPortLo, Hi: testPortHi, Min: 100}); err == nil {
		t.Error("100 ports with room for 30")
	} else {
		t.Logf("%v", err)
	}
}

// TestHoldPortIPv4: where the kernel has no IPv6 the block holds its
// ports with AF_INET sockets, which keep IPv4 binds off the port and,
// necessarily, not IPv6 ones.
func TestHoldPortIPv4(t *testing.T) {
	b := reserve(t, PortRequest{Lo: testPortLo, Hi: testPortHi, Min: 1})
	p := b.Ports()[0]
	b.Close()
	v4 := &PortBlock{v4: true}
	if err := v4.hold(p); err != nil {
		t.Fatal(err)
	}
	defer v4.Close()
	errs := bindErrs(p)
	if !errors.Is(errs["listen tcp4 any reuse=false"], syscall.EADDRINUSE) || errs["listen tcp6 loopback reuse=false"] != nil {
		t.Errorf("an AF_INET hold: %v", errs)
	}
}

// BenchmarkReservePorts: the setup cost of a block (socket, setsockopt
// and bind per port), and its release.
func BenchmarkReservePorts(b *testing.B) {
	for _, n := range []int{1, 512, 2048} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			var hold, release time.Duration
			for b.Loop() {
				t0 := time.Now()
				blk, err := ReservePorts(PortRequest{Lo: 61000, Hi: 65535, Min: n})
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				blk.Close()
				hold += t1.Sub(t0)
				release += time.Since(t1)
			}
			b.ReportMetric(float64(hold.Microseconds())/float64(b.N), "µs-hold/op")
			b.ReportMetric(float64(release.Microseconds())/float64(b.N), "µs-close/op")
		})
	}
}
