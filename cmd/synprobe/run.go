package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/synprobe/synprobe/internal/cli"
	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/scan"
	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// Exit statuses (docs/exit-codes.md).
const (
	exitOK      = cli.ExitOK      // every target answered open
	exitNotOpen = cli.ExitNotOpen // some target was closed, filtered or never answered
	exitUsage   = cli.ExitUsage   // bad input
	exitFailure = cli.ExitFailure // runtime failure: privileges, sockets, routes
)

// version is set by make (-X main.version=...); a plain go build leaves it
// empty and the build info says which revision it was built from.
var version string

// versionString is what --version prints.
func versionString() string { return cli.VersionString(version) }

// network is what run needs from the system; tests replace it.
type network interface {
	lookup(ctx context.Context, network, host string) ([]netip.Addr, error)
	source(dst netip.Addr, iface string) (netip.Addr, error)
	listen(cfg rawsock.Config) (conn, error)
	// policyRules reports whether routing rules beyond the kernel's
	// defaults are set; route returns the route to dst from src (none:
	// by the destination alone) out of interface ifindex (0: any).
	policyRules(v6 bool) (bool, error)
	route(src, dst netip.Addr, ifindex int) (rawsock.Route, error)
	// client opens a ping's or a scan's client: its ports, sockets and
	// RST guard.
	client(cfg *probe.ClientConfig) (pingClient, error)
	// cleanup removes tables left by dead runs (--cleanup).
	cleanup() ([]string, error)
	// directPath and packetSender give scans their fast path.
	directPath(prefixes []netip.Prefix, ifindex int) (rawsock.NextHop, error)
	packetSender(hop rawsock.NextHop, v6 bool) (packetSender, error)
	// ring receives a scan's answers.
	ring(cfg rawsock.RingConfig) (receiver, error)
	// broadcasts lists the directed broadcasts of this host's subnets.
	broadcasts() (map[netip.Addr]string, error)
	// realUID, getenv and hostAddrs tell checkCaller who runs synprobe
	// and what is theirs; dropPrivileges ends set-up (privileges.go).
	realUID() int
	getenv(key string) string
	hostAddrs() ([]netip.Addr, error)
	// isLocal reports whether the kernel takes a as one of this host's
	// addresses (a socket can bind it).
	isLocal(a netip.Addr) bool
	dropPrivileges(d cli.DropSpec) error
}

// receiver is a rawsock.Ring.
type receiver interface {
	scan.Receiver
	Close() error
}

// packetSender is a rawsock.PacketSender.
type packetSender interface {
	scan.BatchSender
	Close() error
}

// pingClient is a *probe.Client that holds its own ports, sockets and
// guard: a ping's.
type pingClient interface {
	Rounds(ctx context.Context, r *probe.Rounds) ([]probe.Stats, error)
	Probe(ctx context.Context, dst netip.AddrPort, opts *probe.ProbeOptions) (*probe.Result, error)
	Info() probe.ClientInfo
	Close() error
}

// conn is a probe.Conn that can be closed and send batches (scans).
type conn interface {
	probe.Conn
	scan.BatchSender
	Close() error
}

// failure is a runtime error: exit status 3.
type failure struct{ err error }

func (f *failure) Error() string { return f.err.Error() }

// output is stdout for a run: the first write that fails ends the run
// as an interrupt does (its connections reset, its summary attempted), for
// nobody reads what follows.
type output struct {
	mu   sync.Mutex
	w    io.Writer
	err  error
	stop context.CancelFunc
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.w.Write(p)
	if err != nil {
		o.err = err
		o.stop()
	}
	return n, err
}

func (o *output) failed() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, sys network) int {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := &output{w: stdout, stop: cancel}
	code := runWith(ctx, args, out, stderr, sys)
	if err := out.failed(); err != nil && code != exitUsage {
		// A reader that went away (| head -1) ends the run like a
		// signal; any other failure to write is the run's failure.
		if errors.Is(err, syscall.EPIPE) {
			return code
		}
		fmt.Fprintf(stderr, "synprobe: writing the output: %v\n", err)
		return exitFailure
	}
	return code
}

func runWith(ctx context.Context, args []string, stdout, stderr io.Writer, sys network) int {
	o, err := parseArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "synprobe: %v\n", err)
		return exitUsage
	}
	switch {
	case o.help:
		printUsage(stdout, o.verb)
		return exitOK
	case o.version:
		fmt.Fprintf(stdout, "synprobe %s\n", versionString())
		return exitOK
	case o.cleanup:
		removed, err := sys.cleanup()
		for _, t := range removed {
			fmt.Fprintf(stdout, "removed nftables table inet %s\n", t)
		}
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				err = errors.New(privilegeFix("nftables needs CAP_NET_ADMIN"))
			}
			fmt.Fprintf(stderr, "synprobe: --cleanup: %v\n", err)
			return exitFailure
		}
		if len(removed) == 0 {
			fmt.Fprintln(stdout, "nothing to clean up")
		}
		return exitOK
	}
	code, err := probeAll(ctx, o, stdout, stderr, sys)
	if err != nil {
		fmt.Fprintf(stderr, "synprobe: %v\n", err)
		var u *usageError
		if errors.As(err, &u) {
			return exitUsage
		}
		return exitFailure
	}
	return code
}

// maxPingPairs bounds ping-style runs (-c, -i) over many pairs; scans
// have no such bound.
const maxPingPairs = 4096

func probeAll(ctx context.Context, o *options, stdout, stderr io.Writer, sys network) (int, error) {
	if err := checkCaller(o, sys); err != nil {
		return 0, err
	}
	ifLoop, err := interfaceLoop(o.iface)
	if err != nil {
		return 0, err
	}
	// A target file of millions of lines makes mostly garbage while it
	// is read, and the set it leaves is most of the heap: collect sooner
	// than usual, which cuts the peak memory by a third (1,048,576
	// lines: 125 MB instead of 183 MB, no slower). Small runs keep the
	// default.
	gc := debug.SetGCPercent(25)
	dest := &usable{sys: sys}
	b, err := loadTargets(o, dest)
	if err != nil {
		return 0, err
	}
	if b.Len() < 1<<16 {
		debug.SetGCPercent(gc)
	}
	expecting := o.expect != "" || b.HasExpectation()
	set, err := resolveTargets(ctx, o, b, dest, sys)
	if err != nil {
		return 0, err
	}
	if o.iface != "" {
		var err error
		set.Blocks(func(p netip.Prefix, _, _ uint64) bool {
			err = interfaceReaches(o.iface, ifLoop, p)
			return err == nil
		})
		if err != nil {
			return 0, err
		}
	}
	// The verb decides, never the number of pairs.
	isScan := o.verb == verbScan
	if pairs := set.Len(); !isScan && pairs > maxPingPairs {
		return 0, usagef("%d address and port pairs is too many to ping (at most %d): scan them: synprobe scan TARGET...", pairs, maxPingPairs)
	}
	for _, a := range set.Excluded() {
		fmt.Fprintf(stderr, "synprobe: leaving out %v, %s\n", a, scan.Unusable(a, dest.broadcasts()))
	}
	if isScan {
		return runScan(ctx, o, set, expecting, stdout, stderr, sys)
	}
	targets, err := expandTargets(o, set, sys)
	if err != nil {
		return 0, err
	}
	scope, policy := newSourceChecks(sys, o.iface)
	for _, t := range targets {
		scope.check(t.Src, t.Addr)
		policy.check(t.Src, t.Addr)
	}
	if err := cmp.Or(scope.err, policy.err); err != nil {
		return 0, err
	}
	scope.warn(stderr)
	if err := checkFINPort(o, len(targets)); err != nil {
		return 0, err
	}
	// The client holds the run's ports, sockets and RST guard, opened
	// here, before the privileges go (endSetup).
	plan := pingPorts(o, len(targets))
	ccfg := &probe.ClientConfig{
		Interface: o.iface,
		Ports:     plan.max,
		MinPorts:  plan.min,
		// rst and ack probes are told apart by their ISNs: a port
		// may serve more than one in flight. fin connections are
		// found by port.
		RotatePorts: o.mode != probe.ModeFIN,
		Network:     "ip4",
		Source:      func(dst netip.Addr) (netip.Addr, error) { return sys.source(dst, o.iface) },
		Broadcasts:  dest.forClient(),
	}
	if o.sport != 0 {
		ccfg.SourcePort, ccfg.Ports, ccfg.MinPorts = o.sport, 0, 0
	}
	v4, v6 := false, false
	for _, t := range targets {
		v4, v6 = v4 || t.Addr.Is4(), v6 || t.Addr.Is6()
	}
	switch {
	case v4 && v6:
		ccfg.Network = "ip"
	case v6:
		ccfg.Network = "ip6"
	}
	if o.mode == probe.ModeRST {
		// No rule: the kernel's RST to the SYN-ACK duplicates ours,
		// and no mark, which needs CAP_NET_ADMIN before Linux 5.17.
		// The other modes complete the handshake, which the kernel's
		// RST would tear down.
		ccfg.NoGuard = true
	} else {
		ccfg.Guard, ccfg.CountRSTs, ccfg.Mark = true, true, o.mark
	}
	var later *laterRecorder
	if o.pcap != "" {
		later = &laterRecorder{}
		ccfg.Recorder = later
	}
	popts := &probe.ProbeOptions{
		Mode:         o.mode,
		Timeout:      o.timeout,
		Hold:         o.hold,
		Data:         o.data,
		CloseTimeout: o.closeTimeout,
		Trace:        o.trace,
		TTL:          o.ttl,
		TOS:          o.tos,
		Window:       o.window,
		ECN:          o.ecn,
		NoOptions:    o.noOptions,
	}
	var opts4 *wire.SYNOptions
	if !o.noOptions {
		opts4 = synOptions(o, 1460)
		ccfg.Options, ccfg.Options6 = opts4, synOptions(o, 1440)
	}
	cl, err := sys.client(ccfg)
	if err != nil {
		return 0, openFailure(o, err)
	}
	// Closed before the return: the client resets what is still
	// open, then removes its guard and lets its ports go.
	defer cl.Close()
	info := cl.Info()
	if err := endSetup(o, sys, &info, stderr); err != nil {
		return 0, err
	}
	rec, err := openPcap(o)
	if err != nil {
		return 0, err
	}
	defer rec.close()
	// Closed first (deferred last): the client's last RSTs go in the
	// capture file.
	defer cl.Close()
	if rec != nil {
		later.set(rec)
	}
	out := newPrinter(stdout, o)
	specs := make([]*targetSpec, len(targets))
	for i := range targets {
		specs[i] = &o.targets[i]
		out.header(&targets[i], specs[i], synLen(&targets[i], opts4))
	}
	var pr *portsReport
	if o.mode == probe.ModeFIN {
		pr = newPortsReport(info.Ports, plan)
		out.portsStart(pr)
	}
	stats, err := cl.Rounds(ctx, &probe.Rounds{
		Targets:  targets,
		Count:    o.count,
		Interval: o.interval,
		Options:  popts,
		OnResult: func(r *probe.Result) { out.result(r, specs[r.Index]) },
	})
	if errors.Is(err, probe.ErrNotUnicast) { // the client's own check: bad input
		return 0, usagef("%v", err)
	}
	if err != nil {
		return 0, err
	}
	if o.explain {
		explain(ctx, cl, targets, stats, specs, o)
	}
	cl.Close() // lingering TIME_WAITs end here, before the guard's counts are taken
	pcapErr := rec.close()
	info = cl.Info()
	if info.GuardTable != "" {
		out.guard(info.GuardTable, info.GuardOwned, uint64(max(info.RSTsDropped, 0)), info.RSTsEscaped)
	}
	if pr != nil {
		pr.reused, pr.exhausted = info.PortsReused, info.PortsExhausted
		out.portsEnd(pr)
	}
	code := exitOK
	for i := range targets {
		s := &stats[i]
		out.summary(&targets[i], specs[i], s)
		switch {
		case (s.Errors > 0 || dataRefused(s)) && code < exitFailure:
			code = exitFailure
		case !answeredOpen(s) && code < exitNotOpen:
			code = exitNotOpen
		}
	}
	if pcapErr != nil {
		return 0, pcapErr
	}
	return code, nil
}

// dataRefused reports whether a target's fin-mode data fell short while
// this host refused segments of its connections (its output firewall, a
// route): not the peer's doing, but the probe's that could not be sent.
func dataRefused(s *probe.Stats) bool { return s.DataShort > 0 && s.SendErrors > 0 }

// answeredOpen reports whether a target passes: at least one SYN-ACK and
// no definite refusal (RST or ICMP error), and with --data in fin mode,
// every connection's data acknowledged whole. Timeouts among SYN-ACKs
// count as loss, as ping counts them.
func answeredOpen(s *probe.Stats) bool {
	return s.Open > 0 && s.Closed == 0 && s.Filtered == s.Timeouts && s.Errors == 0 && s.DataShort == 0
}

func synOptions(o *options, defaultMSS uint16) *wire.SYNOptions {
	opts := &wire.SYNOptions{
		MSS:           defaultMSS,
		WScale:        o.wscale,
		SACKPermitted: !o.noSACK,
		Timestamps:    !o.noTimestamps,
	}
	if o.mss != 0 {
		opts.MSS = o.mss
	}
	return opts
}

func synLen(t *probe.Target, opts *wire.SYNOptions) int {
	n := wire.IPv4MinimumSize + wire.TCPMinimumSize
	if t.Addr.Is6() {
		n = wire.IPv6MinimumSize + wire.TCPMinimumSize
	}
	if opts != nil {
		var b [wire.MaxOptionsSize]byte
		n += opts.Encode(b[:])
	}
	return n
}

// resolveTargets resolves the host names among the targets (the first
// address with a route, as ping does) and builds the set of pairs, each
// named once by its most specific target. A set too large to scan is
// refused here, before its bitmap is allocated.
func resolveTargets(ctx context.Context, o *options, b *scan.Builder, dest *usable, sys network) (*scan.Set, error) {
	addrs := map[string][]netip.Addr{}
	for _, host := range b.Hosts() {
		// A name from a file is named by its file and line: the file
		// may hold what must not be shown.
		file, line := b.HostSource(host)
		var where string
		if file != "" {
			where = fmt.Sprintf("%s:%d", file, line)
		}
		all, err := resolve(ctx, o, host, where, sys)
		if err != nil {
			return nil, err
		}
		if all, err = dest.hostAddrs(host, all); err != nil {
			return nil, err
		}
		var srcErr error
		for _, a := range all {
			if _, err := sourceFor(o, a, sys); err == nil {
				addrs[host] = []netip.Addr{a}
				break
			} else if srcErr == nil {
				srcErr = err
			}
		}
		if addrs[host] == nil {
			var u *usageError
			if errors.As(srcErr, &u) {
				return nil, srcErr
			}
			// No address has a route: the first is probed all the same,
			// and its probes fail one by one with the kernel's reason
			// (a prohibit route, an output firewall...), reported as
			// that pair's own; the other targets go on.
			addrs[host] = all[:1]
		}
	}
	set, err := b.Build(addrs)
	if err != nil {
		return nil, usagef("%v", err)
	}
	switch n := set.Len(); {
	case n == 0:
		return nil, usagef("the targets name no address and port to probe")
	case n > scan.MaxScanPairs:
		return nil, usagef("the targets hold %s pairs; a scan holds at most %d (one bit of memory each): scan a smaller range", pairCount(n), uint64(scan.MaxScanPairs))
	default:
		if avail, ok := memAvailable(); ok && n/8 > avail/2 {
			return nil, usagef("the targets hold %d pairs, whose bitmap (%d MiB) would take more than half of the memory available (%d MiB): scan a smaller range", n, n/8>>20, avail>>20)
		}
	}
	return set, nil
}

// pairCount formats a pair count, which may have overflowed.
func pairCount(n uint64) string {
	if n == math.MaxUint64 {
		return "more than 2^64"
	}
	return strconv.FormatUint(n, 10)
}

// checkFamily refuses a literal address of the family -4 or -6 excludes.
func checkFamily(o *options, spec *scan.Spec) error {
	if spec.Host != "" {
		return nil
	}
	switch a := spec.Prefix.Addr(); {
	case o.ipv4 && !a.Is4():
		return errors.New("an IPv6 address, but -4 was given")
	case o.ipv6 && !a.Is6():
		return errors.New("an IPv4 address, but -6 was given")
	}
	return nil
}

// expandTargets lists every pair as a ping-style target with its source.
// A target the host has no route to (a prohibit, blackhole or unreachable
// route, say) gets its family's first source, as a scan's block does
// (scan.SourcesFor): its probes then fail one by one, each reported with
// the kernel's reason, and the other targets are probed. A family with no
// route at all is the run's failure.
func expandTargets(o *options, set *scan.Set, sys network) ([]probe.Target, error) {
	targets := make([]probe.Target, 0, set.Len())
	o.targets = o.targets[:0]
	var first [2]netip.Addr // a source each family's routes gave
	type noRoute struct {
		i   int
		err error
	}
	var unrouted []noRoute
	origins := make([]scan.Origin, 0, set.Len())
	for i := uint64(0); i < set.Len(); i++ {
		addr, port, origin := set.Pair(i)
		origins = append(origins, origin)
		src, err := sourceFor(o, addr, sys)
		if err != nil {
			var u *usageError
			if errors.As(err, &u) {
				return nil, err
			}
			unrouted = append(unrouted, noRoute{len(targets), err})
		} else if f := famOf(addr); !first[f].IsValid() {
			first[f] = src
		}
		host := origin.Host()
		if host == "" {
			host = addr.String()
		}
		arg := origin.Arg()
		if set.Len() > 1 {
			arg = netip.AddrPortFrom(addr, port).String()
			if origin.Host() != "" {
				arg = net.JoinHostPort(origin.Host(), strconv.Itoa(int(port)))
			}
		}
		targets = append(targets, probe.Target{Name: host, Addr: addr, Port: port, Src: src})
		o.targets = append(o.targets, targetSpec{arg: arg, host: host, port: port})
	}
	for _, u := range unrouted {
		t := &targets[u.i]
		if t.Src = first[famOf(t.Addr)]; t.Src.IsValid() {
			continue
		}
		why := fmt.Sprintf("%v (%s)", u.err, probe.SendErrorText(probe.SendErrorReason(u.err)))
		_, _, origin := set.Pair(uint64(u.i))
		if f, line := origin.File(); f != "" {
			return nil, &failure{fmt.Errorf("%s:%d: no route to the target: %s", f, line, why)}
		}
		return nil, &failure{fmt.Errorf("%s: no route to %v: %s", origin.Arg(), t.Addr, why)}
	}
	// In the order given, not the Set's (by address): a target's probes
	// and summary come where its argument stands.
	order := make([]int, len(targets))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return origins[a].Compare(origins[b]) })
	sorted, specs := make([]probe.Target, len(targets)), make([]targetSpec, len(targets))
	for i, k := range order {
		sorted[i], specs[i] = targets[k], o.targets[k]
	}
	o.targets = specs
	return sorted, nil
}

// checkInterface refuses -I NAME (none: ""), before anything is opened,
// where no such interface exists or it cannot reach the addresses of ps
// (probe.CheckInterface): bad input, exit 2.
func checkInterface(name string, ps ...netip.Prefix) error {
	loop, err := interfaceLoop(name)
	for _, p := range ps {
		if err == nil && name != "" {
			err = interfaceReaches(name, loop, p)
		}
	}
	return err
}

// interfaceLoop reports whether -I NAME is a loopback interface, and
// refuses a name that is none.
func interfaceLoop(name string) (bool, error) {
	if name == "" {
		return false, nil
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return false, usagef("-I %s: no such interface (ip link lists them)", name)
	}
	return ifi.Flags&net.FlagLoopback != 0, nil
}

// interfaceReaches refuses -I NAME for the addresses of p where it cannot
// reach them (probe.CheckInterface).
func interfaceReaches(name string, loop bool, p netip.Prefix) error {
	if err := probe.CheckInterface(name, loop, p); err != nil {
		return usagef("-I %v", strings.TrimPrefix(err.Error(), "probe: interface "))
	}
	return nil
}

// checkFINPort refuses a fin-mode run on one source port (--sport) that
// the port cannot serve: a port carries one connection at a time, and
// after its close waits a quiet second (probe.PortPool, RFC 6191) before
// its next SYN, or the minute of TIME_WAIT if the server declined
// timestamps. Each probe would otherwise fail as "every source port is
// busy".
func checkFINPort(o *options, targets int) error {
	if o.sport == 0 || o.mode != probe.ModeFIN {
		return nil
	}
	switch {
	case targets > 1:
		return usagef("--sport %d with --mode fin: the port carries one connection at a time, and %d targets would share it: give one target, or leave --sport out", o.sport, targets)
	case o.count != 1 && o.interval <= time.Second+o.hold:
		return usagef("--sport %d with --mode fin: each probe holds the port for its connection (--hold %v and the close) and a quiet second after it (a minute if the server declines timestamps), so -i %v is too short: give -i above %v, or leave --sport out",
			o.sport, o.hold.Seconds(), o.interval.Seconds(), (time.Second + o.hold).Seconds())
	}
	return nil
}

// famOf indexes an address's family: 0 IPv4, 1 IPv6.
func famOf(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// resolve looks host up. where is the file and line that gave it, if a
// file did: errors then name it instead of the host.
func resolve(ctx context.Context, o *options, host, where string, sys network) ([]netip.Addr, error) {
	family := "ip"
	if o.ipv4 {
		family = "ip4"
	} else if o.ipv6 {
		family = "ip6"
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := sys.lookup(lctx, family, host)
	if err != nil || len(addrs) == 0 {
		why := "no address"
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			why = dnsErr.Err
		} else if err != nil {
			why = err.Error()
		}
		if where != "" {
			if dnsErr == nil {
				why = "lookup failed"
			}
			return nil, usagef("%s: cannot resolve the host name: %s", where, why)
		}
		return nil, usagef("target %q: cannot resolve %q: %s", host, host, why)
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return addrs, nil
}

func sourceFor(o *options, dst netip.Addr, sys network) (netip.Addr, error) {
	if o.source.IsValid() {
		if o.source.Is4() != dst.Is4() {
			return netip.Addr{}, usagef("--source %v and target %v are of different address families", o.source, dst)
		}
		// A loopback source reaches loopback destinations only: the
		// kernel never sends one out (a martian), and no answer to
		// one sent raw could come back: root is refused it too.
		if o.source.IsLoopback() && !dst.IsLoopback() {
			if o.restricted {
				return netip.Addr{}, usagef("-S %v: a loopback address as the source of a probe to %v, which the host itself would never send; only the host's own source addresses: %s", o.source, dst, privilegeRule)
			}
			return netip.Addr{}, usagef("-S %v: a loopback address as the source of a probe to %v: its answers would never reach synprobe", o.source, dst)
		}
		return o.source, nil
	}
	return sys.source(dst, o.iface)
}

func privilegeFix(what string) string { return cli.PrivilegeFix(what) }

// memAvailable returns the kernel's estimate of the memory available for
// new work (MemAvailable), if it can be read.
func memAvailable() (uint64, bool) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// usable keeps unusable destinations out of the targets (scan.Unusable):
// it refuses the unspecified address, multicast and broadcast addresses,
// and blocks that reach outside unicast space, and leaves this host's
// subnets' broadcast addresses out of larger blocks (Builder.Exclude).
type usable struct {
	sys    network
	bcast  map[netip.Addr]string
	loaded bool
}

func (u *usable) broadcasts() map[netip.Addr]string {
	if !u.loaded {
		// Without them, a broadcast address fails to send (EACCES) and
		// is reported as such.
		u.bcast, _ = u.sys.broadcasts()
		u.loaded = true
	}
	return u.bcast
}

// forClient returns a probe.Client's Broadcasts: the list read already,
// the first time (the client asks as it opens: the kernel's address dump
// once per run, not twice), the kernel's own after that (the client asks
// again when its list may be stale). nil, the client's default, when none
// was read.
func (u *usable) forClient() func() (map[netip.Addr]string, error) {
	if !u.loaded || u.bcast == nil {
		return nil
	}
	first := u.bcast
	var used atomic.Bool
	return func() (map[netip.Addr]string, error) {
		if used.CompareAndSwap(false, true) {
			return first, nil
		}
		return u.sys.broadcasts()
	}
}

// broadcastsFor returns the broadcasts that matter to a: none for IPv6,
// which has no broadcast (nothing is asked of the kernel).
func (u *usable) broadcastsFor(a netip.Addr) map[netip.Addr]string {
	if !a.Unmap().Is4() {
		return nil
	}
	return u.broadcasts()
}

// hostAddrs returns the usable ones of the addresses host resolved to, or
// the refusal of the first when none is.
func (u *usable) hostAddrs(host string, addrs []netip.Addr) ([]netip.Addr, error) {
	var ok []netip.Addr
	for _, a := range addrs {
		if scan.Unusable(a, u.broadcastsFor(a)) == "" {
			ok = append(ok, a)
		}
	}
	if len(ok) == 0 {
		return nil, usagef("%s resolves to %v, %s; a probe goes to one host: give a unicast address",
			host, addrs[0], scan.Unusable(addrs[0], u.broadcastsFor(addrs[0])))
	}
	return ok, nil
}

// block checks spec's block: refused if it holds an address that is
// never a destination; its subnets' broadcast addresses are left out of
// the set. The error is the problem alone, for the caller to attribute;
// it names the address unless quiet (a line of a file, which is never
// quoted).
func (u *usable) block(spec *scan.Spec, b *scan.Builder, quiet bool) error {
	if spec.Host != "" {
		return nil
	}
	bad, why, skip := scan.CheckBlock(spec.Prefix, u.broadcastsFor(spec.Prefix.Addr()))
	switch {
	case bad.IsValid() && quiet:
		return fmt.Errorf("an address that is never a destination (%s); a probe goes to one host: give unicast addresses", why)
	case bad.IsValid() && spec.Prefix.IsSingleIP():
		return fmt.Errorf("%v is %s; a probe goes to one host: give a unicast address", bad, why)
	case bad.IsValid():
		return fmt.Errorf("the block holds %v, %s; a probe goes to one host: name the unicast part of the block", bad, why)
	}
	b.Exclude(skip...)
	return nil
}

// explain sends one bare ACK to every target whose SYNs got silence
// (--explain; probe.ModeBareACK) and says in its summary what came back:
// a RST means the host's TCP got the ACK, so only SYNs are dropped, by a
// listener refusing new connections (its accept queue full) or by a
// filter of SYNs alone; silence, a filter of both or a host that is down.
func explain(ctx context.Context, cl pingClient, targets []probe.Target, stats []probe.Stats, specs []*targetSpec, o *options) {
	if ctx.Err() != nil {
		// Interrupted, as ping usually ends: the explanation is still
		// due, within one timeout per target (a second Ctrl-C kills).
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), time.Duration(len(targets))*(o.timeout+100*time.Millisecond))
		defer cancel()
	}
	for i := range targets {
		if stats[i].Timeouts == 0 || ctx.Err() != nil {
			continue
		}
		t := &targets[i]
		r, err := cl.Probe(ctx, netip.AddrPortFrom(t.Addr, t.Port), &probe.ProbeOptions{
			Mode: probe.ModeBareACK, Timeout: o.timeout, Source: t.Src, TTL: o.ttl, TOS: o.tos,
		})
		switch {
		case err != nil:
			specs[i].explain, specs[i].explainReply = fmt.Sprintf("the bare ACK could not be sent: %v", err), "error"
		case r.State == probe.StateClosed:
			specs[i].explain = "SYNs got silence while a bare ACK drew a RST: the host's TCP is there and only SYNs are dropped, by a listener whose accept queue is full or by a filter of SYNs alone"
		case r.State == probe.StateError:
			specs[i].explain, specs[i].explainReply = fmt.Sprintf("the bare ACK could not be sent: %v", r.Err), "error"
		case r.Reason == probe.ReasonTimeout:
			specs[i].explain = "a bare ACK got no answer either: a firewall drops both, or the host is down"
		default:
			specs[i].explain = fmt.Sprintf("a bare ACK was answered %s from %v", r.Reason, r.From)
		}
		if err == nil && r.State != probe.StateError {
			specs[i].explainReply = r.Reason
		}
	}
}
