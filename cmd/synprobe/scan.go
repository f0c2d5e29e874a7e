package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/scan"
	"github.com/synprobe/synprobe/rawsock"
)

// maxMismatches bounds the mismatches kept for the report; all are counted.
const maxMismatches = 10000

// mismatch is a pair whose verdict differs from its expectation.
type mismatch struct {
	arg      string // the target: the argument, or FILE:LINE: canonical form
	expected string
	r        probe.ScanResult
}

func runScan(ctx context.Context, o *options, set *scan.Set, expecting bool, stdout, stderr io.Writer, sys network) (int, error) {
	if o.source.IsValid() {
		// -S is bad input or not before anything is set up: the
		// sources of every block, as the scan will take them.
		if err := checkScanSource(o, set, sys); err != nil {
			return 0, err
		}
	}
	// A scan runs on a probe.Client, as every probe does: the client
	// holds its ports (--sport, or the port plan) and opens its
	// sockets; the scan's ring and Ethernet-frame senders
	// (scan.Prepare) are opened beside them, all before the privileges
	// go. A big scan reads its answers from the ring, so the client's
	// sockets then only send (its RSTs, and the probes the frames do not
	// carry), without stamps: the ring times the probes.
	plan := scanPorts(o, set.Len())
	big := set.Len() >= scan.RingMinPairs
	// The first source that fails, if it fails for bad input (-S), is
	// the run's error (scan.SourcesFor, in Prepare, goes on without it).
	var srcErr error
	scope, policy := newSourceChecks(sys, o.iface)
	ccfg := &probe.ClientConfig{
		Interface: o.iface,
		Ports:     plan.max, MinPorts: plan.min,
		// A scan's probes are told apart by their ISNs; the client's
		// allocator serves no probe of its own.
		RotatePorts: true,
		// rst mode: no guard, no mark.
		NoGuard:    true,
		RecvBuffer: 64 << 20, NoTxStamps: big, SendOnly: big,
		Source: func(dst netip.Addr) (netip.Addr, error) {
			src, err := sourceFor(o, dst, sys)
			if srcErr == nil {
				srcErr = err
			}
			if err == nil {
				scope.check(src, dst)
				policy.check(src, dst)
			}
			return src, err
		},
	}
	if o.sport != 0 {
		ccfg.SourcePort, ccfg.Ports, ccfg.MinPorts = o.sport, 0, 0
	}
	v4, v6 := false, false
	for _, p := range set.Prefixes() {
		v4, v6 = v4 || p.Addr().Is4(), v6 || p.Addr().Is6()
	}
	switch {
	case v4 && v6:
		ccfg.Network = "ip"
	case v6:
		ccfg.Network = "ip6"
	default:
		ccfg.Network = "ip4"
	}
	// The client reads a small scan's answers: it records them in the
	// capture file, which is opened once the privileges are gone.
	var later *laterRecorder
	if o.pcap != "" {
		later = &laterRecorder{}
		ccfg.Recorder = later
	}
	pc, err := sys.client(ccfg)
	if err != nil {
		return 0, openFailure(o, err)
	}
	defer pc.Close()
	cl := baseClient(pc)
	prep, err := scan.Prepare(cl, scan.PrepareConfig{Set: set, Opener: opener{sys}})
	var u *usageError
	var nr *scan.NoRouteError
	switch {
	case errors.As(srcErr, &u):
		return 0, srcErr
	case errors.Is(err, os.ErrPermission):
		return 0, errors.New(privilegeFix("raw sockets need CAP_NET_RAW"))
	case errors.As(err, &nr):
		return 0, noRouteFailure(set, nr)
	case err != nil:
		return 0, err
	}
	defer prep.Close()
	if err := cmp.Or(scope.err, policy.err); err != nil {
		return 0, err
	}
	scope.warn(stderr)
	if err := endSetup(o, sys, nil, stderr); err != nil {
		return 0, err
	}
	rec, err := openPcap(o)
	if err != nil {
		return 0, err
	}
	defer rec.close()
	if rec != nil {
		later.set(rec)
	}
	var key [16]byte
	rand.Read(key[:])

	buf := newLineBuffer(stdout, 100*time.Millisecond)
	defer buf.Close()
	progress := &progressLine{w: stderr}
	if isTerminal(stdout) {
		// One terminal, perhaps, for both: the progress line goes
		// before results are written, and comes back at its next tick.
		buf.beforeFlush = progress.clear
	}
	out := newPrinter(buf, o)
	if tp, ok := out.(*textPrinter); ok && !o.quiet && !o.mismatchesOnly {
		tp.groups = newScanGroups(set, o)
	}
	var mismatches []mismatch
	nMismatch := 0
	cfg := scan.Config{
		Set:  set,
		Rate: o.rate, Retries: o.retries, Timeout: o.timeout, Senders: o.senders,
		TTL: o.ttl, TOS: o.tos, Window: o.window, ECN: o.ecn,
		PermKey: key,
		OnResult: func(r *probe.ScanResult, origin scan.Origin) {
			exp := origin.Expect()
			if exp == "" {
				exp = o.expect
			}
			if mismatched(r, exp) {
				if nMismatch++; len(mismatches) < maxMismatches {
					mismatches = append(mismatches, mismatch{arg: origin.String(), expected: exp, r: *r})
				}
			}
			if !o.quiet && !o.mismatchesOnly {
				out.scanResult(r, origin, exp) // --open is the printer's
			}
		},
	}
	if o.noOptions {
		cfg.NoOptions = true
	} else {
		cfg.Options = synOptions(o, 1460)
		cfg.Options6 = synOptions(o, 1440)
	}
	if rec != nil {
		cfg.Recorder = rec
	}
	if isTerminal(stderr) && !o.quiet {
		start := time.Now()
		cfg.OnProgress = func(p scan.Progress) {
			if time.Since(start) < time.Second {
				return
			}
			line := fmt.Sprintf("scan: %d/%d pairs answered, %d open, %s probes/s", p.Done, p.Pairs, p.Open, strconv.FormatFloat(p.Rate, 'f', 0, 64))
			if p.Pass > 0 {
				line += fmt.Sprintf(", retry %d", p.Pass)
			} else if p.ETA > 0 {
				line += fmt.Sprintf(", ETA %.1f s", p.ETA.Seconds())
			}
			progress.show(line)
		}
	}
	sum, err := prep.Run(ctx, cfg)
	// Nothing more is read or recorded once the capture file closes.
	prep.Close()
	pc.Close()
	progress.clear()
	if err != nil {
		return 0, err
	}
	pcapErr := rec.close() // reported after the summary
	out.scanEnd(&sum)
	slices.SortFunc(mismatches, func(a, b mismatch) int { return a.r.AddrPort().Compare(b.r.AddrPort()) })
	for i := range mismatches {
		sum.Complete(&mismatches[i].r) // judged against every host's SYN-ACK
		if !o.openOnly || mismatches[i].r.State == probe.StateOpen {
			out.mismatch(&mismatches[i], o)
		}
	}
	out.scanSummary(&sum, nMismatch, expecting)
	if pcapErr != nil {
		return 0, pcapErr
	}
	return scanStatus(&sum, nMismatch), nil
}

// scanStatus is a scan's exit status (docs/exit-codes.md): 3 when this
// host refused to send a probe (those pairs were never tested), 1 when a
// pair differs from its expectation or the scan was interrupted (not
// every pair was judged), else 0: a discovery scan that completed, or
// every expectation met.
func scanStatus(sum *scan.Summary, mismatches int) int {
	switch {
	case sum.Errors > 0:
		return exitFailure
	case mismatches > 0, sum.Interrupted:
		return exitNotOpen
	}
	return exitOK
}

// mismatched reports whether r fails its expectation (none: "").
// A TTL expiry meets none: the SYN never reached the target, so it shows
// nothing of the port, and a firewall check of filtered ports run with
// too low a --ttl must not pass without reaching the firewall.
func mismatched(r *probe.ScanResult, expect string) bool {
	return expect != "" && (r.State.String() != expect || r.Reason == probe.ReasonTTLExceeded)
}

// checkScanSource works out the source address of every block of the
// set as the scan will (scan.SourcesFor through sourceFor): with -S, the
// first that fails is bad input.
func checkScanSource(o *options, set *scan.Set, sys network) error {
	var first error
	scan.SourcesFor(set, func(dst netip.Addr) (netip.Addr, error) {
		src, err := sourceFor(o, dst, sys)
		if first == nil {
			first = err
		}
		return src, err
	})
	return first
}

// noRouteFailure says that a family of the set has no route at all, as a
// ping target's is (expandTargets): a file's target by its file and line,
// never its text.
func noRouteFailure(set *scan.Set, nr *scan.NoRouteError) error {
	why := fmt.Sprintf("%v (%s)", nr.Err, probe.SendErrorText(probe.SendErrorReason(nr.Err)))
	var where string
	set.Blocks(func(p netip.Prefix, first, _ uint64) bool {
		if p.Addr() != nr.Addr {
			return true
		}
		if _, _, o := set.Pair(first); o.IsValid() {
			if f, line := o.File(); f != "" {
				where = fmt.Sprintf("%s:%d", f, line)
			}
		}
		return false
	})
	if where != "" {
		return &failure{fmt.Errorf("%s: no route to the target: %s", where, why)}
	}
	return &failure{fmt.Errorf("no route to %v: %s", nr.Addr, why)}
}

// evidence describes who answered and how, for a mismatch.
func (m *mismatch) evidence(o *options) string {
	r := &m.r
	var e string
	switch {
	case r.State == probe.StateError:
		e = fmt.Sprintf("never sent: %s (%s)", r.Reason, probe.SendErrorText(r.Reason))
	case r.Reason == probe.ReasonTimeout:
		e = fmt.Sprintf("no answer to %s (timeout %v)", plural(o.retries+1, "probe", "probes"), o.timeout)
	case r.Reason == probe.ReasonTTLExceeded:
		e = fmt.Sprintf("ttl exceeded at %v, ttl %d: the SYN (--ttl %d) never reached %v, whose port was not tested", r.From, r.TTL, o.ttl, r.Addr)
	case r.IsICMP():
		who := "the target"
		if r.From != r.Addr {
			who = "a router, not the target"
		}
		e = fmt.Sprintf("%s from %v (%s), ttl %d", r.Reason, r.From, who, r.TTL)
	default:
		e = fmt.Sprintf("%s from %v, ttl %d", r.Reason, r.From, r.TTL)
	}
	if r.Hint != "" {
		e += "; likely a middlebox (" + r.Hint + ")"
	}
	return e
}

func (p *textPrinter) scanResult(r *probe.ScanResult, origin scan.Origin, expect string) {
	mismatch := mismatched(r, expect)
	if p.groups != nil && !p.groups.add(r, origin, mismatch) {
		return // counted, its line not shown
	}
	b := p.scanLine(p.b[:0], r, mismatch, expect)
	p.b = b
	if p.groups != nil {
		p.groups.keep(r, mismatch, b)
		return
	}
	p.w.Write(b)
}

// scanLine appends the text line of a scan's result r.
func (p *textPrinter) scanLine(b []byte, r *probe.ScanResult, mismatch bool, expect string) []byte {
	b = fmt.Appendf(b, "%-8s ", r.State)
	b = r.AddrPort().AppendTo(b)
	if r.Answered() && r.Timed() {
		b = fmt.Appendf(b, "  rtt=%s ms", ms(r.RTT))
	}
	b = append(b, "  reason="...)
	b = append(b, r.Reason...)
	switch {
	case r.State == probe.StateError:
		b = append(b, " ("+probe.SendErrorText(r.Reason)+")"...)
	case r.IsICMP():
		b = fmt.Appendf(b, " from=%s ttl=%d", r.From, r.TTL)
		if r.Reason == probe.ReasonTTLExceeded {
			b = appendTTLExceeded(b, r.From, r.Addr)
		}
	case r.Answered():
		hops, _ := probe.Hops(r.TTL)
		b = fmt.Appendf(b, " ttl=%d hops=%d flags=%s win=%d", r.TTL, hops, r.Flags, r.Window)
		if r.State == probe.StateOpen {
			b = appendSYNACKOptions(b, &r.Options, r.TOS)
		}
	}
	if r.Hint != "" {
		b = append(b, " hint="+r.Hint...)
	}
	if r.Answered() && r.Timed() {
		b = append(b, " clock="+clockName(r.KernelClock)...)
	}
	if mismatch {
		b = append(b, " MISMATCH(expected "+expect+")"...)
	}
	return append(b, '\n')
}

// scanEnd writes what the scan's text output gathered (scangroups.go).
func (p *textPrinter) scanEnd(s *scan.Summary) {
	if p.groups != nil {
		p.groups.write(p.w, s.Interrupted)
		p.groups = nil
	}
}

func (p *jsonPrinter) scanEnd(*scan.Summary) {}

func (p *textPrinter) mismatch(m *mismatch, o *options) {
	if p.quiet {
		return
	}
	got := m.r.State.String()
	if m.r.Reason == probe.ReasonTTLExceeded {
		got = "no answer from the target"
	}
	fmt.Fprintf(p.w, "MISMATCH %v (%s): expected %s, got %s: %s\n", m.r.AddrPort(), m.arg, m.expected, got, m.evidence(o))
}

func (p *textPrinter) scanSummary(s *scan.Summary, mismatches int, expecting bool) {
	notSent := ""
	if s.Errors > 0 {
		notSent = fmt.Sprintf(", %d not sent", s.Errors)
	}
	fmt.Fprintf(p.w, "--- scan of %s: %d open, %d closed, %d filtered%s (%s) ---\n", plural(s.Pairs, "pair", "pairs"), s.Open, s.Closed, s.Filtered, notSent, reasonList(s.Reasons))
	limit := "none"
	if s.RateLimit > 0 {
		limit = strconv.FormatFloat(s.RateLimit, 'f', 0, 64) + "/s"
	}
	fmt.Fprintf(p.w, "%s sent (%s) in %.3f s, %s probes/s while sending (limit %s), %d duplicate replies",
		plural(s.Sent, "probe", "probes"), plural(s.Retries, "retry", "retries"), s.Duration.Seconds(), strconv.FormatFloat(s.Rate, 'f', 0, 64), limit, s.Duplicates)
	if s.Slowdowns > 0 {
		fmt.Fprintf(p.w, ", slowed down %d times", s.Slowdowns)
	}
	if s.SendErrors > 0 {
		fmt.Fprintf(p.w, ", %d send errors", s.SendErrors)
	}
	if s.RecvDrops > 0 {
		fmt.Fprintf(p.w, ", %d answers lost by the receiver", s.RecvDrops)
	}
	if s.Interrupted {
		fmt.Fprint(p.w, ", interrupted")
	}
	fmt.Fprintf(p.w, "\nsent as %s; answers read from %s", s.SendPath, s.RecvPath)
	switch c := s.Clock(); c {
	case "":
	case "mixed":
		fmt.Fprintf(p.w, "; clock=mixed (%d RTTs from kernel stamps, %d with the user-space clock)", s.KernelClock, s.UserClock)
	default:
		fmt.Fprintf(p.w, "; clock=%s", c)
	}
	fmt.Fprintln(p.w)
	if s.Errors > 0 {
		fmt.Fprintf(p.w, "%d probes were never sent, refused by this host:", s.Errors)
		for _, k := range slices.Sorted(maps.Keys(s.Reasons)) {
			if probe.IsSendErrorReason(k) {
				fmt.Fprintf(p.w, " %s %d (%s);", k, s.Reasons[k], probe.SendErrorText(k))
			}
		}
		fmt.Fprintln(p.w, " see the host's routes and output firewall")
	}
	if expecting {
		if mismatches == 0 {
			fmt.Fprintln(p.w, "every pair is as expected")
		} else {
			fmt.Fprintf(p.w, "%s from what was expected\n", plural(mismatches, "pair differs", "pairs differ"))
		}
	}
}

func reasonList(r map[string]uint64) string {
	var b []byte
	for i, k := range slices.Sorted(maps.Keys(r)) {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = fmt.Appendf(b, "%s %d", k, r[k])
	}
	return string(b)
}

func (p *jsonPrinter) scanResult(r *probe.ScanResult, origin scan.Origin, expect string) {
	if p.quiet || p.openOnly && r.State != probe.StateOpen {
		return
	}
	p.write(p.pair.set(r, origin, expect))
}

func (p *jsonPrinter) mismatch(m *mismatch, o *options) {
	if p.quiet {
		return
	}
	r := &m.r
	rec := &mismatchRecord{Type: "mismatch", Target: m.arg, Port: r.Port, Expected: m.expected, Got: r.State.String(), Reason: r.Reason,
		Hint: r.Hint, Evidence: m.evidence(o)}
	rec.Addr.a = r.Addr
	if r.From.IsValid() {
		rec.answeredBy = &answeredBy{TTL: r.TTL}
		rec.From.a = r.From
	}
	p.write(rec)
}

func (p *jsonPrinter) scanSummary(s *scan.Summary, mismatches int, expecting bool) {
	p.write(newScanSummaryRecord(s, mismatches, expecting))
}

// lineBuffer gathers a scan's output into large writes: a scan prints up
// to a line per probe from the thread that reads the answers, and a write
// per line would cost that thread more than the answer itself. What it
// holds is written when the buffer fills, every interval while it runs,
// and on Close. Safe for concurrent use.
type lineBuffer struct {
	mu   sync.Mutex
	w    *bufio.Writer
	stop chan struct{}
	done chan struct{}
	// beforeFlush, if set, runs before what the buffer holds is written
	// (under its lock): the progress line's clear.
	beforeFlush func()
}

func newLineBuffer(w io.Writer, interval time.Duration) *lineBuffer {
	b := &lineBuffer{w: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
				b.Flush()
			}
		}
	}()
	return b
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.beforeFlush != nil && len(p) > b.w.Available() {
		b.beforeFlush() // the write below flushes
	}
	return b.w.Write(p)
}

// Flush writes what the buffer holds.
func (b *lineBuffer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.beforeFlush != nil && b.w.Buffered() > 0 {
		b.beforeFlush()
	}
	return b.w.Flush()
}

// progressLine is the scan's progress on a terminal: one line, redrawn in
// place, and cleared before anything else is written to that terminal
// (results would land on its end otherwise). Safe for concurrent use.
type progressLine struct {
	mu    sync.Mutex
	w     io.Writer
	shown bool
}

// show draws text as the progress line.
func (p *progressLine) show(text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "\r%s\033[K", text)
	p.shown = true
}

// clear erases the progress line, if one is drawn.
func (p *progressLine) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}

// Close stops the timed writes and writes the rest. Further calls do
// nothing but flush.
func (b *lineBuffer) Close() error {
	select {
	case <-b.stop:
	default:
		close(b.stop)
		<-b.done
	}
	return b.Flush()
}

// opener opens a scan's sockets through the run's network (scan.Opener).
type opener struct{ sys network }

func (o opener) Listen(cfg rawsock.Config) (scan.ClosingConn, error) { return o.sys.listen(cfg) }

func (o opener) Ring(cfg rawsock.RingConfig) (scan.ClosingReceiver, error) { return o.sys.ring(cfg) }

func (o opener) DirectPath(prefixes []netip.Prefix, ifindex int) (rawsock.NextHop, error) {
	return o.sys.directPath(prefixes, ifindex)
}

func (o opener) PacketSender(hop rawsock.NextHop, v6 bool) (scan.ClosingSender, error) {
	return o.sys.packetSender(hop, v6)
}
