package probe_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// The lab target's ports, by what answers them.
const (
	labOpen     = netlab.PortOpen     // ..+9: listeners
	labClosed   = netlab.PortClosed   // ..+9: nothing; the kernel answers RST
	labDropped  = netlab.PortDropped  // ..+9: the target's firewall drops the SYN
	labRejected = netlab.PortRejected // ..+9: the target's firewall answers "administratively prohibited"
)

// clientLab is a lab whose target has open, closed, dropped and rejected
// ports on both families, and a Client in the prober's namespace, guard
// included (opened there: its sockets and table live in that namespace).
func clientLab(t *testing.T) (*netlab.Lab, *probe.Client) {
	t.Helper()
	l := netlab.New(t)
	l.VerdictPorts(t)
	var cl *probe.Client
	err := l.InNS(l.Prober, func() (err error) {
		cl, err = probe.NewClient(&probe.ClientConfig{Guard: true})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return l, cl
}

// capturedProbe is what a capture on the prober's interface shows of one
// probe: its SYN, and the first answer to it.
type capturedProbe struct {
	syn, reply       time.Time
	dst              netip.AddrPort
	replyFlags       wire.TCPFlags
	icmp, acked, rst bool // an ICMP error quoted it; our ACK and RST followed
}

// captureProbes indexes the probes a capture saw by source port and ISN.
func captureProbes(pkts []netlab.CapturedPacket) map[[2]uint32]*capturedProbe {
	m := map[[2]uint32]*capturedProbe{}
	var p wire.Packet
	for _, c := range pkts {
		if wire.Parse(c.Data, &p) != nil {
			continue
		}
		switch {
		case p.IsICMP():
			q := &p.Quoted
			if cp := m[[2]uint32{uint32(q.SrcPort), q.Seq}]; cp != nil && q.HasSeq && cp.reply.IsZero() {
				cp.reply, cp.icmp = c.Time, true
			}
		case p.Flags == wire.FlagSyn:
			k := [2]uint32{uint32(p.SrcPort), p.Seq}
			if m[k] == nil {
				m[k] = &capturedProbe{syn: c.Time, dst: netip.AddrPortFrom(p.Dst, p.DstPort)}
			}
		case p.Flags&wire.FlagAck != 0 && p.SrcPort != 0:
			// An answer acknowledges ISN+1 and goes to our port.
			if cp := m[[2]uint32{uint32(p.DstPort), p.Ack - 1}]; cp != nil && cp.reply.IsZero() && netip.AddrPortFrom(p.Src, p.SrcPort) == cp.dst {
				cp.reply, cp.replyFlags = c.Time, p.Flags
			}
			// Ours after the SYN-ACK: ACK (ack mode), RST.
			if cp := m[[2]uint32{uint32(p.SrcPort), p.Seq - 1}]; cp != nil && netip.AddrPortFrom(p.Dst, p.DstPort) == cp.dst && p.Flags == wire.FlagAck {
				cp.acked = true
			}
		case p.Flags == wire.FlagRst:
			if cp := m[[2]uint32{uint32(p.SrcPort), p.Seq - 1}]; cp != nil && netip.AddrPortFrom(p.Dst, p.DstPort) == cp.dst {
				cp.rst = true
			}
		}
	}
	return m
}

// TestIntegrationClientConcurrent makes 1,000 Probe calls at once on one
// client against the real TCP stack: IPv4 and IPv6, open, closed, dropped
// and rejected ports, rst and ack modes. Every result is exact and is its
// own probe's, as a capture on the prober's interface shows: the SYN to
// the result's target from the result's port and ISN, the answer that
// decided it (and ack mode's ACK then RST), and the RTT.
func TestIntegrationClientConcurrent(t *testing.T) {
	l, cl := clientLab(t)
	capt := l.StartCapture(t, l.Prober, l.ProberIf, "tcp or icmp or icmp6")
	const calls = 1000
	type call struct {
		dst  netip.AddrPort
		mode probe.Mode
		r    *probe.Result
		err  error
	}
	cs := make([]call, calls)
	for i := range cs {
		a := l.TargetV4
		if i%2 == 1 {
			a = l.TargetV6
		}
		base := []int{labOpen, labClosed, labDropped, labRejected}[i/2%4]
		cs[i].dst = netip.AddrPortFrom(a, uint16(base+i%10))
		if i%3 == 0 {
			cs[i].mode = probe.ModeACK
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for i := range cs {
		wg.Go(func() {
			c := &cs[i]
			c.r, c.err = cl.Probe(ctx, c.dst, &probe.ProbeOptions{Mode: c.mode, Timeout: 500 * time.Millisecond})
		})
	}
	wg.Wait()
	pkts, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	seen := captureProbes(pkts)
	var rttErr []time.Duration
	bad := 0
	fail := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(format, args...)
		}
	}
	for _, c := range cs {
		if c.err != nil {
			fail("%v: %v", c.dst, c.err)
			continue
		}
		r := c.r
		var state probe.State
		var reason string
		switch base := int(c.dst.Port()) / 100 * 100; base {
		case labOpen:
			state, reason = probe.StateOpen, probe.ReasonSYNACK
		case labClosed:
			state, reason = probe.StateClosed, probe.ReasonRST
		case labDropped:
			state, reason = probe.StateFiltered, probe.ReasonTimeout
		case labRejected:
			state, reason = probe.StateFiltered, "icmp-admin-prohibited"
		}
		if r.State != state || r.Reason != reason || r.Mode != c.mode || netip.AddrPortFrom(r.Target.Addr, r.Target.Port) != c.dst {
			fail("%v %v: %v %s for %v (%v), want %v %s", c.dst, c.mode, r.State, r.Reason, r.Target, r.Mode, state, reason)
			continue
		}
		w := seen[[2]uint32{uint32(r.SrcPort), r.ISN}]
		switch {
		case w == nil || w.dst != c.dst:
			fail("%v: the capture has no SYN from port %d with ISN %d to it", c.dst, r.SrcPort, r.ISN)
			continue
		case state == probe.StateFiltered && reason == probe.ReasonTimeout:
			if !w.reply.IsZero() {
				fail("%v: called filtered, but the capture has an answer", c.dst)
			}
			continue
		case w.reply.IsZero():
			fail("%v: %v, but the capture has no answer", c.dst, state)
			continue
		case state == probe.StateOpen && (w.replyFlags != wire.FlagSyn|wire.FlagAck || !w.rst || w.acked != (c.mode == probe.ModeACK)):
			fail("%v %v: open; on the wire %v, then our ACK %v, RST %v", c.dst, c.mode, w.replyFlags, w.acked, w.rst)
		case state == probe.StateClosed && w.replyFlags&wire.FlagRst == 0, reason == "icmp-admin-prohibited" && !w.icmp:
			fail("%v: %v, but the answer on the wire was %v (icmp %v)", c.dst, state, w.replyFlags, w.icmp)
		}
		d := r.RTT - w.reply.Sub(w.syn)
		if !r.KernelClock {
			fail("%v: RTT %v by the user-space clock", c.dst, r.RTT)
		}
		rttErr = append(rttErr, max(d, -d))
	}
	if bad > 10 {
		t.Errorf("... %d wrong in all", bad)
	}
	if bad > 0 {
		// Whether packets went missing on the way or from the capture.
		t.Logf("client: %+v; tcpdump: %s", cl.Counters(), capt.Counts())
	}
	if len(rttErr) == 0 {
		t.Fatal("no RTT to compare")
	}
	slices.Sort(rttErr)
	med, worst := rttErr[len(rttErr)/2], rttErr[len(rttErr)-1]
	t.Logf("|client RTT - capture RTT| over %d answers: median %v, max %v", len(rttErr), med, worst)
	if med > 100*time.Microsecond || worst > 2*time.Millisecond {
		t.Errorf("RTTs disagree with the capture: median error %v, max %v", med, worst)
	}

	// Close leaves nothing behind: the guard's table is gone, and the
	// ports are free again.
	var used uint16
	for _, c := range cs {
		if c.r != nil {
			used = c.r.SrcPort
		}
	}
	cl.Close()
	if out, err := exec.Command("ip", "netns", "exec", l.Prober, "nft", "list", "tables").CombinedOutput(); err != nil || strings.Contains(string(out), "synprobe") {
		t.Errorf("tables after Close: %s %v", out, err)
	}
	err = l.InNS(l.Prober, func() error {
		b, err := rawsock.ReservePort(used)
		if err == nil {
			b.Close()
		}
		return err
	})
	if err != nil {
		t.Errorf("port %d after Close: %v", used, err)
	}
}

// BenchmarkClientConcurrent measures one client under 1, 100 and 1,000
// goroutines that each probe an open lab port in a loop (rst mode):
// probes per second, and the process's CPU time (user and system, the
// kernel's share of sending and receiving included) per probe.
//
//	sudo go test -run '^$' -bench ClientConcurrent -benchtime 20000x ./probe/
func BenchmarkClientConcurrent(b *testing.B) {
	l := netlab.New(b)
	for _, a := range []netip.Addr{l.TargetV4, l.TargetV6} {
		ln := l.Listen(b, l.Target, "tcp", netip.AddrPortFrom(a, labOpen).String())
		netlab.Serve(ln, func(c net.Conn) { c.Close() })
	}
	var cl *probe.Client
	if err := l.InNS(l.Prober, func() (err error) {
		cl, err = probe.NewClient(nil)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	dsts := []netip.AddrPort{netip.AddrPortFrom(l.TargetV4, labOpen), netip.AddrPortFrom(l.TargetV6, labOpen)}
	for _, g := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			var next atomic.Int64
			var wrong atomic.Int64
			cpu0 := cpuTime()
			b.ResetTimer()
			var wg sync.WaitGroup
			for range g {
				wg.Go(func() {
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						r, err := cl.Probe(context.Background(), dsts[i%2], nil)
						if err != nil || r.State != probe.StateOpen {
							wrong.Add(1)
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			cpu := cpuTime() - cpu0
			if n := wrong.Load(); n > 0 {
				b.Errorf("%d of %d probes not open", n, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "probes/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/probe")
		})
	}
}

// cpuTime returns the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestIntegrationClientFIN makes 200 fin-mode calls at once, with data,
// to a server that reads to EOF and then closes: every call reports the
// data acknowledged whole and the server closing after our FIN (3-way or
// 4-way); the server's own count of bytes received is every call's data;
// and once the client is closed, the target holds no connection.
func TestIntegrationClientFIN(t *testing.T) {
	l, cl := clientLab(t)
	var mu sync.Mutex
	got := 0
	for _, a := range []netip.Addr{l.TargetV4, l.TargetV6} {
		ln := l.Listen(t, l.Target, "tcp", netip.AddrPortFrom(a, 8050).String())
		netlab.Serve(ln, func(c net.Conn) {
			defer c.Close()
			b := make([]byte, 64)
			for {
				n, err := c.Read(b)
				mu.Lock()
				got += n
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	const calls = 200
	data := []byte("hello, synprobe\n")
	results := make([]*probe.Result, calls)
	errs := make([]error, calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			a := l.TargetV4
			if i%2 == 1 {
				a = l.TargetV6
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			results[i], errs[i] = cl.Probe(ctx, netip.AddrPortFrom(a, 8050), &probe.ProbeOptions{Mode: probe.ModeFIN, Data: data})
		})
	}
	wg.Wait()
	for i, r := range results {
		switch {
		case errs[i] != nil:
			t.Errorf("call %d: %v", i, errs[i])
		case r.State != probe.StateOpen || r.Close == nil:
			t.Errorf("call %d: %v %s, close %+v", i, r.State, r.Reason, r.Close)
		case r.Close.Pattern != probe.Close3Way && r.Close.Pattern != probe.Close4Way, r.Close.DataAcked != len(data), r.Interrupted:
			t.Errorf("call %d: closed %v, %d of %d bytes acknowledged", i, r.Close.Pattern, r.Close.DataAcked, len(data))
		}
	}
	cl.Close()
	// The server reads its last bytes as the connections close.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := got
		mu.Unlock()
		if n == calls*len(data) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server received %d bytes, want %d", n, calls*len(data))
		}
	}
	out := l.Run(t, l.Target, "ss", "-Htan", "state", "established", "state", "close-wait", "state", "last-ack", "state", "syn-recv", "sport", "= :8050")
	if strings.TrimSpace(out) != "" {
		t.Errorf("the target still holds connections after Close:\n%s", out)
	}
}

// newClientIn opens a client in namespace ns.
func newClientIn(t *testing.T, l *netlab.Lab, ns string, cfg *probe.ClientConfig) *probe.Client {
	t.Helper()
	var cl *probe.Client
	if err := l.InNS(ns, func() (err error) {
		cl, err = probe.NewClient(cfg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// TestIntegrationClientNamespace: a client made in the prober's namespace
// stays there whoever calls it. A fin probe from this test's goroutine
// (another namespace) creates the guard in the prober's namespace, so the
// close is judged as the server closed, not reset by the kernel; and
// segments are sized by the prober's path MTU (1280 here), not by the
// caller's namespace's: no send is refused as too big.
func TestIntegrationClientNamespace(t *testing.T) {
	l := netlab.New(t)
	l.Run(t, l.Prober, "ip", "link", "set", "dev", l.ProberIf, "mtu", "1280")
	l.Run(t, l.Target, "ip", "link", "set", "dev", l.TargetIf, "mtu", "1280")
	for _, a := range []netip.Addr{l.TargetV4, l.TargetV6} {
		ln := l.Listen(t, l.Target, "tcp", netip.AddrPortFrom(a, 8050).String())
		netlab.Serve(ln, func(c net.Conn) {
			defer c.Close()
			b := make([]byte, 4096)
			for {
				if _, err := c.Read(b); err != nil {
					return
				}
			}
		})
	}
	cl := newClientIn(t, l, l.Prober, nil) // no guard yet
	data := make([]byte, 5000)
	for _, tt := range []struct {
		dst netip.Addr
		seg int
	}{{l.TargetV4, 1280 - 40 - 12}, {l.TargetV6, 1280 - 60 - 12}} {
		r, err := cl.Probe(context.Background(), netip.AddrPortFrom(tt.dst, 8050), &probe.ProbeOptions{Mode: probe.ModeFIN, Data: data})
		if err != nil {
			t.Fatal(err)
		}
		if r.Close == nil || (r.Close.Pattern != probe.Close3Way && r.Close.Pattern != probe.Close4Way) {
			t.Fatalf("%v: %v %s, close %+v", tt.dst, r.State, r.Reason, r.Close)
		}
		if c := r.Close; c.SegmentSize != tt.seg || c.SendErrors != 0 || c.DataAcked != len(data) {
			t.Errorf("%v: segments of %d (want %d), %d send errors, %d of %d bytes acknowledged", tt.dst, c.SegmentSize, tt.seg, c.SendErrors, c.DataAcked, len(data))
		}
	}
	if tables := l.Run(t, l.Prober, "nft", "list", "tables"); !strings.Contains(tables, "synprobe_") {
		t.Errorf("no guard in the prober's namespace:\n%s", tables)
	}
}

// TestIntegrationClientSource: an explicit source must be a unicast
// address of the client's host, used as the host would use it: neither
// another host's (also with net.ipv4.ip_nonlocal_bind and
// net.ipv6.ip_nonlocal_bind set, under which any address binds) nor a
// loopback address towards another host. One of its own is used. A
// capture on the prober's link sees no SYN from a refused source.
func TestIntegrationClientSource(t *testing.T) {
	l, cl := clientLab(t)
	dst := netip.AddrPortFrom(l.TargetV4, labOpen)
	dst6 := netip.AddrPortFrom(l.TargetV6, labOpen)
	capt := l.StartCapture(t, l.Prober, l.ProberIf, "tcp")
	refused := func() {
		t.Helper()
		for _, tt := range []struct {
			src string
			dst netip.AddrPort
		}{
			{"0.0.0.0", dst}, {"224.0.0.1", dst}, {"198.18.0.100", dst}, {l.TargetV4.String(), dst},
			{"127.0.0.1", dst}, {"127.0.0.2", dst}, {"::1", dst6}, {"2001:db8::100", dst6}, {l.TargetV6.String(), dst6},
		} {
			_, err := cl.Probe(context.Background(), tt.dst, &probe.ProbeOptions{Source: netip.MustParseAddr(tt.src), Timeout: 200 * time.Millisecond})
			if err == nil {
				t.Errorf("source %s to %v accepted", tt.src, tt.dst)
			} else {
				t.Logf("source %s to %v: %v", tt.src, tt.dst, err)
			}
		}
	}
	refused()
	l.Run(t, l.Prober, "sysctl", "-q", "-w", "net.ipv4.ip_nonlocal_bind=1", "net.ipv6.ip_nonlocal_bind=1")
	refused()
	for _, src := range []netip.Addr{l.ProberV4, l.ProberV6} {
		d := dst
		if src.Is6() {
			d = dst6
		}
		r, err := cl.Probe(context.Background(), d, &probe.ProbeOptions{Source: src})
		if err != nil || r.State != probe.StateOpen || r.Target.Src != src {
			t.Errorf("from the prober's own address %v: %+v, %v", src, r, err)
		}
	}
	pkts, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	syns := 0
	for _, p := range pkts {
		var w wire.Packet
		if wire.Parse(p.Data, &w) != nil {
			continue
		}
		if w.Src != l.ProberV4 && w.Src != l.ProberV6 && w.Src != l.TargetV4 && w.Src != l.TargetV6 {
			t.Errorf("a packet from %v left the prober", w.Src)
		}
		if w.Flags == wire.FlagSyn {
			syns++
		}
	}
	if syns != 2 {
		t.Errorf("the capture saw %d SYNs, want the 2 from the prober's own addresses", syns)
	}
}

// TestIntegrationClientCloseRace: Close racing the first ack probe (which
// creates the guard) leaves no nftables table and no descriptor behind.
func TestIntegrationClientCloseRace(t *testing.T) {
	l := netlab.New(t)
	fds := func() int {
		ents, _ := os.ReadDir("/proc/self/fd")
		return len(ents)
	}
	before := fds()
	for range 30 {
		cl := newClientIn(t, l, l.Prober, &probe.ClientConfig{Ports: 4})
		var wg sync.WaitGroup
		wg.Go(func() {
			cl.Probe(context.Background(), netip.AddrPortFrom(l.TargetV4, labClosed), &probe.ProbeOptions{Mode: probe.ModeACK})
		})
		wg.Go(func() { cl.Close() })
		wg.Wait()
	}
	if tables := l.Run(t, l.Prober, "nft", "list", "tables"); strings.Contains(tables, "synprobe_") {
		t.Errorf("tables left:\n%s", tables)
	}
	if after := fds(); after > before {
		t.Errorf("%d descriptors before, %d after 30 clients", before, after)
	}
}

// TestIntegrationClientGuardedTimeout: with a guard in force, rst-mode
// probes that time out (or are cancelled) before their SYN-ACK comes are
// reset by us: the kernel's RST to the late SYN-ACK never leaves, and the
// server would otherwise keep SYN-RECV until it gives up.
func TestIntegrationClientGuardedTimeout(t *testing.T) {
	l := netlab.NewDelayLab(t, 30*time.Millisecond)
	ln := l.Listen(t, l.Target, "tcp", netip.AddrPortFrom(l.TargetV4, labOpen).String())
	netlab.Serve(ln, func(c net.Conn) { c.Close() })
	cl := newClientIn(t, l, l.Prober, &probe.ClientConfig{Guard: true})
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if i%2 == 1 {
				ctx, cancel = context.WithTimeout(context.Background(), 15*time.Millisecond)
			}
			defer cancel()
			r, err := cl.Probe(ctx, netip.AddrPortFrom(l.TargetV4, labOpen), &probe.ProbeOptions{Timeout: 20 * time.Millisecond})
			if i%2 == 0 && (err != nil || r.Reason != probe.ReasonTimeout) {
				t.Errorf("probe %d: %v, %v; want a timeout (the RTT is 60 ms)", i, r, err)
			}
		})
	}
	wg.Wait()
	time.Sleep(300 * time.Millisecond) // the SYN-ACKs arrive, our RSTs reach the server
	if out := l.Run(t, l.Target, "ss", "-Htan", "state", "syn-recv"); strings.TrimSpace(out) != "" {
		t.Errorf("the server keeps half-open connections:\n%s", out)
	}
}

// TestIntegrationClientBroadcast: the broadcast address of the prober's
// subnet is refused with an *UnusableError, whether the routes choose the
// source or the call gives one, and so is that of a subnet added after the
// client opened; the capture sees no SYN to either.
func TestIntegrationClientBroadcast(t *testing.T) {
	l, cl := clientLab(t)
	b := l.ProberV4.As4()
	b[3] = 255
	bc := netip.AddrFrom4(b)
	added := netip.AddrFrom4([4]byte{198, 19, b[2], 255}) // 198.19.X.0/24, added below
	capt := l.StartCapture(t, l.Prober, l.ProberIf, fmt.Sprintf("tcp and (dst host %v or dst host %v)", bc, added))
	refused := func(dst netip.Addr, opts *probe.ProbeOptions) {
		t.Helper()
		_, err := cl.Probe(context.Background(), netip.AddrPortFrom(dst, labOpen), opts)
		var u *probe.UnusableError
		if !errors.As(err, &u) || !errors.Is(err, probe.ErrNotUnicast) {
			t.Fatalf("%v: %v, want an *UnusableError", dst, err)
		}
		if want := "the broadcast address of a subnet on " + l.ProberIf; u.Addr != dst || u.Why != want {
			t.Errorf("%v: %+v, want %q", dst, u, want)
		}
	}
	refused(bc, nil)
	refused(bc, &probe.ProbeOptions{Source: l.ProberV4})
	l.Run(t, l.Prober, "ip", "addr", "add", fmt.Sprintf("198.19.%d.1/24", b[2]), "dev", l.ProberIf)
	time.Sleep(150 * time.Millisecond) // the client reads its list at most every 100 ms
	refused(added, nil)
	if pkts, err := capt.Stop(); err != nil || len(pkts) != 0 {
		t.Errorf("capture: %d packets to the broadcast addresses, %v", len(pkts), err)
	}
	// The prober's unicast neighbour is still probed.
	if r, err := cl.Probe(context.Background(), netip.AddrPortFrom(l.TargetV4, labOpen), nil); err != nil || r.State != probe.StateOpen {
		t.Errorf("target: %v %v", r, err)
	}
}

// TestIntegrationClientCounters: the client's packet counts against a
// capture on the prober's link: every packet it says it sent left, every
// answer that came is counted received, none unmatched (TestClientCounters
// counts the unmatched against a fake).
func TestIntegrationClientCounters(t *testing.T) {
	l, cl := clientLab(t)
	capt := l.StartCapture(t, l.Prober, l.ProberIf, "tcp")
	const n = 20
	for i := range n {
		port := uint16(labOpen + i%3)
		want := probe.StateOpen
		if i%2 == 1 {
			port, want = labClosed, probe.StateClosed
		}
		r, err := cl.Probe(context.Background(), netip.AddrPortFrom(l.TargetV4, port), nil)
		if err != nil || r.State != want {
			t.Fatalf("probe %d: %v %v, want %v", i, r, err, want)
		}
	}
	time.Sleep(100 * time.Millisecond) // nothing more is in flight
	got := cl.Counters()
	pkts, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	var out, in int
	for _, c := range pkts {
		var p wire.Packet
		if wire.Parse(c.Data, &p) != nil {
			continue
		}
		switch {
		case p.Src == l.ProberV4:
			out++
		case p.Dst == l.ProberV4:
			in++
		}
	}
	// 10 open: SYN and RST each; 10 closed: SYN. Answers: one each.
	want := probe.Counters{Sent: 30, Received: 20}
	if got != want || out != int(got.Sent) || in != int(got.Received) {
		t.Errorf("counters %+v, want %+v; the capture saw %d out, %d in", got, want, out, in)
	}
}

// TestIntegrationClientSpreadRounds: spread rounds over open, closed,
// dropped and rejected ports of both families send their SYNs in batches
// (a few per 2 ms): every result is exact, its SYN and answer are on the
// wire, and its RTT is kernel-stamped and agrees with the capture. One
// target's SYNs this host's firewall refuses: each of its probes, and it
// alone, is an error.
func TestIntegrationClientSpreadRounds(t *testing.T) {
	l, cl := clientLab(t)
	// This host's firewall refuses one target's SYNs: the kernel fails
	// that packet of a batch, and the packets after it still go.
	blocked := netip.AddrPortFrom(l.TargetV4, labOpen+5)
	l.Nft(t, l.Prober, fmt.Sprintf(`table inet out {
	chain output {
		type filter hook output priority 0;
		ip daddr %v tcp dport %d drop
	}
}`, blocked.Addr(), blocked.Port()))
	capt := l.StartCapture(t, l.Prober, l.ProberIf, "tcp or icmp or icmp6")
	var targets []probe.Target
	for _, a := range []netip.Addr{l.TargetV4, l.TargetV6} {
		for _, base := range []int{labOpen, labClosed, labDropped, labRejected} {
			for p := range 10 {
				targets = append(targets, probe.Target{Addr: a, Port: uint16(base + p)})
			}
		}
	}
	const count = 3
	var results []probe.Result // the engine's thread calls OnResult
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stats, err := cl.Rounds(ctx, &probe.Rounds{
		Targets: targets, Count: count, Interval: 20 * time.Millisecond, Spread: true,
		Options:  &probe.ProbeOptions{Timeout: 300 * time.Millisecond},
		OnResult: func(r *probe.Result) { results = append(results, *r) },
	})
	if err != nil {
		t.Fatal(err)
	}
	pkts, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range stats {
		if netip.AddrPortFrom(targets[i].Addr, targets[i].Port) == blocked {
			if s.Sent != 0 {
				t.Errorf("%v: %d sent, want none", blocked, s.Sent)
			}
			continue
		}
		if s.Sent != count {
			t.Errorf("%v:%d: %d sent, want %d", targets[i].Addr, targets[i].Port, s.Sent, count)
		}
	}
	if len(results) != count*len(targets) {
		t.Fatalf("%d results, want %d", len(results), count*len(targets))
	}
	seen := captureProbes(pkts)
	var rttErr []time.Duration
	bad := 0
	for _, r := range results {
		var state probe.State
		switch int(r.Target.Port) / 100 * 100 {
		case labOpen:
			state = probe.StateOpen
		case labClosed:
			state = probe.StateClosed
		default:
			state = probe.StateFiltered
		}
		dst := netip.AddrPortFrom(r.Target.Addr, r.Target.Port)
		if dst == blocked {
			state = probe.StateError
		}
		w := seen[[2]uint32{uint32(r.SrcPort), r.ISN}]
		switch {
		case r.State != state:
			t.Errorf("%v: %v/%s, want %v", dst, r.State, r.Reason, state)
		case state == probe.StateError:
			if r.Reason == probe.ReasonLocalFirewall && w == nil {
				continue
			}
			t.Errorf("%v: %v/%s (on the wire: %v), want error/%s", dst, r.State, r.Reason, w != nil, probe.ReasonLocalFirewall)
		case w == nil || w.dst != dst:
			t.Errorf("%v: no SYN from port %d with ISN %d on the wire", dst, r.SrcPort, r.ISN)
		case r.Reason == probe.ReasonTimeout:
			if w.reply.IsZero() {
				continue
			}
			t.Errorf("%v: called filtered, but the capture has an answer", dst)
		case w.reply.IsZero() || !r.KernelClock:
			t.Errorf("%v: %v, answer on the wire %v, kernel clock %v", dst, r.State, !w.reply.IsZero(), r.KernelClock)
		default:
			d := r.RTT - w.reply.Sub(w.syn)
			rttErr = append(rttErr, max(d, -d))
			continue
		}
		if bad++; bad > 10 {
			t.Fatal("too many wrong")
		}
	}
	if len(rttErr) == 0 {
		t.Fatal("no RTT to compare")
	}
	slices.Sort(rttErr)
	med, worst := rttErr[len(rttErr)/2], rttErr[len(rttErr)-1]
	t.Logf("|RTT - capture RTT| over %d answers: median %v, max %v", len(rttErr), med, worst)
	if med > 100*time.Microsecond || worst > 2*time.Millisecond {
		t.Errorf("RTTs disagree with the capture: median error %v, max %v", med, worst)
	}
}

// TestIntegrationClientHolds: what a client opens for itself, as the
// command line's ping asks it, against the real kernel.
//   - SourcePort: a port another socket holds is refused (*OpenError,
//     "source ports", rawsock.ErrPortsInUse); a free one is the client's
//     only port.
//   - MinPorts: with other sockets holding part of the range, the client
//     starts with the rest; without MinPorts it refuses. More ports than
//     the range has, with a minimum it has: the range.
//   - Network "ip4": IPv6 targets are refused before anything is sent.
//   - Guard and CountRSTs: three ack probes draw three SYN-ACKs (and a
//     FIN from a server that closes before our RST comes), to each of
//     which the kernel answers RST: Info counts as many dropped as the
//     capture shows such segments, 0 escaped, and the capture sees one
//     RST per probe, ours; the table is in
//     nft's list while the client is open, gone after Close, and Info
//     keeps the counts.
//   - NoGuard: no table, counts -1.
func TestIntegrationClientHolds(t *testing.T) {
	l := netlab.New(t)
	l.VerdictPorts(t)
	const taken, mine = 47001, 47002
	l.Listen(t, l.Prober, "tcp", fmt.Sprintf(":%d", taken))
	open := func(cfg *probe.ClientConfig) (cl *probe.Client, err error) {
		err = l.InNS(l.Prober, func() (err error) {
			cl, err = probe.NewClient(cfg)
			return err
		})
		if err == nil {
			t.Cleanup(func() { cl.Close() })
		}
		return cl, err
	}
	_, err := open(&probe.ClientConfig{SourcePort: taken})
	var oe *probe.OpenError
	if !errors.As(err, &oe) || oe.What != "source ports" || !errors.Is(err, rawsock.ErrPortsInUse) {
		t.Errorf("a held --sport: %v, want an *OpenError for the source ports, ErrPortsInUse", err)
	}

	// Ports 47010-47019, four of them held by listeners.
	for _, p := range []int{47011, 47013, 47015, 47017} {
		l.Listen(t, l.Prober, "tcp", fmt.Sprintf(":%d", p))
	}
	if _, err := open(&probe.ClientConfig{PortLo: 47010, PortHi: 47019, Ports: 10}); !errors.Is(err, rawsock.ErrPortsInUse) {
		t.Errorf("10 of a range with 6 free: %v, want ErrPortsInUse", err)
	}
	// More than the range holds, with a minimum that it holds: what
	// is there (a fin ping plans up to 2048 ports).
	cl, err := open(&probe.ClientConfig{PortLo: 47020, PortHi: 47027, Ports: 20, MinPorts: 4, NoGuard: true})
	if err != nil {
		t.Fatalf("20 ports, at least 4, of a range of 8: %v", err)
	}
	if in := cl.Info(); len(in.Ports) != 8 || in.Ports[0] != 47020 || in.Ports[7] != 47027 {
		t.Errorf("20 ports, at least 4, of a range of 8: %v", in.Ports)
	}
	cl.Close()
	if _, err := open(&probe.ClientConfig{PortLo: 47020, PortHi: 47027, Ports: 20, MinPorts: 9}); err == nil {
		t.Error("a minimum of 9 ports from a range of 8 accepted")
	}
	cl, err = open(&probe.ClientConfig{PortLo: 47010, PortHi: 47019, Ports: 10, MinPorts: 4, NoGuard: true})
	if err != nil {
		t.Fatal(err)
	}
	if in := cl.Info(); !slices.Equal(in.Ports, []uint16{47010, 47012, 47014, 47016, 47018, 47019}) || in.GuardTable != "" || in.RSTsDropped != -1 || in.RSTsEscaped != -1 {
		t.Errorf("MinPorts, NoGuard: %+v", in)
	}
	if r, err := cl.Probe(context.Background(), netip.AddrPortFrom(l.TargetV4, labOpen), nil); err != nil || r.State != probe.StateOpen {
		t.Errorf("rst probe without a guard: %v %v", r, err)
	}
	cl.Close()

	cl, err = open(&probe.ClientConfig{SourcePort: mine, Network: "ip4", Guard: true, CountRSTs: true})
	if err != nil {
		t.Fatal(err)
	}
	in := cl.Info()
	if !slices.Equal(in.Ports, []uint16{mine}) || in.GuardTable == "" || !in.GuardOwned {
		t.Fatalf("SourcePort, Guard: %+v", in)
	}
	if out := l.Run(t, l.Prober, "nft", "list", "tables"); !strings.Contains(out, "inet "+in.GuardTable) {
		t.Errorf("nft does not list table inet %s:\n%s", in.GuardTable, out)
	}
	if _, err := cl.Probe(context.Background(), netip.AddrPortFrom(l.TargetV6, labOpen), nil); err == nil || !strings.Contains(err.Error(), "no IPv6 sockets") {
		t.Errorf("an IPv6 target on an ip4 client: %v", err)
	}
	capt := l.StartCapture(t, l.Prober, l.ProberIf, fmt.Sprintf("tcp and port %d", mine))
	const n = 3
	for i := range n {
		r, err := cl.Probe(context.Background(), netip.AddrPortFrom(l.TargetV4, labOpen+uint16(i)), &probe.ProbeOptions{Mode: probe.ModeACK})
		if err != nil || r.State != probe.StateOpen || r.SrcPort != mine {
			t.Fatalf("ack probe %d: %v %v", i, r, err)
		}
	}
	time.Sleep(100 * time.Millisecond) // the kernel's RSTs, dropped, are counted
	pkts, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	// Each segment but a RST that reaches our port draws the kernel's
	// RST (no socket listens there): the SYN-ACKs, and the FIN of a
	// server that closed before our RST came.
	rsts, draws := 0, 0
	for _, c := range pkts {
		var p wire.Packet
		switch {
		case wire.Parse(c.Data, &p) != nil:
		case p.Src == l.ProberV4 && p.Flags&wire.FlagRst != 0:
			rsts++
		case p.Dst == l.ProberV4 && p.Flags&wire.FlagRst == 0:
			draws++
		}
	}
	if in := cl.Info(); in.RSTsDropped != int64(draws) || draws < n || in.RSTsEscaped != 0 || rsts != n {
		t.Errorf("guard counts %d dropped, %d escaped; the capture saw %d RSTs from us and %d segments that draw the kernel's; want %d dropped (at least %d), 0 escaped and %d RSTs (ours alone)", in.RSTsDropped, in.RSTsEscaped, rsts, draws, draws, n, n)
	}
	cl.Close()
	if out := l.Run(t, l.Prober, "nft", "list", "tables"); strings.Contains(out, in.GuardTable) {
		t.Errorf("table inet %s outlives Close:\n%s", in.GuardTable, out)
	}
	if after := cl.Info(); after.RSTsDropped != int64(draws) || after.RSTsEscaped != 0 || !slices.Equal(after.Ports, []uint16{mine}) || after.GuardTable != in.GuardTable {
		t.Errorf("Info after Close: %+v", after)
	}
}

// TestIntegrationClientGuardMarkRewritten: the prober's own output rules
// rewrite every packet's mark (a connmark restore at mangle priority, as
// policy-routed hosts have): ack probes' RSTs still leave (the guard sees
// the marks the sockets set, before such rules), and the server holds no
// connection afterwards, as ss there shows.
func TestIntegrationClientGuardMarkRewritten(t *testing.T) {
	l := netlab.New(t)
	const port = 8500
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	ln := l.Listen(t, l.Target, "tcp", netip.AddrPortFrom(l.TargetV4, port).String())
	netlab.Serve(ln, func(c net.Conn) { <-done; c.Close() }) // holds every connection
	l.Nft(t, l.Prober, `table inet userrules {
	chain out {
		type route hook output priority mangle;
		meta mark set 0x1
	}
}`)
	cl := newClientIn(t, l, l.Prober, &probe.ClientConfig{Guard: true, CountRSTs: true})
	capt := l.StartCapture(t, l.Prober, l.ProberIf, fmt.Sprintf("tcp port %d", port))
	const n = 3
	for i := range n {
		r, err := cl.Probe(context.Background(), netip.AddrPortFrom(l.TargetV4, port), &probe.ProbeOptions{Mode: probe.ModeACK})
		if err != nil || r.State != probe.StateOpen {
			t.Fatalf("ack probe %d: %v %v", i, r, err)
		}
	}
	time.Sleep(100 * time.Millisecond) // our RSTs reach the server
	pkts, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	rsts := 0
	for _, c := range pkts {
		var p wire.Packet
		if wire.Parse(c.Data, &p) == nil && p.Src == l.ProberV4 && p.Flags&wire.FlagRst != 0 {
			rsts++
		}
	}
	est := ""
	for _, line := range strings.Split(l.Run(t, l.Target, "ss", "-Htan"), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[0] != "LISTEN" && strings.HasSuffix(f[3], fmt.Sprintf(":%d", port)) {
			est += line + "\n"
		}
	}
	if rsts != n || est != "" {
		t.Errorf("the capture saw %d RSTs from us, want %d; the server holds:\n%s", rsts, n, est)
	}
}

// TestIntegrationClientLinkLocalSource: a prober whose only IPv6 address
// is its link-local one, on the link of the target's prefix, probes from
// it as its kernel's own connections would (the routes choose it): the
// verdicts are the lab's, the source the link-local address; given
// explicitly, it is accepted too. Before, the check that a source is this
// host's connected to it without its interface, and refused it.
func TestIntegrationClientLinkLocalSource(t *testing.T) {
	l := netlab.New(t)
	l.VerdictPorts(t)
	l.Run(t, l.Prober, "ip", "-6", "addr", "del", l.ProberV6.String()+"/64", "dev", l.ProberIf)
	l.Run(t, l.Prober, "ip", "-6", "route", "replace", netip.PrefixFrom(l.TargetV6, 64).Masked().String(), "dev", l.ProberIf)
	var ll netip.Addr
	for _, f := range strings.Fields(l.Run(t, l.Prober, "ip", "-6", "-o", "addr", "show", "dev", l.ProberIf, "scope", "link")) {
		if p, err := netip.ParsePrefix(f); err == nil && p.Addr().IsLinkLocalUnicast() {
			ll = p.Addr()
		}
	}
	if !ll.IsValid() {
		t.Fatal("the prober has no link-local address")
	}
	cl := newClientIn(t, l, l.Prober, &probe.ClientConfig{Network: "ip6"})
	for _, tc := range []struct {
		port  uint16
		state probe.State
		opts  *probe.ProbeOptions
	}{
		{labOpen, probe.StateOpen, nil},
		{labClosed, probe.StateClosed, nil},
		{labOpen, probe.StateOpen, &probe.ProbeOptions{Source: ll}},
	} {
		r, err := cl.Probe(context.Background(), netip.AddrPortFrom(l.TargetV6, tc.port), tc.opts)
		if err != nil || r.State != tc.state || r.Target.Src != ll || !r.KernelClock {
			t.Errorf("port %d (options %+v): %v %v; want %v from %v, kernel-timed", tc.port, tc.opts, r, err, tc.state, ll)
		}
	}
}
