//go:build linux

package rawsock

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// listenOrSkip opens a Conn on a random block of 16 ports, or skips the
// test without CAP_NET_RAW.
func listenOrSkip(t *testing.T, v4, v6 bool) (*Conn, uint16) {
	t.Helper()
	lo := uint16(61000 + rand.IntN(4000))
	c, err := Listen(Config{IPv4: v4, IPv6: v6, PortLo: lo, PortHi: lo + 15})
	if errors.Is(err, os.ErrPermission) {
		t.Skip("needs CAP_NET_RAW: run as root (sudo go test ./rawsock)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, lo
}

// TestIntegrationLoopbackSYN sends a real SYN to a kernel listener on
// loopback and checks the SYN-ACK, both kernel timestamps and the RTT.
func TestIntegrationLoopbackSYN(t *testing.T) {
	for _, addr := range []string{"127.0.0.1", "::1"} {
		t.Run(addr, func(t *testing.T) {
			a := netip.MustParseAddr(addr)
			c, lo := listenOrSkip(t, a.Is4(), a.Is6())
			ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
			if err != nil {
				t.Skipf("no %s listener: %v", addr, err)
			}
			defer ln.Close()
			port := uint16(ln.Addr().(*net.TCPAddr).Port)

			var opts [wire.MaxOptionsSize]byte
			on := (&wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true, TSVal: 1}).Encode(opts[:])
			seg := wire.Segment{Src: a, Dst: a, TTL: 64, DF: true, SrcPort: lo + 3, DstPort: port, Seq: 0x01020304,
				Flags: wire.FlagSyn, Window: 64240, Options: opts[:on]}
			buf := make([]byte, 256)
			n, err := seg.Build(buf)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Send(buf[:n], 42); err != nil {
				t.Fatal(err)
			}
			rb := make([]byte, 2048)
			var p wire.Packet
			var rx time.Time
			deadline := time.AfterFunc(5*time.Second, func() { c.Close() })
			defer deadline.Stop()
			for {
				n, ts, err := c.Recv(rb, time.Time{})
				if err != nil {
					t.Fatalf("no SYN-ACK: %v", err)
				}
				if wire.Parse(rb[:n], &p) == nil && p.Proto == 6 && p.SrcPort == port && p.DstPort == lo+3 {
					rx = ts
					break
				}
			}
			if p.Flags != wire.FlagSyn|wire.FlagAck || p.Ack != 0x01020305 || p.Src != a || p.Dst != a || p.TTL != 64 {
				t.Errorf("reply %+v", p)
			}
			if p.Options.MSS == 0 || !p.Options.SACKPermitted || !p.Options.Timestamps || p.Options.TSEcr != 1 {
				t.Errorf("SYN-ACK options %+v", p.Options)
			}
			tx, ok := c.TxTime(42, a.Is6())
			if !ok || rx.IsZero() {
				t.Fatalf("kernel stamps: tx %v (%v), rx %v", tx, ok, rx)
			}
			if rtt := rx.Sub(tx); rtt <= 0 || rtt > 100*time.Millisecond {
				t.Errorf("kernel RTT %v", rtt)
			}
			if _, ok := c.TxTime(43, a.Is6()); ok {
				t.Error("TxTime reports a stamp for a packet never sent")
			}
		})
	}
}

// TestIntegrationFilterScope: replies to ports outside the Conn's range
// never reach Recv.
func TestIntegrationFilterScope(t *testing.T) {
	c, lo := listenOrSkip(t, true, false)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	a := netip.MustParseAddr("127.0.0.1")
	buf := make([]byte, 128)
	for i, sport := range []uint16{lo - 1, lo + 16, lo + 15} { // only the last is ours
		n, _ := (&wire.Segment{Src: a, Dst: a, TTL: 64, SrcPort: sport, DstPort: port, Seq: uint32(i), Flags: wire.FlagSyn, Window: 1}).Build(buf)
		if err := c.Send(buf[:n], uint32(i)); err != nil {
			t.Fatal(err)
		}
	}
	rb := make([]byte, 2048)
	n, _, err := c.Recv(rb, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var p wire.Packet
	if err := wire.Parse(rb[:n], &p); err != nil || p.DstPort != lo+15 {
		t.Errorf("first packet received: %+v (%v), want the reply to port %d", p, err, lo+15)
	}
}

// TestIntegrationZeroAllocs: Send and Recv allocate nothing per packet.
func TestIntegrationZeroAllocs(t *testing.T) {
	c, lo := listenOrSkip(t, true, true)
	for _, addr := range []string{"127.0.0.1", "::1"} {
		a := netip.MustParseAddr(addr)
		ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
		if err != nil {
			t.Skipf("no %s listener: %v", addr, err)
		}
		defer ln.Close()
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		buf := make([]byte, 128)
		rb := make([]byte, 2048)
		id := uint32(0)
		allocs := testing.AllocsPerRun(200, func() {
			id++
			n, _ := (&wire.Segment{Src: a, Dst: a, TTL: 64, SrcPort: lo, DstPort: port, Seq: id * 1000, Flags: wire.FlagSyn, Window: 1}).Build(buf)
			if err := c.Send(buf[:n], id); err != nil {
				t.Fatal(err)
			}
			// Loopback answers inside Send: the SYN-ACK is queued already.
			if _, _, err := c.Recv(rb, time.Time{}); err != nil {
				t.Fatal(err)
			}
			c.TxTime(id, a.Is6())
			// Free the listener's half-open entry.
			n, _ = (&wire.Segment{Src: a, Dst: a, TTL: 64, SrcPort: lo, DstPort: port, Seq: id*1000 + 1, Flags: wire.FlagRst}).Build(buf)
			c.Send(buf[:n], id+1<<31)
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per send+receive, want 0", addr, allocs)
		}
	}
}

// TestIntegrationCloseWakesRecv: Close unblocks a Recv with net.ErrClosed.
func TestIntegrationCloseWakesRecv(t *testing.T) {
	c, _ := listenOrSkip(t, true, true)
	done := make(chan error)
	go func() {
		_, _, err := c.Recv(make([]byte, 2048), time.Time{})
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Recv returned %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Recv still blocked after Close")
	}
}

// TestIntegrationSendBatch: a batch of SYNs to a loopback listener goes
// out in one call and every SYN-ACK comes back.
func TestIntegrationSendBatch(t *testing.T) {
	c, lo := listenOrSkip(t, true, false)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	a := netip.MustParseAddr("127.0.0.1")
	b := NewBatch(8)
	fill := func() {
		for i := range 8 {
			n, err := (&wire.Segment{Src: a, Dst: a, TTL: 64, SrcPort: lo + uint16(i), DstPort: port, Seq: uint32(i) << 20, Flags: wire.FlagSyn, Window: 1}).Build(b.Slot())
			if err != nil || !b.Commit(n) {
				t.Fatalf("build %d: %v", i, err)
			}
		}
	}
	fill()
	if !b.Full() || b.Commit(40) {
		t.Fatal("a full batch took another packet")
	}
	b.Reset()
	// Twice: AllocsPerRun warms up with one call.
	allocs := testing.AllocsPerRun(1, func() {
		fill()
		if n, err := c.SendBatch(b); n != 8 || err != nil {
			t.Fatalf("SendBatch = %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Errorf("SendBatch allocates %v times", allocs)
	}
	got := map[uint16]bool{}
	rb := make([]byte, MaxPacketSize)
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < 8 {
		n, _, err := c.Recv(rb, deadline)
		if err != nil {
			t.Fatalf("%d SYN-ACKs of 8: %v", len(got), err)
		}
		var p wire.Packet
		if wire.Parse(rb[:n], &p) == nil && p.Flags == wire.FlagSyn|wire.FlagAck && p.Ack == uint32(p.DstPort-lo)<<20+1 {
			got[p.DstPort] = true
		}
	}
}

// TestIntegrationConnQueued: Queued tells a reply waiting in a receive
// socket.
func TestIntegrationConnQueued(t *testing.T) {
	c, lo := listenOrSkip(t, true, false)
	a := netip.MustParseAddr("127.0.0.1")
	if c.Queued() {
		t.Fatal("Queued before anything was sent")
	}
	// A SYN to a closed port on loopback: the RST comes back to lo+1.
	buf := make([]byte, 128)
	n, err := (&wire.Segment{Src: a, Dst: a, TTL: 64, SrcPort: lo + 1, DstPort: 9, Seq: 1, Flags: wire.FlagSyn, Window: 1024}).Build(buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(buf[:n], 1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !c.Queued() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !c.Queued() {
		t.Fatal("the RST is not Queued")
	}
	rb := make([]byte, 2048)
	var p wire.Packet
	if n, _, err := c.Recv(rb, time.Now().Add(time.Second)); err != nil || wire.Parse(rb[:n], &p) != nil || p.Flags&wire.FlagRst == 0 {
		t.Fatalf("Recv: %v %+v", err, p)
	}
	if c.Queued() {
		t.Error("Queued after reading the only packet")
	}
	c.Close()
	if c.Queued() {
		t.Error("Queued after Close")
	}
}

// TestIntegrationSourceFinder: one finder's reused sockets give the kernel's
// source for each destination in turn, as a fresh SourceFor does, also
// after a destination without a route.
func TestIntegrationSourceFinder(t *testing.T) {
	lab := netlab.New(t)
	err := lab.InNS(lab.Prober, func() error {
		var f SourceFinder
		defer f.Close()
		for _, tt := range []struct{ dst, want string }{
			{"127.0.0.1", "127.0.0.1"},
			{lab.TargetV4.String(), lab.ProberV4.String()},
			{"127.0.0.9", "127.0.0.1"},
			{"::1", "::1"},
			{lab.TargetV6.String(), lab.ProberV6.String()},
			{"203.0.113.1", ""}, // no route
			{lab.TargetV4.String(), lab.ProberV4.String()},
			{"::1", "::1"},
		} {
			dst := netip.MustParseAddr(tt.dst)
			got, err := f.Source(dst)
			fresh, ferr := SourceFor(dst, "")
			switch {
			case tt.want == "" && (err == nil || ferr == nil):
				return fmt.Errorf("%s: %v, %v; fresh %v, %v; want errors", tt.dst, got, err, fresh, ferr)
			case tt.want != "" && (err != nil || got.String() != tt.want || fresh != got):
				return fmt.Errorf("%s: %v, %v; fresh %v, %v; want %s", tt.dst, got, err, fresh, ferr, tt.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

func BenchmarkSourceFinder(b *testing.B) {
	var f SourceFinder
	defer f.Close()
	a := netip.MustParseAddr("127.0.0.5")
	for b.Loop() {
		if _, err := f.Source(a); err != nil {
			b.Fatal(err)
		}
	}
}

// TestIntegrationSourceFinderWatch: a finder with a RouteWatch answers
// from its cache while nothing changes, and as the kernel does again once
// an address or a route changes.
func TestIntegrationSourceFinderWatch(t *testing.T) {
	lab := netlab.New(t)
	err := lab.InNS(lab.Prober, func() error {
		w, err := WatchRoutes()
		if err != nil {
			return err
		}
		defer w.Close()
		f := SourceFinder{Watch: w}
		defer f.Close()
		dst := netip.MustParseAddr("198.51.100.7") // routed below
		want := func(step, src string) error {
			// The watch sees the change within a moment.
			deadline := time.Now().Add(5 * time.Second)
			for {
				got, err := f.Source(dst)
				fresh, _ := SourceFor(dst, "")
				if err == nil && got.String() == src && fresh == got {
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("%s: %v, %v (fresh %v), want %s", step, got, err, fresh, src)
				}
				time.Sleep(time.Millisecond)
			}
		}
		run := func(args ...string) error {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				return fmt.Errorf("ip %v: %v %s", args, err, out)
			}
			return nil
		}
		if err := run("route", "add", "198.51.100.0/24", "via", lab.TargetV4.String()); err != nil {
			return err
		}
		if err := want("routed", lab.ProberV4.String()); err != nil {
			return err
		}
		g := w.Generation()
		for range 100 {
			if src, err := f.Source(dst); err != nil || src != lab.ProberV4 {
				return fmt.Errorf("cached: %v %v", src, err)
			}
		}
		if w.Generation() != g {
			return errors.New("the generation moved with nothing changed")
		}
		// Another address on the link, preferred for the route.
		if err := run("addr", "add", "198.18.250.9/32", "dev", lab.ProberIf); err != nil {
			return err
		}
		if err := run("route", "replace", "198.51.100.0/24", "via", lab.TargetV4.String(), "src", "198.18.250.9"); err != nil {
			return err
		}
		return want("a new source", "198.18.250.9")
	})
	if err != nil {
		t.Error(err)
	}
}

// TestIntegrationRecvBatches: bursts of replies, read in batches, come out
// each once, whole and kernel-stamped, in their socket's order, for both
// families at once; a segment of 30,000 bytes comes out whole too; and
// every transmit stamp is there.
func TestIntegrationRecvBatches(t *testing.T) {
	c, lo := listenOrSkip(t, true, true)
	const perFamily = 3 * rxBatchLen
	buf := make([]byte, 40000)
	// SYNs to a closed port from each of our ports: the kernel answers
	// each with a RST to it, whose ack names the SYN.
	for i := range perFamily {
		for _, a := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")} {
			seg := wire.Segment{Src: a, Dst: a, TTL: 64, SrcPort: lo + uint16(i%16), DstPort: 9, Seq: uint32(i) << 8, Flags: wire.FlagSyn, Window: 1024}
			n, err := seg.Build(buf)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Send(buf[:n], uint32(i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A long segment to one of our ports (loopback's MTU is 65536).
	big := wire.Segment{Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("127.0.0.1"), TTL: 64, SrcPort: 9, DstPort: lo, Seq: 7, Ack: 1,
		Flags: wire.FlagAck | wire.FlagPsh, Window: 1024, Payload: make([]byte, 30000)}
	bn, err := big.Build(buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(buf[:bn], 1000); err != nil {
		t.Fatal(err)
	}
	got := map[bool][]uint32{} // by family: the acks, in read order
	var last [2]time.Time
	rb := make([]byte, MaxPacketSize)
	bigN := 0
	deadline := time.Now().Add(5 * time.Second)
	for len(got[false])+len(got[true]) < 2*perFamily || bigN == 0 {
		n, ts, err := c.Recv(rb, deadline)
		if err != nil {
			t.Fatalf("%d and %d RSTs of %d each, long segment %d: %v", len(got[false]), len(got[true]), perFamily, bigN, err)
		}
		var p wire.Packet
		if wire.Parse(rb[:n], &p) != nil {
			t.Fatalf("unparsable packet of %d bytes", n)
		}
		if ts.IsZero() {
			t.Errorf("a packet without a kernel stamp: %+v", p)
		}
		v6 := p.Src.Is6()
		if fam := map[bool]int{false: 0, true: 1}[v6]; ts.Before(last[fam]) {
			t.Errorf("stamps out of order: %v after %v", ts, last[fam])
		} else {
			last[fam] = ts
		}
		switch {
		case p.Flags&wire.FlagRst != 0 && p.SrcPort == 9:
			got[v6] = append(got[v6], p.Ack)
		case p.DstPort == lo && p.SrcPort == 9 && p.Flags&wire.FlagPsh != 0:
			bigN = n
		}
	}
	for _, v6 := range []bool{false, true} {
		for i, ack := range got[v6] {
			if ack != uint32(i)<<8+1 {
				t.Errorf("v6 %v: reply %d acknowledges %#x, want %#x (each once, in order)", v6, i, ack, uint32(i)<<8+1)
				break
			}
		}
	}
	if bigN != bn {
		t.Errorf("the long segment came out as %d bytes, want %d", bigN, bn)
	}
	// Every SYN's transmit stamp, read from the error queues in batches
	// too, before its RST's receive stamp.
	for _, v6 := range []bool{false, true} {
		var prev time.Time
		for i := range perFamily {
			tx, ok := c.TxTime(uint32(i), v6)
			if !ok || tx.Before(prev) || tx.After(last[map[bool]int{false: 0, true: 1}[v6]]) {
				t.Errorf("v6 %v: SYN %d's stamp %v (%v), after %v, before the last reply's %v", v6, i, tx, ok, prev, last)
				break
			}
			prev = tx
		}
	}
}

// TestIntegrationTxStampAfterSendError: a send that the host refuses with
// EINVAL (a blackhole route) says nothing of the kernel's support for
// per-packet stamp ids: the stamps of the packets sent before it and
// after it are still found by their ids.
func TestIntegrationTxStampAfterSendError(t *testing.T) {
	if !tsOptID() {
		t.Skip("the kernel takes no stamp id per packet (SCM_TS_OPT_ID, Linux 6.13)")
	}
	lab := netlab.New(t)
	holes := map[bool]netip.Addr{false: netip.MustParseAddr("198.19.250.1"), true: netip.MustParseAddr("2001:db8:fffe::1")}
	lab.Run(t, lab.Prober, "ip", "route", "add", "blackhole", "198.19.250.0/24")
	lab.Run(t, lab.Prober, "ip", "-6", "route", "add", "blackhole", "2001:db8:fffe::/48")
	err := lab.InNS(lab.Prober, func() error {
		c, lo := listenOrSkip(t, true, true)
		for _, v6 := range []bool{false, true} {
			src, dst := lab.ProberV4, lab.TargetV4
			if v6 {
				src, dst = lab.ProberV6, lab.TargetV6
			}
			send := func(to netip.Addr, id uint32) error {
				seg := wire.Segment{Src: src, Dst: to, TTL: 64, DF: true, SrcPort: lo + 1, DstPort: 9, Seq: id, Flags: wire.FlagSyn, Window: 64240}
				buf := make([]byte, 128)
				n, err := seg.Build(buf)
				if err != nil {
					return err
				}
				return c.Send(buf[:n], id)
			}
			if err := send(dst, 100); err != nil {
				return fmt.Errorf("v6 %v: %v", v6, err)
			}
			if err := send(holes[v6], 101); !errors.Is(err, syscall.EINVAL) {
				return fmt.Errorf("v6 %v: a send to a blackhole route: %v, want EINVAL", v6, err)
			}
			if err := send(dst, 102); err != nil {
				return fmt.Errorf("v6 %v: %v", v6, err)
			}
			for _, id := range []uint32{100, 102} {
				deadline := time.Now().Add(2 * time.Second)
				for {
					if _, ok := c.TxTime(id, v6); ok {
						break
					}
					if time.Now().After(deadline) {
						return fmt.Errorf("v6 %v: no transmit stamp for id %d", v6, id)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			if _, ok := c.TxTime(101, v6); ok {
				return fmt.Errorf("v6 %v: a stamp for the packet never sent", v6)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
