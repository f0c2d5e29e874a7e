package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/pflag"

	"github.com/synprobe/synprobe/internal/cli"
	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/listener"
)

// synprobe listener HOST:PORT: is this listener healthy, not just open?
// (docs/listener.md). The SYN-ACK's retransmission schedule with the
// third ACK withheld, and, where a SYN gets silence, a bare ACK that
// tells a listener refusing connections from a firewall.

type listenerOptions struct {
	ipv4     bool
	ipv6     bool
	pcap     string
	observe  time.Duration
	timeout  time.Duration
	json     bool
	iface    string
	user     string
	keepRoot bool
	help     bool
}

func newListenerFlagSet(o *listenerOptions) *pflag.FlagSet {
	fs := pflag.NewFlagSet("synprobe listener", pflag.ContinueOnError)
	fs.SortFlags = false
	o.observe, o.timeout = probe.DefaultObserve, time.Second
	fs.Var(durationFlag{d: &o.observe}, "observe", "how long to watch for the SYN-ACK's retransmissions (Linux resends at about 1, 3 and 7 s), a Go duration or seconds")
	fs.VarP(durationFlag{d: &o.timeout}, "timeout", "w", "how long to wait for the answer to the SYN and to the bare ACK")
	fs.BoolVar(&o.json, "json", false, "one JSON record {\"type\":\"listener\"} (docs/json.md)")
	fs.BoolVarP(&o.ipv4, "ipv4", "4", false, "resolve the name to IPv4 only")
	fs.BoolVarP(&o.ipv6, "ipv6", "6", false, "resolve the name to IPv6 only")
	fs.StringVar(&o.pcap, "pcap", "", "write every packet sent and received, timed as synprobe timed it, to the pcapng `FILE` (tcpdump -r, Wireshark)")
	fs.StringVarP(&o.iface, "interface", "I", "", "send from this network device only")
	fs.StringVarP(&o.user, "user", "Z", "", "the account a root run becomes after set-up (default: SUDO_UID's, else nobody)")
	fs.BoolVar(&o.keepRoot, "keep-root", false, "a root run stays uid 0 after set-up (its capabilities still go)")
	fs.BoolVarP(&o.help, "help", "h", false, "this help")
	return fs
}

const listenerUsage = `Usage: synprobe listener [flags] HOST:PORT

Tests one listener: the third ACK sent late on a first SYN (silent, dropped:
accept queue full, or reset), the SYN-ACK's retransmissions while the third
ACK is withheld, SYN cookies (three more SYNs on one 4-tuple), and, when a
SYN gets no answer, a bare ACK that tells a listener refusing new
connections (accept queue full) from a firewall. It takes --observe (default
8.5s) plus about 4 s.
Exit status: 0 healthy, 1 a problem found, 2 bad input, 3 failure.

Flags:
`

const listenerTail = `
Examples:
  sudo synprobe listener example.org:443          is it healthy, not just open?
  sudo synprobe listener --json --observe 4s 198.18.0.2:80
`

// listenerMain runs synprobe listener with args (after the verb).
func listenerMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	code, err := runListener(ctx, args, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "synprobe listener: %v\n", err)
		var u *cli.UsageError
		if errors.As(err, &u) {
			return exitUsage
		}
		return exitFailure
	}
	return code
}

// listenerReport is what synprobe listener found, and the JSON record.
type listenerReport struct {
	Type        string             `json:"type"` // "listener"
	Target      string             `json:"target"`
	Addr        string             `json:"addr"`
	Port        uint16             `json:"port"`
	State       string             `json:"state"` // the SYN's verdict
	Reason      string             `json:"reason"`
	RTTus       *float64           `json:"rtt_us,omitempty"`
	Clock       string             `json:"clock,omitempty"`
	Observe     float64            `json:"observe_s"`
	Retransmits []float64          `json:"synack_retransmits_s"` // after the first SYN-ACK
	SynCookies  *bool              `json:"syncookies"`           // null: undecided
	Tests       []cookieTestRecord `json:"syncookie_tests,omitempty"`
	AfterACK    string             `json:"after_ack,omitempty"` // silent, dropped, reset, not-sent
	DeferAccept bool               `json:"defer_accept,omitempty"`
	AcceptQueue string             `json:"accept_queue"` // ok, full, reset, unknown
	BareACK     *bareACKFinding    `json:"bare_ack,omitempty"`
	Findings    []string           `json:"findings"`
	Healthy     bool               `json:"healthy"`
}

type cookieTestRecord struct {
	Name     string `json:"name"` // isn, tsval, options, retransmission
	Vote     string `json:"vote"` // cookie, stateful, undecided
	Evidence string `json:"evidence"`
}

type bareACKFinding struct {
	State  string   `json:"state"` // closed: a RST came back; filtered: none
	Reason string   `json:"reason"`
	RTTus  *float64 `json:"rtt_us,omitempty"`
}

func runListener(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	var o listenerOptions
	fs := newListenerFlagSet(&o)
	help, err := cli.Parse(fs, args)
	if err != nil {
		return 0, err
	}
	if help || o.help {
		fmt.Fprint(stdout, listenerUsage+fs.FlagUsagesWrapped(cli.HelpColumns)+listenerTail)
		return exitOK, nil
	}
	switch {
	case fs.NArg() != 1:
		return 0, cli.Usagef("want one HOST:PORT, got %d arguments (synprobe listener --help)", fs.NArg())
	case o.observe < 1200*time.Millisecond || o.observe > 10*time.Minute:
		return 0, cli.Usagef("--observe %v: must be 1.2s to 10m (Linux's first SYN-ACK retransmission comes at about 1 s)", o.observe)
	case o.timeout <= 0 || o.timeout > time.Minute:
		return 0, cli.Usagef("--timeout %v: must be above 0 and at most 1m", o.timeout)
	}
	if o.ipv4 && o.ipv6 {
		return 0, cli.Usagef("-4 and -6 exclude each other")
	}
	if fs.Changed("pcap") && o.pcap == "" {
		return 0, cli.Usagef("--pcap needs a file name")
	}
	network := "ip"
	switch {
	case o.ipv4:
		network = "ip4"
	case o.ipv6:
		network = "ip6"
	}
	dst, name, err := listenerTarget(ctx, fs.Arg(0), network)
	if err != nil {
		return 0, err
	}
	if err := checkInterface(o.iface, netip.PrefixFrom(dst.Addr(), dst.Addr().BitLen())); err != nil {
		return 0, err
	}
	// The routes' source, checked as ping's.
	sys := &system{}
	if src, err := sys.source(dst.Addr(), o.iface); err == nil {
		scope, policy := newSourceChecks(sys, o.iface)
		scope.check(src, dst.Addr())
		policy.check(src, dst.Addr())
		if err := cmp.Or(scope.err, policy.err); err != nil {
			return 0, err
		}
		scope.warn(stderr)
	}
	drop, err := cli.PlanCaller(os.Getuid(), o.user, o.keepRoot, os.Getenv, cli.LookupAccount)
	if err != nil {
		return 0, err
	}
	// Set-up: the client's sockets and its RST guard, which keeps the
	// kernel's RST to the SYN-ACK off the wire while we withhold the ACK.
	rec := &laterRecorder{}
	client, err := probe.NewClient(&probe.ClientConfig{Guard: true, Interface: o.iface, Ports: 4, Recorder: rec})
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return 0, errors.New(cli.PrivilegeFix("raw sockets need CAP_NET_RAW, the RST guard CAP_NET_ADMIN"))
		}
		return 0, err
	}
	defer client.Close() // resets a connection still held
	if err := cli.DropPrivileges(drop); err != nil {
		return 0, err
	}
	// The capture file is opened as the user (after the drop).
	out, err := openPcap(&options{pcap: o.pcap})
	if err != nil {
		return 0, err
	}
	defer out.close()
	if out != nil {
		rec.set(out)
	}

	res, err := listener.Check(ctx, client, dst, &listener.Config{Observe: o.observe, Timeout: o.timeout})
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "synprobe listener: interrupted: nothing to report")
		return exitNotOpen, nil
	}
	if errors.Is(err, probe.ErrNotUnicast) { // the client's own check: bad input
		return 0, cli.Usagef("%s", strings.TrimPrefix(err.Error(), "probe: "))
	}
	if err != nil {
		return 0, err
	}
	rep := newListenerReport(name, res)
	if o.json {
		writeListenerJSON(stdout, rep)
	} else {
		printListener(stdout, rep)
	}
	client.Close() // its last RSTs go in the file too
	if err := out.close(); err != nil {
		return 0, err
	}
	if !rep.Healthy {
		return exitNotOpen, nil
	}
	return exitOK, nil
}

// newListenerReport is the record of what listener.Check found.
func newListenerReport(name string, res *listener.Report) *listenerReport {
	r := res.SYN
	rep := &listenerReport{Type: "listener", Target: name, Addr: res.Target.Addr().String(), Port: res.Target.Port(),
		State: r.State.String(), Reason: r.Reason, Observe: res.Observe.Seconds(), Retransmits: []float64{},
		SynCookies: res.SynCookies, AcceptQueue: res.AcceptQueue.String(), Findings: res.Findings, Healthy: res.Healthy}
	if r.State == probe.StateOpen {
		rtt := float64(r.RTT.Nanoseconds()) / 1e3
		rep.RTTus = &rtt
		rep.Clock = clockName(r.KernelClock)
	}
	if r.State == probe.StateOpen {
		rep.AfterACK = res.AfterACK.String()
		rep.DeferAccept = res.DeferAccept
	}
	for _, d := range res.Retransmits {
		rep.Retransmits = append(rep.Retransmits, roundMicro(d.Seconds()))
	}
	for _, t := range res.Tests {
		rep.Tests = append(rep.Tests, cookieTestRecord{Name: t.Name, Vote: t.Vote.String(), Evidence: t.Evidence})
	}
	if a := res.BareACK; a != nil {
		rep.BareACK = &bareACKFinding{State: a.State.String(), Reason: a.Reason}
		if a.State == probe.StateClosed {
			rtt := float64(a.RTT.Nanoseconds()) / 1e3
			rep.BareACK.RTTus = &rtt
		}
	}
	if rep.Findings == nil {
		rep.Findings = []string{}
	}
	return rep
}

// writeListenerJSON writes rep as one JSON line (docs/json.md).
func writeListenerJSON(w io.Writer, rep *listenerReport) {
	b, _ := json.Marshal(rep)
	fmt.Fprintf(w, "%s\n", b)
}

func printListener(w io.Writer, r *listenerReport) {
	fmt.Fprintf(w, "listener %s (%s port %d)\n", r.Target, r.Addr, r.Port)
	fmt.Fprintf(w, "  syn:          %s (%s)", r.State, r.Reason)
	if r.RTTus != nil {
		fmt.Fprintf(w, " rtt=%s ms clock=%s", ms(time.Duration(*r.RTTus*1e3)), r.Clock)
	}
	fmt.Fprintln(w)
	if r.State == "open" {
		s := make([]string, len(r.Retransmits))
		for i, v := range r.Retransmits {
			s[i] = strconv.FormatFloat(v, 'f', 2, 64) + " s"
		}
		if len(s) == 0 {
			s = []string{"none"}
		}
		fmt.Fprintf(w, "  syn-ack again: %s (after the first; watched %.1f s)\n", strings.Join(s, ", "), r.Observe)
	}
	if r.AfterACK != "" {
		fmt.Fprintf(w, "  late ack:     %s", r.AfterACK)
		if r.DeferAccept {
			fmt.Fprint(w, " (the listener defers accept until data comes)")
		}
		fmt.Fprintln(w)
	}
	if r.BareACK != nil {
		what := "no answer (" + r.BareACK.Reason + ")"
		if r.BareACK.State == "closed" {
			what = "answered with RST: the host's TCP got it"
		}
		fmt.Fprintf(w, "  bare ack:     %s\n", what)
	}
	if len(r.Tests) > 0 {
		verdict := "undecided"
		if r.SynCookies != nil {
			verdict = map[bool]string{true: "yes", false: "no"}[*r.SynCookies]
		}
		fmt.Fprintf(w, "  syn cookies:  %s\n", verdict)
		for _, t := range r.Tests {
			fmt.Fprintf(w, "    %-15s %-10s %s\n", t.Name, t.Vote, wrap(t.Evidence, cli.HelpColumns-31, strings.Repeat(" ", 31)))
		}
	}
	fmt.Fprintf(w, "  accept queue: %s\n", r.AcceptQueue)
	for _, f := range r.Findings {
		fmt.Fprintf(w, "  - %s\n", wrap(f, cli.HelpColumns-4, "    "))
	}
	verdict := "healthy"
	if !r.Healthy {
		verdict = "a problem found"
	}
	fmt.Fprintf(w, "  %s\n", verdict)
}

func roundMicro(v float64) float64 { return float64(int64(v*1e6+0.5)) / 1e6 }

// listenerTarget parses HOST:PORT, resolving a name to its first address.
func listenerTarget(ctx context.Context, arg, network string) (netip.AddrPort, string, error) {
	host, port, err := net.SplitHostPort(arg)
	if err == nil && strings.Contains(host, "/") {
		return netip.AddrPort{}, "", cli.Usagef("%s: one address, not a block (synprobe scan takes blocks)", arg)
	}
	if err != nil {
		return netip.AddrPort{}, "", cli.Usagef("%s: want HOST:PORT ([ADDR]:PORT for IPv6)", arg)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, "", cli.Usagef("%s: port %q: must be 1 to 65535", arg, port)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if why := probe.Unusable(a, nil); why != "" {
			return netip.AddrPort{}, "", cli.Usagef("%s: %s, not one host's", arg, why)
		}
		if network == "ip4" && !a.Unmap().Is4() || network == "ip6" && a.Unmap().Is4() {
			return netip.AddrPort{}, "", cli.Usagef("%s: not an %s address, but -%s was given", arg, map[string]string{"ip4": "IPv4", "ip6": "IPv6"}[network], network[2:])
		}
		return netip.AddrPortFrom(a.Unmap(), uint16(p)), arg, nil
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(rctx, network, host)
	if err != nil || len(addrs) == 0 {
		return netip.AddrPort{}, "", cli.Usagef("%s: cannot resolve %q", arg, host)
	}
	return netip.AddrPortFrom(addrs[0].Unmap(), uint16(p)), arg, nil
}

// wrap breaks s into lines of at most width columns at spaces, the lines
// after the first indented by indent.
func wrap(s string, width int, indent string) string {
	var b strings.Builder
	col := 0
	for i, word := range strings.Fields(s) {
		n := utf8.RuneCountInString(word)
		switch {
		case i == 0:
		case col+1+n > width:
			b.WriteString("\n" + indent)
			col = 0
		default:
			b.WriteByte(' ')
			col++
		}
		b.WriteString(word)
		col += n
	}
	return b.String()
}
