package scan_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/scan"
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

// wireProbe is what a capture on the prober's interface shows of one SYN
// of ours: where it went, the first answer to it, and our RST after it.
type wireProbe struct {
	dst             netip.AddrPort
	isn             uint32
	syn, reply      time.Time
	replyFlags      wire.TCPFlags
	icmp, rst, more bool // an ICMP error quoted it; we reset it at ISN+1; a second SYN to dst from its port
}

// wireProbes indexes the SYNs a capture saw by source port and
// destination, answers matched to them by ISN.
func wireProbes(pkts []netlab.CapturedPacket) map[string][]*wireProbe {
	key := func(sport uint16, dst netip.AddrPort) string { return fmt.Sprint(sport, dst) }
	m := map[string][]*wireProbe{}
	find := func(sport uint16, dst netip.AddrPort, isn uint32) *wireProbe {
		for _, w := range m[key(sport, dst)] {
			if w.isn == isn {
				return w
			}
		}
		return nil
	}
	var p wire.Packet
	for _, c := range pkts {
		if wire.Parse(c.Data, &p) != nil {
			continue
		}
		switch {
		case p.IsICMP():
			q := &p.Quoted
			if w := find(q.SrcPort, netip.AddrPortFrom(q.Dst, q.DstPort), q.Seq); w != nil && q.HasSeq && w.reply.IsZero() {
				w.reply, w.icmp = c.Time, true
			}
		case p.Flags == wire.FlagSyn:
			dst := netip.AddrPortFrom(p.Dst, p.DstPort)
			if find(p.SrcPort, dst, p.Seq) == nil {
				m[key(p.SrcPort, dst)] = append(m[key(p.SrcPort, dst)], &wireProbe{dst: dst, isn: p.Seq, syn: c.Time})
			}
		case p.Flags&wire.FlagAck != 0:
			if w := find(p.DstPort, netip.AddrPortFrom(p.Src, p.SrcPort), p.Ack-1); w != nil && w.reply.IsZero() {
				w.reply, w.replyFlags = c.Time, p.Flags
			}
		case p.Flags == wire.FlagRst:
			if w := find(p.SrcPort, netip.AddrPortFrom(p.Dst, p.DstPort), p.Seq-1); w != nil {
				w.rst = true
			}
		}
	}
	return m
}

// TestIntegrationRunRingOnClient scans 16,384 pairs, enough for a
// packet ring, on a client with receive sockets of its own, while other
// goroutines probe the same ports through it: the engine reads the
// scan's ring beside its sockets. Every verdict is the lab's (listeners,
// a dropping and a rejecting firewall), every answer kernel-timed; the
// probes' results are exact; the client counts none of the scan's
// answers, which its sockets read too, as strays; and the target holds
// no half-open connection afterwards (ss), our RSTs having freed them.
func TestIntegrationRunRingOnClient(t *testing.T) {
	l, cl := scanLab(t)
	spec, err := scan.ParseSpec(l.TargetV4.String() + ":1-16384")
	if err != nil {
		t.Fatal(err)
	}
	set, err := scan.NewSet(scan.Block{Spec: &spec})
	if err != nil {
		t.Fatal(err)
	}
	if set.Len() < scan.RingMinPairs {
		t.Fatalf("%d pairs: too few for the ring", set.Len())
	}
	want := func(port uint16) (probe.State, string) {
		switch {
		case port >= labOpen && port <= labOpen+9:
			return probe.StateOpen, probe.ReasonSYNACK
		case port >= labDropped && port <= labDropped+9:
			return probe.StateFiltered, probe.ReasonTimeout
		case port >= labRejected && port <= labRejected+9:
			return probe.StateFiltered, "icmp-admin-prohibited"
		}
		return probe.StateClosed, probe.ReasonRST
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	before := cl.Counters()
	probed := probeBeside(ctx, cl, 40, func(i int) netip.AddrPort {
		return netip.AddrPortFrom(l.TargetV4, uint16([]int{labOpen, labClosed, labDropped, labRejected}[i%4]+i%10))
	})
	bad := 0
	fail := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(format, args...)
		}
	}
	results := 0
	sum, err := scan.Run(ctx, cl, scan.Config{
		Set: set, Timeout: 500 * time.Millisecond, Retries: 1,
		OnResult: func(r *probe.ScanResult, _ scan.Origin) {
			results++
			if st, reason := want(r.Port); r.State != st || r.Reason != reason {
				fail("%v: %v %s, want %v %s", r.AddrPort(), r.State, r.Reason, st, reason)
			}
			if r.Timed() && !r.KernelClock {
				fail("%v: timed by the user-space clock", r.AddrPort())
			}
		},
	})
	calls := probed()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		if c.err != nil {
			fail("probe %v: %v", c.dst, c.err)
		} else if st, reason := want(c.dst.Port()); c.r.State != st || c.r.Reason != reason {
			fail("probe %v: %v %s, want %v %s", c.dst, c.r.State, c.r.Reason, st, reason)
		}
	}
	if bad > 10 {
		t.Errorf("... %d wrong in all", bad)
	}
	if uint64(results) != set.Len() || sum.Open != 10 || sum.Filtered != 20 || sum.Closed != set.Len()-30 || sum.RecvPath != "packet ring" {
		t.Errorf("%d results; summary %d open, %d closed, %d filtered, answers from %q", results, sum.Open, sum.Closed, sum.Filtered, sum.RecvPath)
	}
	// The client's sockets read the scan's answers too (raw sockets see
	// every segment to our ports): none of them is a stray.
	if c := cl.Counters(); c.Unmatched-before.Unmatched > 100 {
		t.Errorf("the client counted %d unmatched packets during the scan (it received %d)", c.Unmatched-before.Unmatched, c.Received-before.Received)
	}
	t.Logf("sent as %s; answers read from %s; clock=%s; %d received, %d unmatched by the scan", sum.SendPath, sum.RecvPath, sum.Clock(), sum.Received, sum.Unmatched)
	// Every SYN-ACK was reset: the target keeps nothing half open.
	if out := l.Run(t, l.Target, "ss", "-Htn", "state", "syn-recv"); strings.TrimSpace(out) != "" {
		t.Errorf("the target holds half-open connections:\n%s", out)
	}
}

// TestIntegrationRunOnClient scans open, closed, dropped and rejected
// ports of both families on one client while other goroutines probe the
// same ports through it, and checks every verdict against a capture on
// the prober's interface: the scan's SYN to the pair from the result's
// port, the answer that decided it (and our RST after a SYN-ACK), no
// answer for a timeout, and the RTT. The probes' results are exact too:
// no answer is taken by the wrong caller.
func TestIntegrationRunOnClient(t *testing.T) {
	l, cl := scanLab(t)
	defer cl.Close()

	ports := fmt.Sprintf("%d-%d,%d-%d,%d-%d,%d-%d", labOpen, labOpen+9, labClosed, labClosed+9, labDropped, labDropped+9, labRejected, labRejected+9)
	var blocks []scan.Block
	for _, a := range []string{l.TargetV4.String(), "[" + l.TargetV6.String() + "]"} {
		spec, err := scan.ParseSpec(a + ":" + ports)
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, scan.Block{Spec: &spec})
	}
	set, err := scan.NewSet(blocks...)
	if err != nil {
		t.Fatal(err)
	}
	capt := l.StartCapture(t, l.Prober, l.ProberIf, "tcp or icmp or icmp6")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Probes of the same ports through the same client, during the scan.
	probed := probeBeside(ctx, cl, 80, func(i int) netip.AddrPort {
		a := l.TargetV4
		if i%2 == 1 {
			a = l.TargetV6
		}
		return netip.AddrPortFrom(a, uint16([]int{labOpen, labClosed, labDropped, labRejected}[i/2%4]+i%10))
	})
	// The scan sends through the client's sockets: the kernel's list of
	// raw sockets in the prober's namespace is the same during the scan.
	before := rawSocketCount(t, l)
	// A kernel that cannot take an id per packet (before Linux 6.13)
	// numbers a socket's stamps itself: there the scan opens its own.
	var shares bool
	if err := l.InNS(l.Prober, func() error {
		c, err := rawsock.Listen(rawsock.Config{IPv4: true, SendOnly: true, PortLo: 47100, PortHi: 47100})
		if err == nil {
			shares = c.BatchStamps()
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	first, duringScan := rawSocketsAt(t, l)
	results := map[netip.AddrPort]probe.ScanResult{}
	sum, err := scan.Run(ctx, cl, scan.Config{
		Set:     set,
		Timeout: 500 * time.Millisecond,
		Options: &wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true},
		OnResult: func(r *probe.ScanResult, _ scan.Origin) {
			if _, dup := results[r.AddrPort()]; dup {
				t.Errorf("%v reported twice", r.AddrPort())
			}
			if len(results) == 0 {
				close(first)
			}
			results[r.AddrPort()] = *r
		},
	})
	calls := probed()
	if err != nil {
		t.Fatal(err)
	}
	during := duringScan()
	pkts, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	seen := wireProbes(pkts)
	want := func(port uint16) (probe.State, string) {
		switch int(port) / 100 * 100 {
		case labOpen:
			return probe.StateOpen, probe.ReasonSYNACK
		case labClosed:
			return probe.StateClosed, probe.ReasonRST
		case labDropped:
			return probe.StateFiltered, probe.ReasonTimeout
		}
		return probe.StateFiltered, "icmp-admin-prohibited"
	}
	bad := 0
	fail := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(format, args...)
		}
	}
	// The probes first: the ISNs they report are theirs, not the scan's.
	probeISN := map[uint32]bool{}
	for _, c := range calls {
		if c.err != nil {
			fail("probe %v: %v", c.dst, c.err)
			continue
		}
		if st, reason := want(c.dst.Port()); c.r.State != st || c.r.Reason != reason {
			fail("probe %v: %v %s, want %v %s", c.dst, c.r.State, c.r.Reason, st, reason)
		}
		// The scan's batches share the sockets: the engine's stamps
		// are still its own (rawsock.BulkStamp).
		if shares && c.r.Reason != probe.ReasonTimeout && !c.r.KernelClock {
			fail("probe %v: answered, timed by the user-space clock", c.dst)
		}
		probeISN[c.r.ISN] = true
	}
	if got := uint64(len(results)); got != set.Len() || sum.Pairs != set.Len() {
		t.Fatalf("%d results, summary of %d pairs, for %d pairs", got, sum.Pairs, set.Len())
	}
	timed := 0
	var rttErr []time.Duration
	for ap, r := range results {
		st, reason := want(ap.Port())
		if r.State != st || r.Reason != reason {
			fail("%v: %v %s, want %v %s", ap, r.State, r.Reason, st, reason)
			continue
		}
		// A silent pair's result has no port: any of ours.
		var w *wireProbe
		n := 0
		for _, ws := range seen {
			for _, x := range ws {
				if x.dst == ap && !probeISN[x.isn] && (r.SrcPort == 0 || slices.Contains(seen[fmt.Sprint(r.SrcPort, ap)], x)) {
					w = x
					n++
				}
			}
		}
		if w != nil {
			w.more = n > 1
		}
		switch {
		case w == nil:
			fail("%v: the capture has no scan SYN from port %d to it", ap, r.SrcPort)
			continue
		case w.more:
			fail("%v: the capture has two scan SYNs from port %d to it (no retries asked)", ap, r.SrcPort)
		case reason == probe.ReasonTimeout:
			if !w.reply.IsZero() {
				fail("%v: called filtered, but the capture has an answer", ap)
			}
			continue
		case w.reply.IsZero():
			fail("%v: %v, but the capture has no answer", ap, st)
			continue
		case st == probe.StateOpen && (w.replyFlags != wire.FlagSyn|wire.FlagAck || !w.rst):
			fail("%v: open; on the wire %v, our RST %v", ap, w.replyFlags, w.rst)
		case st == probe.StateClosed && w.replyFlags&wire.FlagRst == 0, reason == "icmp-admin-prohibited" && !w.icmp:
			fail("%v: %v, but the answer on the wire was %v (icmp %v)", ap, st, w.replyFlags, w.icmp)
		}
		if !r.Timed() {
			fail("%v: answered but not timed", ap)
			continue
		}
		timed++
		if shares && !r.KernelClock {
			fail("%v: timed by the user-space clock, beside the engine's probes on the same sockets", ap)
		}
		// Within a loaded machine's scheduling delays of the capture's
		// (the stamp is taken as the packet enters the device's queue,
		// the capture's at the tap).
		d := r.RTT - w.reply.Sub(w.syn)
		if d > 20*time.Millisecond || d < -20*time.Millisecond {
			fail("%v: RTT %v, the capture's %v", ap, r.RTT, w.reply.Sub(w.syn))
		}
		rttErr = append(rttErr, max(d, -d))
	}
	if bad > 10 {
		t.Errorf("... %d wrong in all", bad)
	}
	if want := 60; timed != want {
		t.Errorf("%d pairs timed, want %d (every answered one)", timed, want)
	}
	if sum.Open != 20 || sum.Closed != 20 || sum.Filtered != 40 || sum.Errors != 0 {
		t.Errorf("summary: %d open, %d closed, %d filtered, %d errors", sum.Open, sum.Closed, sum.Filtered, sum.Errors)
	}
	if sum.RecvPath != "raw sockets" {
		t.Errorf("answers read from %q", sum.RecvPath)
	}
	if shares && during != before {
		t.Errorf("%d raw sockets in the prober's namespace during the scan, %d before: the scan opened its own", during, before)
	}
	slices.Sort(rttErr)
	if len(rttErr) > 0 {
		t.Logf("|scan RTT - capture RTT| over %d answers: median %v, max %v", len(rttErr), rttErr[len(rttErr)/2], rttErr[len(rttErr)-1])
	}
	t.Logf("sent as %s; answers read from %s; clock=%s", sum.SendPath, sum.RecvPath, sum.Clock())

	// The client goes on probing after the scan, and a closed client
	// refuses a scan.
	if r, err := cl.Probe(ctx, netip.AddrPortFrom(l.TargetV4, labOpen), nil); err != nil || r.State != probe.StateOpen {
		t.Errorf("probe after the scan: %v, %v", r, err)
	}
	cl.Close()
	if _, err := scan.Run(ctx, cl, scan.Config{Set: set}); err == nil {
		t.Error("a closed client scanned")
	}
}

// probeCall is a Probe call made beside a scan, and what it returned.
type probeCall struct {
	dst netip.AddrPort
	r   *probe.Result
	err error
}

// probeBeside starts n Probe calls on cl at once, call i to dst(i), each
// with a 500 ms timeout; the function it returns waits for them all and
// returns them.
func probeBeside(ctx context.Context, cl *probe.Client, n int, dst func(i int) netip.AddrPort) func() []probeCall {
	calls := make([]probeCall, n)
	var wg sync.WaitGroup
	for i := range calls {
		c := &calls[i]
		c.dst = dst(i)
		wg.Go(func() { c.r, c.err = cl.Probe(ctx, c.dst, &probe.ProbeOptions{Timeout: 500 * time.Millisecond}) })
	}
	return func() []probeCall {
		wg.Wait()
		return calls
	}
}

// rawSocketCount returns how many raw sockets the kernel lists in the
// lab prober's namespace.
func rawSocketCount(t *testing.T, l *netlab.Lab) int {
	n := 0
	for _, f := range []string{"/proc/net/raw", "/proc/net/raw6"} {
		n += strings.Count(strings.TrimSpace(l.Run(t, l.Prober, "cat", f)), "\n") // less the header
	}
	return n
}

// rawSocketsAt counts the lab prober's raw sockets once first is closed
// (at a scan's first result: its silent pairs keep it going), in a
// goroutine; during waits for the count.
func rawSocketsAt(t *testing.T, l *netlab.Lab) (first chan struct{}, during func() int) {
	first = make(chan struct{})
	n := make(chan int, 1)
	go func() {
		<-first
		n <- rawSocketCount(t, l)
	}()
	return first, func() int { return <-n }
}

// scanLab returns a lab whose target has listeners on labOpen..+9 and a
// firewall that drops labDropped..+9 and rejects labRejected..+9, both
// families, and a client opened (with its own sockets) in its prober
// namespace, closed when the test ends.
func scanLab(t *testing.T) (*netlab.Lab, *probe.Client) {
	l := netlab.New(t)
	l.VerdictPorts(t)
	var cl *probe.Client
	if err := l.InNS(l.Prober, func() (err error) {
		cl, err = probe.NewClient(nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return l, cl
}

// TestIntegrationRunClientClosedMidScan: a scan sends through its
// client's sockets, which the client's Close closes mid-scan: the scan
// ends with the client's error, and the pairs it had not sent to have no
// result (Run), not a send error each (EBADF read as a refused send).
func TestIntegrationRunClientClosedMidScan(t *testing.T) {
	l, cl := scanLab(t)
	// Ports 1-4000 of the target, closed but for the lab's: a second's
	// worth at the scan's rate.
	spec, err := scan.ParseSpec(fmt.Sprintf("%s:1-4000", l.TargetV4))
	if err != nil {
		t.Fatal(err)
	}
	set, err := scan.NewSet(scan.Block{Spec: &spec})
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(300*time.Millisecond, func() { cl.Close() })
	states := map[probe.State]int{}
	var firstErr error
	sum, err := scan.Run(context.Background(), cl, scan.Config{
		Set: set, Rate: 4000, Timeout: 200 * time.Millisecond,
		OnResult: func(r *probe.ScanResult, _ scan.Origin) {
			states[r.State]++
			if r.State == probe.StateError && firstErr == nil {
				firstErr = r.Err
			}
		},
	})
	if err == nil || !strings.Contains(err.Error(), "client was closed during the scan") {
		t.Errorf("Run: %v, want the client closed during the scan", err)
	}
	if states[probe.StateError] != 0 || sum.Errors != 0 || states[probe.StateClosed] == 0 || uint64(states[probe.StateClosed]) >= set.Len() {
		t.Errorf("results by state %v (first error: %v), Summary.Errors %d: want some closed, no errors", states, firstErr, sum.Errors)
	}
}

// TestIntegrationRunRingSendOnlyClient: a client whose sockets only send
// and take no stamps (ClientConfig.SendOnly, NoTxStamps), as the command
// line opens for a big scan: a probe on it fails at once rather than end
// filtered, a scan too small for a packet ring is refused, and a scan of
// 16,384 pairs sends through the client's sockets (the prober's
// namespace lists no more raw sockets during it) and reads its ring:
// every verdict the lab's, every answer kernel-timed.
func TestIntegrationRunRingSendOnlyClient(t *testing.T) {
	l := netlab.New(t)
	l.VerdictPorts(t)
	var cl *probe.Client
	if err := l.InNS(l.Prober, func() (err error) {
		cl, err = probe.NewClient(&probe.ClientConfig{Network: "ip4", NoGuard: true, SendOnly: true, NoTxStamps: true, RecvBuffer: 32 << 20})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r, err := cl.Probe(ctx, netip.AddrPortFrom(l.TargetV4, labOpen), nil); err == nil || !strings.Contains(err.Error(), "only send") {
		t.Errorf("probe on a send-only client: %v, %v; want an error", r, err)
	}
	newSet := func(ports string) *scan.Set {
		spec, err := scan.ParseSpec(l.TargetV4.String() + ":" + ports)
		if err != nil {
			t.Fatal(err)
		}
		set, err := scan.NewSet(scan.Block{Spec: &spec})
		if err != nil {
			t.Fatal(err)
		}
		return set
	}
	if _, err := scan.Run(ctx, cl, scan.Config{Set: newSet("1-100")}); err == nil || !strings.Contains(err.Error(), "only send") {
		t.Errorf("a small scan on a send-only client: %v; want an error", err)
	}
	set := newSet("1-16384")
	before := rawSocketCount(t, l)
	first, duringScan := rawSocketsAt(t, l)
	bad, results := 0, 0
	sum, err := scan.Run(ctx, cl, scan.Config{
		Set: set, Timeout: 500 * time.Millisecond,
		OnResult: func(r *probe.ScanResult, _ scan.Origin) {
			if results++; results == 1 {
				close(first)
			}
			st, reason := probe.StateClosed, probe.ReasonRST
			switch {
			case r.Port >= labOpen && r.Port <= labOpen+9:
				st, reason = probe.StateOpen, probe.ReasonSYNACK
			case r.Port >= labDropped && r.Port <= labDropped+9:
				st, reason = probe.StateFiltered, probe.ReasonTimeout
			case r.Port >= labRejected && r.Port <= labRejected+9:
				st, reason = probe.StateFiltered, "icmp-admin-prohibited"
			}
			if (r.State != st || r.Reason != reason || r.Timed() && !r.KernelClock) && bad < 10 {
				bad++
				t.Errorf("%v: %v %s (kernel clock %v), want %v %s", r.AddrPort(), r.State, r.Reason, r.KernelClock, st, reason)
			}
		},
	})
	during := duringScan()
	if err != nil {
		t.Fatal(err)
	}
	if uint64(results) != set.Len() || sum.Open != 10 || sum.Filtered != 20 || sum.RecvPath != "packet ring" || sum.Clock() != "kernel" {
		t.Errorf("%d results; summary %d open, %d closed, %d filtered, answers from %q, clock %s", results, sum.Open, sum.Closed, sum.Filtered, sum.RecvPath, sum.Clock())
	}
	if during != before {
		t.Errorf("%d raw sockets in the prober's namespace during the scan, %d before: the scan opened sockets of its own", during, before)
	}
	t.Logf("sent as %s; %d raw sockets", sum.SendPath, before)
}

// TestIntegrationScanSplitRoute: a more specific route inside a scanned
// block (198.18.X.0/31 through another interface, with an address of its
// own) gives its addresses another source than the rest of the block:
// the target at .2 is probed from the prober's own address and found
// open, as a capture shows. Before, the block's first address's source
// (the other interface's) served the whole block, the target's answers went to
// an address it has no route to, and the port read filtered.
func TestIntegrationScanSplitRoute(t *testing.T) {
	l, cl := scanLab(t)
	block := netip.PrefixFrom(l.TargetV4, 29).Masked()
	for _, args := range [][]string{
		{"link", "add", "spv0", "type", "veth", "peer", "name", "spv1"}, // gone with the namespace
		{"link", "set", "spv0", "up"},
		{"link", "set", "spv1", "up"},
		{"addr", "add", "198.18.254.1/24", "dev", "spv0"},
		{"route", "add", netip.PrefixFrom(block.Addr(), 31).String(), "dev", "spv0"},
	} {
		l.Run(t, l.Prober, "ip", args...)
	}
	// The target cannot answer that other address.
	l.Run(t, l.Target, "ip", "route", "add", "unreachable", "198.18.254.0/24")
	spec, err := scan.ParseSpec(fmt.Sprintf("%v:%d", block, labOpen))
	if err != nil {
		t.Fatal(err)
	}
	set, err := scan.NewSet(scan.Block{Spec: &spec})
	if err != nil {
		t.Fatal(err)
	}
	capt := l.StartCapture(t, l.Prober, l.ProberIf, "tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0")
	var got probe.ScanResult
	if _, err := scan.Run(context.Background(), cl, scan.Config{Set: set, Timeout: 500 * time.Millisecond, OnResult: func(r *probe.ScanResult, _ scan.Origin) {
		if r.Addr == l.TargetV4 {
			got = *r
		}
	}}); err != nil {
		t.Fatal(err)
	}
	if got.State != probe.StateOpen || got.Src != l.ProberV4 {
		t.Errorf("%v:%d: %v %s from %v; want open from %v", l.TargetV4, labOpen, got.State, got.Reason, got.Src, l.ProberV4)
	}
	pkts, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range pkts {
		var p wire.Packet
		if wire.Parse(c.Data, &p) == nil && p.Dst == l.TargetV4 && p.Src != l.ProberV4 {
			t.Errorf("a SYN to %v from %v", p.Dst, p.Src)
		}
	}
}
