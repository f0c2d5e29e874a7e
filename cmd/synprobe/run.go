package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/scan"
	"github.com/synprobe/synprobe/rawsock"
)

// Exit statuses (docs/exit-codes.md).
const (
	exitOK      = 0 // every target answered open
	exitNotOpen = 1 // some target was closed, filtered or never answered
	exitUsage   = 2 // bad input
	exitFailure = 3 // runtime failure: privileges, sockets, routes
)

var version = "dev"

// network is what run needs from the system; tests replace it.
type network interface {
	lookup(ctx context.Context, network, host string) ([]netip.Addr, error)
	source(dst netip.Addr, iface string) (netip.Addr, error)
	portRange() (lo, hi uint16, err error)
	listen(cfg rawsock.Config) (conn, error)
	// guard keeps the kernel's RSTs for our ports off the wire (ack, fin).
	guard(cfg rawsock.GuardConfig) (guard, error)
	// watch counts the kernel's RSTs that escape the guard anyway.
	watch(lo, hi uint16, mark uint32) (watch, error)
	// cleanup removes tables left by dead runs (--cleanup).
	cleanup() ([]string, error)
	// nextHop and packetSender give scans their fast path.
	nextHop(dst netip.Addr) (rawsock.NextHop, error)
	packetSender(hop rawsock.NextHop, v6 bool) (packetSender, error)
	// ring receives a scan's answers.
	ring(cfg rawsock.RingConfig) (receiver, error)
	// broadcasts lists the directed broadcasts of this host's subnets.
	broadcasts() (map[netip.Addr]string, error)
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

// watch is a rawsock.RSTWatch.
type watch interface {
	Escaped() uint64
	Close() error
}

// guard is a rawsock.RSTGuard.
type guard interface {
	Table() string
	Owned() bool
	Dropped() (uint64, error)
	Close() error
}

// conn is a probe.Conn that can be closed and send batches (scans).
type conn interface {
	probe.Conn
	SendBatch(b *rawsock.Batch) (int, error)
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
		printUsage(stdout)
		return exitOK
	case o.version:
		fmt.Fprintf(stdout, "synprobe %s\n", version)
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
	blocks, pairs, err := resolveSpecs(ctx, o, sys)
	if err != nil {
		return 0, err
	}
	isScan := o.expect != "" || hasExpectation(o.specs) || (pairs > 1 && !o.countSet && !o.intervalSet)
	if !isScan && pairs > maxPingPairs {
		return 0, usagef("%d address and port pairs is too many for -c/-i rounds (at most %d): drop -c and -i to scan them", pairs, maxPingPairs)
	}
	for _, n := range o.skipped {
		fmt.Fprintf(stderr, "synprobe: %s\n", n)
	}
	if isScan {
		return runScan(ctx, o, blocks, stdout, stderr, sys)
	}
	targets, err := expandTargets(o, blocks, sys)
	if err != nil {
		return 0, err
	}
	lo, hi, err := portBlock(o, sys)
	if err != nil {
		return 0, err
	}
	cfg := rawsock.Config{PortLo: lo, PortHi: hi, Interface: o.iface}
	for _, t := range targets {
		cfg.IPv4 = cfg.IPv4 || t.Addr.Is4()
		cfg.IPv6 = cfg.IPv6 || t.Addr.Is6()
	}
	if o.mode != probe.ModeRST {
		cfg.Mark = o.mark
	}
	c, err := sys.listen(cfg)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return 0, errors.New(privilegeFix("raw sockets need CAP_NET_RAW"))
		}
		return 0, err
	}
	defer c.Close()
	// rst mode needs no rule: the kernel's RST to the SYN-ACK duplicates
	// ours. The other modes complete the handshake, which the kernel's
	// RST would tear down.
	var g guard
	var esc watch
	if o.mode != probe.ModeRST {
		g, err = sys.guard(rawsock.GuardConfig{PortLo: lo, PortHi: hi, Mark: o.mark})
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				return 0, errors.New(privilegeFix(fmt.Sprintf("--mode %v needs CAP_NET_ADMIN for its nftables rule", o.mode)))
			}
			return 0, fmt.Errorf("RST guard: %w", err)
		}
		// Closed after the prober has reset what is still open.
		defer g.Close()
		if w, err := sys.watch(lo, hi, o.mark); err == nil {
			esc = w
			defer w.Close()
		}
	}
	cookie, err := rawsock.NewRandomCookie()
	if err != nil {
		return 0, err
	}

	pcfg := probe.Config{
		Targets:      targets,
		Count:        o.count,
		Interval:     o.interval,
		Timeout:      o.timeout,
		Mode:         o.mode,
		Hold:         o.hold,
		Data:         o.data,
		CloseTimeout: o.closeTimeout,
		Trace:        o.trace,
		PortLo:       lo,
		PortHi:       hi,
		TTL:          o.ttl,
		TOS:          o.tos,
		Window:       o.window,
		ECN:          o.ecn,
		Cookie:       cookie,
	}
	if !o.noOptions {
		pcfg.Options = synOptions(o, 1460)
		pcfg.Options6 = synOptions(o, 1440)
	}
	out := newPrinter(stdout, o)
	specs := make([]*targetSpec, len(targets))
	for i := range targets {
		specs[i] = &o.targets[i]
		out.header(&targets[i], specs[i], synLen(&targets[i], pcfg.Options))
	}
	pcfg.OnResult = func(r *probe.Result) { out.result(r, specs[r.Index]) }
	p, err := probe.New(c, pcfg)
	if err != nil {
		return 0, err
	}
	if err := p.Run(ctx); err != nil {
		return 0, err
	}
	if g != nil {
		dropped, _ := g.Dropped()
		escaped := int64(-1) // unknown without a watch
		if esc != nil {
			escaped = int64(esc.Escaped())
		}
		out.guard(g.Table(), g.Owned(), dropped, escaped)
	}
	code := exitOK
	for i := range targets {
		s := p.Stats(i)
		out.summary(&targets[i], specs[i], s)
		switch {
		case s.Errors > 0 && code < exitFailure:
			code = exitFailure
		case !answeredOpen(s) && code < exitNotOpen:
			code = exitNotOpen
		}
	}
	return code, nil
}

// answeredOpen reports whether a target passes: at least one SYN-ACK and
// no definite refusal (RST or ICMP error). Timeouts among SYN-ACKs count
// as loss, as ping counts them.
func answeredOpen(s *probe.Stats) bool {
	return s.Open > 0 && s.Closed == 0 && s.Filtered == s.Timeouts && s.Errors == 0
}

func synOptions(o *options, defaultMSS uint16) *rawsock.SYNOptions {
	opts := &rawsock.SYNOptions{
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

func synLen(t *probe.Target, opts *rawsock.SYNOptions) int {
	n := rawsock.IPv4MinimumSize + rawsock.TCPMinimumSize
	if t.Addr.Is6() {
		n = rawsock.IPv6MinimumSize + rawsock.TCPMinimumSize
	}
	if opts != nil {
		var b [rawsock.MaxOptionsSize]byte
		n += opts.Encode(b[:])
	}
	return n
}

// resolveSpecs resolves the host names among the targets (the first
// address with a route, as ping does) and counts the pairs.
func resolveSpecs(ctx context.Context, o *options, sys network) ([]scan.Block, uint64, error) {
	blocks := make([]scan.Block, 0, len(o.specs))
	dest := usable{sys: sys}
	for i := range o.specs {
		sp := &o.specs[i]
		b := scan.Block{Spec: sp}
		if sp.Host != "" {
			addrs, err := resolve(ctx, o, sp.Host, sp.Arg, sys)
			if err != nil {
				return nil, 0, err
			}
			if addrs, err = dest.addrs(sp, addrs); err != nil {
				return nil, 0, err
			}
			var srcErr error
			for _, a := range addrs {
				if _, err := sourceFor(o, a, sys); err == nil {
					b.Addrs = []netip.Addr{a}
					break
				} else if srcErr == nil {
					srcErr = err
				}
			}
			if b.Addrs == nil {
				var u *usageError
				if errors.As(srcErr, &u) {
					return nil, 0, srcErr
				}
				return nil, 0, &failure{fmt.Errorf("%s: no route to %v: %v", sp.Arg, addrs[0], srcErr)}
			}
		} else {
			a := sp.Prefix.Addr()
			switch {
			case o.ipv4 && !a.Is4():
				return nil, 0, usagef("target %q: %v is not an IPv4 address, but -4 was given", sp.Arg, a)
			case o.ipv6 && !a.Is6():
				return nil, 0, usagef("target %q: %v is not an IPv6 address, but -6 was given", sp.Arg, a)
			}
			parts, err := dest.block(o, sp)
			if err != nil {
				return nil, 0, err
			}
			blocks = append(blocks, parts...)
			continue
		}
		blocks = append(blocks, b)
	}
	set := scan.NewSet(blocks...)
	if set.Len() > scan.MaxPairs {
		return nil, 0, usagef("the targets hold %d pairs, more than the %d a scan can hold", set.Len(), uint64(scan.MaxPairs))
	}
	return blocks, set.Len(), nil
}

// usable keeps unusable destinations out of the targets (scan.Unusable):
// it refuses the unspecified address, multicast and broadcast addresses,
// and blocks that reach outside unicast space, and leaves this host's
// subnets' broadcast addresses out of larger blocks.
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

// addrs returns the usable ones of the addresses sp's host resolved to,
// or the refusal of the first when none is.
func (u *usable) addrs(sp *scan.Spec, addrs []netip.Addr) ([]netip.Addr, error) {
	var ok []netip.Addr
	for _, a := range addrs {
		if scan.Unusable(a, u.broadcasts()) == "" {
			ok = append(ok, a)
		}
	}
	if len(ok) == 0 {
		return nil, usagef("target %q: %s resolves to %v, %s; a probe goes to one host: give a unicast address",
			sp.Arg, sp.Host, addrs[0], scan.Unusable(addrs[0], u.broadcasts()))
	}
	return ok, nil
}

// block returns sp's block, refused if it holds an address that is never
// a destination, or cut into the parts around the broadcast addresses it
// holds, each noted in o.skipped. (The parts keep sp's Arg, Ports and
// Expect; only their Prefix is narrower.)
func (u *usable) block(o *options, sp *scan.Spec) ([]scan.Block, error) {
	var bcast map[netip.Addr]string
	if sp.Prefix.Addr().Is4() {
		bcast = u.broadcasts()
	}
	bad, why, skip := scan.CheckBlock(sp.Prefix, bcast)
	switch {
	case bad.IsValid() && sp.Prefix.IsSingleIP():
		return nil, usagef("target %q: %v is %s; a probe goes to one host: give a unicast address", sp.Arg, bad, why)
	case bad.IsValid():
		return nil, usagef("target %q: the block holds %v, %s; a probe goes to one host: name the unicast part of the block", sp.Arg, bad, why)
	case len(skip) == 0:
		return []scan.Block{{Spec: sp}}, nil
	}
	for _, a := range skip {
		o.skipped = append(o.skipped, fmt.Sprintf("target %q: leaving out %v, %s", sp.Arg, a, scan.Unusable(a, bcast)))
	}
	var parts []scan.Block
	for _, p := range scan.Without(sp.Prefix, skip) {
		part := *sp
		part.Prefix = p
		parts = append(parts, scan.Block{Spec: &part})
	}
	return parts, nil
}

// expandTargets lists every pair as a ping-style target with its source.
func expandTargets(o *options, blocks []scan.Block, sys network) ([]probe.Target, error) {
	set := scan.NewSet(blocks...)
	targets := make([]probe.Target, 0, set.Len())
	o.targets = o.targets[:0]
	for i := uint64(0); i < set.Len(); i++ {
		addr, port, sp := set.Pair(i)
		src, err := sourceFor(o, addr, sys)
		if err != nil {
			var u *usageError
			if errors.As(err, &u) {
				return nil, err
			}
			return nil, &failure{fmt.Errorf("%s: no route to %v: %v", sp.Arg, addr, err)}
		}
		host := sp.Host
		if host == "" {
			host = addr.String()
		}
		arg := sp.Arg
		if set.Len() > 1 || sp.Prefix.IsValid() && !sp.Prefix.IsSingleIP() || len(sp.Ports) > 1 || sp.Ports[0].Lo != sp.Ports[0].Hi {
			arg = netip.AddrPortFrom(addr, port).String()
			if sp.Host != "" {
				arg = net.JoinHostPort(sp.Host, strconv.Itoa(int(port)))
			}
		}
		targets = append(targets, probe.Target{Name: host, Addr: addr, Port: port, Src: src})
		o.targets = append(o.targets, targetSpec{arg: arg, host: host, port: port})
	}
	return targets, nil
}

func resolve(ctx context.Context, o *options, host, arg string, sys network) ([]netip.Addr, error) {
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
		return nil, usagef("target %q: cannot resolve %q: %s", arg, host, why)
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
		return o.source, nil
	}
	return sys.source(dst, o.iface)
}

// portBlockSize is how many source ports one run rotates through: enough
// that a port is not reused while the server may still remember it, few
// enough that concurrent runs rarely overlap.
const portBlockSize = 512

// portBlock picks this run's source ports: the fixed --sport, or a random
// block outside the kernel's ephemeral range.
func portBlock(o *options, sys network) (uint16, uint16, error) {
	if o.sport != 0 {
		return o.sport, o.sport, nil
	}
	lo, hi, err := sys.portRange()
	if err != nil {
		return 0, 0, &failure{err}
	}
	span := int(hi) - int(lo) + 1
	if span <= portBlockSize {
		return lo, hi, nil
	}
	var b [4]byte
	rand.Read(b[:])
	base := int(lo) + int(binary.BigEndian.Uint32(b[:])%uint32(span-portBlockSize+1))
	return uint16(base), uint16(base + portBlockSize - 1), nil
}

func privilegeFix(what string) string {
	exe, err := os.Executable()
	if err != nil {
		exe = "synprobe"
	}
	return fmt.Sprintf("%s: run with sudo, or grant the binary the capabilities once: sudo setcap cap_net_raw,cap_net_admin+ep %s", what, exe)
}
