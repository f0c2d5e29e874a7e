package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/synprobe/synprobe/internal/cli"
	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/trace"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// `synprobe trace HOST:PORT` (docs/trace.md): which hop drops the SYN,
// and which rewrites it. Its own flags; the engine is a probe.Client and
// the method package probe/trace.

const traceUsage = `Usage: synprobe trace [flags] HOST:PORT

Sends SYNs to HOST:PORT with rising TTLs, all on one source port, and
compares what each router quotes of the SYN with what was sent: where the
SYN is dropped or rejected, and which hop rewrites its MSS, options,
window, ECN or DSCP. Needs CAP_NET_RAW (sudo).

Flags:
%s
Exit status: 0 the destination answered SYN-ACK; 1 it refused (RST), a
router or host rejected the SYN (ICMP), or nothing answered; 2 bad input;
3 failure (privileges, no route, a SYN this host would not send).

Examples:
  sudo synprobe trace example.net:443
  sudo synprobe trace -q 1 --json 198.18.0.26:25
  sudo synprobe trace -6 --max-hops 12 --ecn --tos 0x20 example.net:80
`

// traceOptions are trace's flags.
type traceOptions struct {
	ipv4, ipv6 bool
	json       bool
	firstHop   int
	maxHops    int
	queries    int
	wait       time.Duration
	interval   time.Duration
	maxSilent  int
	tos        uint8
	window     uint16
	ecn        bool
	source     string
	iface      string
	pcap       string
	user       string
	keepRoot   bool
	help       bool
}

// newTraceFlagSet defines trace's flags over o: for the parse, the help,
// the man page and the completions.
func newTraceFlagSet(o *traceOptions) *pflag.FlagSet {
	fs := pflag.NewFlagSet("synprobe trace", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.BoolVarP(&o.ipv4, "ipv4", "4", false, "IPv4 only")
	fs.BoolVarP(&o.ipv6, "ipv6", "6", false, "IPv6 only")
	fs.BoolVar(&o.json, "json", false, "JSON Lines: a hop record per hop, then a trace record (docs/json.md)")
	fs.IntVarP(&o.firstHop, "first-hop", "f", 1, "first TTL probed")
	fs.IntVarP(&o.maxHops, "max-hops", "m", trace.DefaultMaxHops, "last TTL probed (at most 255)")
	fs.IntVarP(&o.queries, "queries", "q", trace.DefaultQueries, fmt.Sprintf("probes per hop (1 to %d)", trace.MaxQueries))
	o.wait, o.interval = trace.DefaultWait, trace.DefaultInterval
	fs.VarP(durationFlag{d: &o.wait}, "wait", "w", "how long each probe waits for its answer, a Go duration or seconds")
	fs.Var(durationFlag{d: &o.interval, zero: true}, "interval", "least time between two probes to one hop (routers rate-limit ICMP)")
	fs.IntVar(&o.maxSilent, "max-silent", trace.DefaultMaxSilent, "stop after this many hops in a row answer nothing")
	fs.Uint8Var(&o.tos, "tos", 0, "the SYN's TOS / traffic class byte (DSCP and ECN)")
	fs.Uint16Var(&o.window, "window", 0, "the SYN's window (default 64240)")
	fs.BoolVar(&o.ecn, "ecn", false, "ask for ECN (ECE and CWR set in the SYN)")
	fs.StringVarP(&o.source, "source", "S", "", "source address (one of this host's)")
	fs.StringVarP(&o.iface, "interface", "I", "", "send through this interface")
	fs.StringVar(&o.pcap, "pcap", "", "write every packet sent and received, timed as synprobe timed it, to the pcapng `FILE` (tcpdump -r, Wireshark)")
	fs.StringVarP(&o.user, "user", "Z", "", "the account a root run becomes after set-up (default: SUDO_UID's, else nobody)")
	fs.BoolVar(&o.keepRoot, "keep-root", false, "a root run stays uid 0 after set-up (its capabilities still go)")
	return fs
}

func parseTraceArgs(args []string) (*traceOptions, string, error) {
	o := &traceOptions{}
	fs := newTraceFlagSet(o)
	help, err := cli.Parse(fs, args)
	if err != nil {
		return nil, "", err
	}
	if help {
		o.help = true
		return o, fs.FlagUsagesWrapped(cli.HelpColumns), nil
	}
	switch {
	case fs.NArg() != 1:
		return nil, "", usagef("trace takes one HOST:PORT (got %d arguments)", fs.NArg())
	case o.ipv4 && o.ipv6:
		return nil, "", usagef("-4 and -6 exclude each other")
	case o.maxHops < 1 || o.maxHops > 255:
		return nil, "", usagef("--max-hops %d: want 1 to 255", o.maxHops)
	case o.firstHop < 1 || o.firstHop > o.maxHops:
		return nil, "", usagef("--first-hop %d: want 1 to --max-hops (%d)", o.firstHop, o.maxHops)
	case o.queries < 1 || o.queries > trace.MaxQueries:
		return nil, "", usagef("--queries %d: want 1 to %d", o.queries, trace.MaxQueries)
	case o.wait <= 0 || o.wait > time.Minute:
		return nil, "", usagef("--wait %v: want more than 0 and at most 1m", o.wait)
	case o.interval < 0 || o.interval > time.Minute:
		return nil, "", usagef("--interval %v: want 0 to 1m", o.interval)
	case o.maxSilent < 1 || o.maxSilent > 255:
		return nil, "", usagef("--max-silent %d: want 1 to 255", o.maxSilent)
	}
	return o, fs.Arg(0), nil
}

// traceTarget resolves HOST:PORT.
func traceTarget(ctx context.Context, o *traceOptions, arg string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(arg)
	if err != nil {
		return netip.AddrPort{}, usagef("target %q: want HOST:PORT ([ADDR]:PORT for IPv6)", arg)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, usagef("target %q: port %q: want 1 to 65535", arg, port)
	}
	family := "ip"
	if o.ipv4 {
		family = "ip4"
	} else if o.ipv6 {
		family = "ip6"
	}
	var addr netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addr = a.Unmap()
		if a.Zone() != "" {
			return netip.AddrPort{}, usagef("target %q: zoned addresses are not supported", arg)
		}
		if o.ipv4 && !addr.Is4() || o.ipv6 && !addr.Is6() {
			return netip.AddrPort{}, usagef("target %q is not of the family -4/-6 asks for", arg)
		}
	} else {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupNetIP(lctx, family, host)
		if err != nil || len(addrs) == 0 {
			why := "no address"
			var dnsErr *net.DNSError
			if errors.As(err, &dnsErr) {
				why = dnsErr.Err
			}
			return netip.AddrPort{}, usagef("target %q: cannot resolve %q: %s", arg, host, why)
		}
		addr = addrs[0].Unmap()
	}
	if !addr.IsValid() || addr.IsUnspecified() || addr.IsMulticast() || addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.AddrPort{}, usagef("target %q: %v is not a unicast address", arg, addr)
	}
	return netip.AddrPortFrom(addr, uint16(p)), nil
}

// traceMain runs `synprobe trace ARGS` and returns the exit status.
func traceMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, arg, err := parseTraceArgs(args)
	if err != nil {
		fmt.Fprintf(stderr, "synprobe trace: %v\n", err)
		return exitUsage
	}
	if o.help {
		fmt.Fprintf(stdout, traceUsage, arg)
		return exitOK
	}
	dst, err := traceTarget(ctx, o, arg)
	if err != nil {
		fmt.Fprintf(stderr, "synprobe trace: %v\n", err)
		return exitUsage
	}
	var src netip.Addr
	if o.source != "" {
		if src, err = netip.ParseAddr(o.source); err != nil || src.Is4() != dst.Addr().Is4() {
			fmt.Fprintf(stderr, "synprobe trace: --source %q: want an address of the target's family\n", o.source)
			return exitUsage
		}
	}
	// The caller's rules, ping's own (checkCaller: a source of the
	// host's own, used as the host would; -Z is root's choice), and who
	// the run becomes once set up: decided before anything is opened.
	co := &options{source: src, user: o.user, keepRoot: o.keepRoot, mark: defaultMark}
	sys := &system{}
	err = checkInterface(o.iface, netip.PrefixFrom(dst.Addr(), dst.Addr().BitLen()))
	if err == nil {
		err = checkCaller(co, sys)
	}
	src = co.source // a link-local source's zone checked, and gone
	if err == nil && src.IsValid() {
		_, err = sourceFor(co, dst.Addr(), sys)
	}
	if err == nil {
		// The source's checks, as ping's: the routes' source when -S
		// is not given.
		from := src
		if !from.IsValid() {
			from, _ = sys.source(dst.Addr(), o.iface)
		}
		scope, policy := newSourceChecks(sys, o.iface)
		scope.check(from, dst.Addr())
		policy.check(from, dst.Addr())
		if err = cmp.Or(scope.err, policy.err); err == nil {
			scope.warn(stderr)
		}
	}
	if err != nil {
		return traceFailed(stderr, err)
	}
	drop := co.drop
	// One source port: the trace keeps it for every probe.
	rec := &laterRecorder{}
	// rst probes alone: no guard, and no mark (SO_MARK needs
	// CAP_NET_ADMIN before Linux 5.17).
	c, err := probe.NewClient(&probe.ClientConfig{Ports: 1, NoGuard: true, Interface: o.iface, Recorder: rec})
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			fmt.Fprintf(stderr, "synprobe trace: %s\n", cli.PrivilegeFix("raw sockets need CAP_NET_RAW"))
		} else {
			fmt.Fprintf(stderr, "synprobe trace: %v\n", err)
		}
		return exitFailure
	}
	defer c.Close()
	// Set up: the rest needs no privilege (rst mode has no RST guard).
	// A root run becomes -Z's user, the sudo user or nobody, as
	// synprobe's others do (docs/privileges.md); any other caller stays
	// who it is, without capabilities.
	if err := cli.DropPrivileges(drop); err != nil {
		fmt.Fprintf(stderr, "synprobe trace: cannot give up privileges: %v\n", err)
		return exitFailure
	}
	// The capture file is opened as the user (after the drop).
	out, err := openPcap(&options{pcap: o.pcap})
	if err != nil {
		return traceFailed(stderr, err)
	}
	defer out.close()
	if out != nil {
		rec.set(out)
	}
	w := &traceWriter{w: stdout, json: o.json, dst: dst, arg: arg}
	cfg := &trace.Config{
		FirstHop: o.firstHop, MaxHops: o.maxHops, Queries: o.queries,
		Wait: o.wait, Interval: o.interval, MaxSilent: o.maxSilent,
		SYN:   probe.ProbeOptions{TOS: o.tos, Window: o.window, ECN: o.ecn, Source: src},
		OnHop: w.hop,
	}
	if !o.json {
		probes := "probes"
		if o.queries == 1 {
			probes = "probe"
		}
		fmt.Fprintf(stdout, "synprobe trace to %s, %d hops max, %d %s per hop\n", dst, o.maxHops, o.queries, probes)
	}
	rep, err := trace.Run(ctx, c, dst, cfg)
	interrupted := err != nil && ctx.Err() != nil
	if err != nil && !interrupted {
		// A SYN this host would not send (trace.ErrSend), a client that
		// failed, or bad settings the flags let through.
		fmt.Fprintf(stderr, "synprobe trace: %s\n", strings.TrimPrefix(err.Error(), "trace: "))
		return exitFailure
	}
	w.final(rep, interrupted)
	c.Close() // its last packets go in the file too
	if err := out.close(); err != nil {
		fmt.Fprintf(stderr, "synprobe trace: %v\n", err)
		return exitFailure
	}
	if w.err != nil {
		if errors.Is(w.err, syscall.EPIPE) {
			return exitNotOpen
		}
		fmt.Fprintf(stderr, "synprobe trace: writing the output: %v\n", w.err)
		return exitFailure
	}
	if rep.State == probe.StateOpen && !interrupted {
		return exitOK
	}
	return exitNotOpen
}

// traceWriter prints hops and the verdict, as text or JSON Lines.
type traceWriter struct {
	w    io.Writer
	json bool
	dst  netip.AddrPort
	arg  string
	err  error
}

func (t *traceWriter) write(s string) {
	if t.err == nil {
		_, t.err = io.WriteString(t.w, s)
	}
}

func (t *traceWriter) writeJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		t.err = err
		return
	}
	t.write(string(b) + "\n")
}

// Records of `synprobe trace --json` (docs/json.md).
type (
	traceChange struct {
		Field     string `json:"field"`
		Sent      string `json:"sent"`
		Seen      string `json:"seen"`
		New       *bool  `json:"new,omitempty"`
		After     *int   `json:"after,omitempty"`
		AfterFrom string `json:"after_from,omitempty"`
		At        *int   `json:"at,omitempty"`
		From      string `json:"at_from,omitempty"`
	}
	traceHopRecord struct {
		Type       string        `json:"type"`
		TTL        int           `json:"ttl"`
		From       string        `json:"from,omitempty"`
		AlsoFrom   []string      `json:"also_from,omitempty"`
		Probes     int           `json:"probes"`
		Answered   int           `json:"answered"`
		RTTs       []*float64    `json:"rtt_us"`
		Clock      string        `json:"clock,omitempty"`
		Reply      string        `json:"reply,omitempty"`
		QuoteLen   *int          `json:"quote_len,omitempty"`
		Partial    *bool         `json:"partial,omitempty"`
		QuoteError string        `json:"quote_error,omitempty"`
		Varies     bool          `json:"varies,omitempty"`
		Changes    []traceChange `json:"changes"`
	}
	traceSynAckRecord struct {
		Flags   string        `json:"flags"`
		Win     uint16        `json:"win"`
		MSS     *uint16       `json:"mss,omitempty"`
		WScale  *int          `json:"wscale,omitempty"`
		SACK    bool          `json:"sack"`
		TS      bool          `json:"ts"`
		TTL     uint8         `json:"ttl"`
		TOS     uint8         `json:"tos"`
		Changes []traceChange `json:"changes"`
	}
	traceEndRecord struct {
		Type        string             `json:"type"`
		Target      string             `json:"target"`
		Addr        string             `json:"addr"`
		Port        uint16             `json:"port"`
		Src         string             `json:"src,omitempty"`
		Sport       uint16             `json:"sport,omitempty"`
		State       string             `json:"state"`
		Reason      string             `json:"reason"`
		Hop         int                `json:"hop,omitempty"`
		From        string             `json:"from,omitempty"`
		LastHop     int                `json:"last_hop"`
		LastFrom    string             `json:"last_from,omitempty"`
		Probes      int                `json:"probes"`
		Changes     []traceChange      `json:"changes"`
		SynAck      *traceSynAckRecord `json:"synack,omitempty"`
		Interrupted bool               `json:"interrupted,omitempty"`
	}
)

// replyName names what answered a probe: its reason (syn-ack, rst, an
// ICMP name).
func replyName(h *trace.Hop) string {
	for _, r := range h.Replies {
		if r.Answered() {
			return r.Reason
		}
	}
	return ""
}

func usString(d time.Duration) float64 { return math.Round(float64(d.Nanoseconds())) / 1000 }

func (t *traceWriter) hop(h *trace.Hop) {
	if t.json {
		t.writeJSON(hopJSON(h))
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%2d  ", h.TTL)
	if h.From.IsValid() {
		b.WriteString(h.From.String())
	}
	for _, r := range h.Replies {
		if !r.Answered() {
			b.WriteString("  *")
			continue
		}
		fmt.Fprintf(&b, "  %.3f ms", float64(r.RTT.Nanoseconds())/1e6)
	}
	for _, a := range h.Others {
		fmt.Fprintf(&b, "  (also %v)", a)
	}
	if f := h.Final(); f != nil {
		fmt.Fprintf(&b, "  %s", f.Reason)
	}
	switch {
	case h.Quote != nil && h.Quote.Partial():
		fmt.Fprintf(&b, "  [quote %d B, partial]", h.Quote.Len)
	case h.Quote != nil:
		fmt.Fprintf(&b, "  [quote %d B]", h.Quote.Len)
	case h.QuoteErr != nil:
		fmt.Fprintf(&b, "  [quote unusable: %v]", strings.TrimPrefix(h.QuoteErr.Error(), "trace: "))
	}
	for _, c := range h.Changes {
		if !c.New {
			continue
		}
		fmt.Fprintf(&b, "  %s", c.Change)
		if c.After != h.TTL-1 {
			fmt.Fprintf(&b, " (after hop %d)", c.After)
		}
	}
	if h.Varies {
		b.WriteString("  (quotes differ)")
	}
	b.WriteString("\n")
	t.write(b.String())
}

func hopJSON(h *trace.Hop) traceHopRecord {
	r := traceHopRecord{Type: "hop", TTL: h.TTL, Probes: len(h.Replies), Answered: h.Answered(),
		RTTs: []*float64{}, Varies: h.Varies, Changes: []traceChange{}, Reply: replyName(h)}
	if h.From.IsValid() {
		r.From = h.From.String()
	}
	for _, a := range h.Others {
		r.AlsoFrom = append(r.AlsoFrom, a.String())
	}
	kernel := true
	for _, rp := range h.Replies {
		if !rp.Answered() {
			r.RTTs = append(r.RTTs, nil)
			continue
		}
		v := usString(rp.RTT)
		r.RTTs = append(r.RTTs, &v)
		kernel = kernel && rp.Kernel
	}
	if r.Answered > 0 {
		r.Clock = map[bool]string{true: "kernel", false: "user"}[kernel]
	}
	if h.Quote != nil {
		n, p := h.Quote.Len, h.Quote.Partial()
		r.QuoteLen, r.Partial = &n, &p
	} else if h.QuoteErr != nil {
		r.QuoteError = strings.TrimPrefix(h.QuoteErr.Error(), "trace: ")
	}
	for _, c := range h.Changes {
		isNew, after := c.New, c.After
		r.Changes = append(r.Changes, traceChange{Field: c.Field, Sent: c.Sent, Seen: c.Seen, New: &isNew, After: &after})
	}
	return r
}

func (t *traceWriter) final(rep *trace.Report, interrupted bool) {
	if t.json {
		t.writeJSON(traceJSON(t.arg, rep, interrupted))
		return
	}
	var b strings.Builder
	verdict := rep.State.String() + " (" + rep.Reason + ")"
	switch {
	case interrupted:
		fmt.Fprintf(&b, "interrupted after %d probes", rep.Probes)
	case rep.End > 0 && rep.State == probe.StateFiltered:
		fmt.Fprintf(&b, "%s: %s at hop %d", verdict, rep.From, rep.End)
		if rep.From != rep.Target.Addr() {
			fmt.Fprintf(&b, ", a router, rejects the SYN")
		}
	case rep.End > 0:
		fmt.Fprintf(&b, "%s from %s at hop %d", verdict, rep.From, rep.End)
	case rep.LastHop > 0:
		fmt.Fprintf(&b, "%s: no answer past hop %d (%s), the last that answered", verdict, rep.LastHop, rep.LastFrom)
	default:
		fmt.Fprintf(&b, "%s: no hop answered", verdict)
	}
	b.WriteString("\n")
	if sa := rep.SynAck; sa != nil {
		fmt.Fprintf(&b, "SYN-ACK: %s win %d%s", sa.Flags, sa.Window, optionsText(sa.Options))
		for _, c := range sa.Changes {
			fmt.Fprintf(&b, "  %s", c)
		}
		b.WriteString("\n")
	}
	for _, c := range rep.Changes {
		after := "this host"
		if c.After > 0 {
			after = fmt.Sprintf("hop %d", c.After)
			if c.AfterFrom.IsValid() {
				after += " (" + c.AfterFrom.String() + ")"
			}
		}
		fmt.Fprintf(&b, "changed: %s between %s and hop %d (%s)\n", c.Change, after, c.At, c.AtFrom)
	}
	t.write(b.String())
}

func optionsText(o wire.SYNOptions) string {
	var s string
	if o.MSS != 0 {
		s += " mss " + strconv.Itoa(int(o.MSS))
	}
	if o.WScale >= 0 {
		s += " wscale " + strconv.Itoa(o.WScale)
	}
	if o.SACKPermitted {
		s += " sack-perm"
	}
	if o.Timestamps {
		s += " ts"
	}
	return s
}

func traceJSON(arg string, rep *trace.Report, interrupted bool) traceEndRecord {
	r := traceEndRecord{Type: "trace", Target: arg, Addr: rep.Target.Addr().String(), Port: rep.Target.Port(),
		Sport: rep.SrcPort, State: rep.State.String(), Reason: rep.Reason, Hop: rep.End, LastHop: rep.LastHop,
		Probes: rep.Probes, Changes: []traceChange{}, Interrupted: interrupted}
	if rep.Src.IsValid() {
		r.Src = rep.Src.String()
	}
	if rep.From.IsValid() {
		r.From = rep.From.String()
	}
	if rep.LastFrom.IsValid() {
		r.LastFrom = rep.LastFrom.String()
	}
	for _, c := range rep.Changes {
		after, at := c.After, c.At
		tc := traceChange{Field: c.Field, Sent: c.Sent, Seen: c.Seen, After: &after, At: &at, From: c.AtFrom.String()}
		if c.AfterFrom.IsValid() {
			tc.AfterFrom = c.AfterFrom.String()
		}
		r.Changes = append(r.Changes, tc)
	}
	if sa := rep.SynAck; sa != nil {
		s := &traceSynAckRecord{Flags: sa.Flags.String(), Win: sa.Window, SACK: sa.Options.SACKPermitted, TS: sa.Options.Timestamps,
			TTL: sa.TTL, TOS: sa.TOS, Changes: []traceChange{}}
		if sa.Options.MSS != 0 {
			m := sa.Options.MSS
			s.MSS = &m
		}
		if sa.Options.WScale >= 0 {
			ws := sa.Options.WScale
			s.WScale = &ws
		}
		for _, c := range sa.Changes {
			s.Changes = append(s.Changes, traceChange{Field: c.Field, Sent: c.Sent, Seen: c.Seen})
		}
		r.SynAck = s
	}
	return r
}

// traceFailed writes err in one line and returns its exit status: 2 for
// bad input, else 3.
func traceFailed(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "synprobe trace: %v\n", err)
	var u *cli.UsageError
	if errors.As(err, &u) {
		return exitUsage
	}
	return exitFailure
}
