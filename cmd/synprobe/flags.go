package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/synprobe/synprobe/internal/cli"
	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/scan"
)

// defaultMark is the SO_MARK of our packets in the ack and fin modes: the
// RST guard drops the kernel's RSTs but lets packets with this mark pass.
// ASCII "SYNP".
const defaultMark = 0x53594e50

// Bounds of numeric flags whose extremes would not be probing any more:
// each sender is an OS thread (Go allows 10,000: --senders 30000 was a
// fatal error), and a sender waits for its next token whole, so a slower
// rate than one a second would hold off even Ctrl-C; no machine sends a
// billion probes a second.
const (
	maxSenders = 256
	minRate    = 1
	maxRate    = 1e9
)

// usageError is bad input: exit status 2.
type usageError = cli.UsageError

func usagef(format string, args ...any) error { return cli.Usagef(format, args...) }

// options is the parsed command line.
type options struct {
	verb     verb
	specs    []scan.Spec  // the TARGET arguments, parsed (-f files are read later)
	targets  []targetSpec // ping mode: one per (host, port) pair
	count    int
	interval time.Duration
	timeout  time.Duration
	quiet    bool
	json     bool
	ipv4     bool
	ipv6     bool
	modeName string
	mode     probe.Mode

	hold         time.Duration
	dataArg      string
	data         []byte
	closeTimeout time.Duration
	trace        bool
	explain      bool
	mark         uint32
	cleanup      bool

	// Privileges (privileges.go).
	user       string       // -Z: the account a root run becomes after set-up
	keepRoot   bool         // a root run stays uid 0 (capabilities still go)
	restricted bool         // the caller is not root: checkCaller's rules apply
	drop       cli.DropSpec // what ending set-up gives up

	mss          uint16 // 0: per family default
	window       uint16
	wscale       int
	noSACK       bool
	noTimestamps bool
	noOptions    bool
	ecn          bool
	ttl          uint8
	tos          uint8
	sport        uint16
	source       netip.Addr
	iface        string

	// Scans.
	files          []string
	rate           float64
	retries        int
	openOnly       bool
	mismatchesOnly bool
	expect         string
	senders        int
	intervalSet    bool // -i given

	pcap string // --pcap FILE (pcap.go)

	help, version bool
}

// targetSpec is one TARGET argument: host and port as given.
type targetSpec struct {
	arg  string
	host string
	port uint16
	// explain says what a bare ACK found where SYNs got silence
	// (--explain), for the summary; explainReply the answer's reason
	// (rst-to-ack, timeout, an ICMP name) or "error".
	explain, explainReply string
}

// verb is what a run does: ping (the default) or scan. serve is a
// program of its own (serve.go).
type verb string

const (
	verbPing verb = "ping"
	verbScan verb = "scan"
)

// verbs lists synprobe's own verbs, the default first.
var verbs = []verb{verbPing, verbScan}

// onlyFor names the flags that belong to one verb; every other flag is
// both verbs'. A flag given to the other verb is refused (exit 2) with
// these words: it names the flag, the verb it belongs to, and the way
// to get what it does.
var onlyFor = map[string]struct {
	verb verb
	why  string // said when the flag is given to the other verb
}{
	"count":         {verbPing, "a scan probes each pair once (--retries sends again to pairs that did not answer)"},
	"interval":      {verbPing, "a scan paces its probes with --rate"},
	"mode":          {verbPing, "a scan runs in rst mode; to complete or close connections with many pairs, ping them in rounds: synprobe --mode fin -c 1 TARGET..."},
	"hold":          {verbPing, "a scan runs in rst mode: synprobe --mode fin --hold DURATION -c 1 TARGET..."},
	"data":          {verbPing, "a scan runs in rst mode: synprobe --mode fin --data TEXT -c 1 TARGET..."},
	"close-timeout": {verbPing, "a scan runs in rst mode: synprobe --mode fin -c 1 TARGET..."},
	"trace":         {verbPing, "a scan draws no ladders: synprobe --mode fin --trace -c 1 TARGET..."},
	"explain":       {verbPing, "ping a silent port with --explain: synprobe --explain -c 1 HOST:PORT"},
	"mark":          {verbPing, "a scan runs in rst mode, which needs no mark"},
	"cleanup":       {verbPing, "synprobe --cleanup"},
	"rate":          {verbScan, "ping paces its rounds with -i; to scan: synprobe scan --rate N TARGET..."},
	"retries":       {verbScan, "ping sends -c probes to every target; to scan: synprobe scan --retries N TARGET..."},
	"open":          {verbScan, "ping prints every probe; to list open ports: synprobe scan --open TARGET..."},
	"mismatches":    {verbScan, "ping checks no expectations; to check them: synprobe scan --mismatches TARGET=STATE..."},
	"expect":        {verbScan, "expectations are checked by scans: synprobe scan --expect STATE TARGET..."},
	"senders":       {verbScan, "ping sends from one thread; to scan: synprobe scan --senders N TARGET..."},
}

const pingHead = `Usage: synprobe [ping] [flags] TARGET...
       synprobe scan [flags] TARGET...     (synprobe scan --help)
       synprobe serve --config.file FILE   (synprobe serve --help)
       synprobe trace [flags] HOST:PORT    (synprobe trace --help)
       synprobe listener [flags] HOST:PORT (synprobe listener --help)
       synprobe completion bash|zsh|fish   synprobe man

Measure TCP handshakes on the wire: send crafted SYNs from raw sockets, time
the SYN -> SYN-ACK round trip with kernel timestamps, and report each port as
open (SYN-ACK), closed (RST) or filtered (timeout or ICMP error).

synprobe TARGET... pings, as ping does: a probe to every pair each interval,
until interrupted or -c rounds. TARGET is host:PORTS, [ipv6]:PORTS or
ADDR/PREFIX:PORTS (IPv4 CIDR, or a small IPv6 range), PORTS a list such as
22,80,8000-8010: every address and port is a target, at most 4096.
JSON Lines (--json): a "probe" line per probe, a "summary" per target.

Flags:
`

const pingTail = `
Exit status: 0 every target answered open; 1 some target was closed, filtered
or never answered; 2 bad input; 3 runtime failure (privileges, sockets).

Examples:
  sudo synprobe example.org:443              probe once a second until Ctrl-C
  sudo synprobe -c 5 -i 0.2 198.18.0.2:80    five probes, 200 ms apart
  sudo synprobe -6 -c 3 --json host:22       IPv6, JSON Lines for scripts
  sudo synprobe -c 1 -q db1:5432 db2:5432 && echo both listening
  sudo synprobe --mode fin --trace -c 1 host:80   how does the server close?
`

const scanHead = `Usage: synprobe scan [flags] TARGET...

Scan: one probe per address and port (plus --retries for the silent ones), in
a random order across hosts and ports, at --rate probes per second; results
grouped by host and sorted by port, hosts that never answered in one line.

TARGET is host:PORTS, [ipv6]:PORTS, ADDR/PREFIX:PORTS (IPv4 CIDR) or
[ipv6/PREFIX]:PORTS (up to /112), PORTS a list such as 22,80,8000-8100,
optionally followed by =open, =closed or =filtered: what to expect. The most
specific target names a pair. JSON Lines (--json): a "result" line per pair,
"mismatch" lines, one "scan-summary".

Flags:
`

const scanTail = `
Exit status: 0 the scan completed (without expectations), or every pair is as
expected; 1 a pair differs from its expectation, or the scan was interrupted;
2 bad input; 3 runtime failure, or this host refused to send a probe.

Examples:
  sudo synprobe scan --open 198.18.1.0/24:22,80,443    open ports of a /24
  sudo synprobe scan --expect closed fw:1-1024 fw:443=open
                                                       check a firewall
  sudo synprobe scan --mismatches -f rules.txt         print only the misses
  sudo synprobe scan --json 198.18.0.2:1-1024 | jq -c 'select(.state=="open")'
`

// Defaults of flags whose zero value is not their default.
const (
	defaultInterval     = time.Second
	defaultTimeout      = time.Second
	defaultCloseTimeout = 3 * time.Second
)

// newFlagSet defines the flags of verb over o, and sets o to their
// defaults: the help prints each default once, from the flag's own value.
// Every verb's flags come from this one function, in the order of the
// help: a man page or a shell completion walks newFlagSet(v, ...) for
// each v of verbs.
func newFlagSet(v verb, o *options) *pflag.FlagSet {
	all := allFlags(o)
	fs := pflag.NewFlagSet("synprobe "+string(v), pflag.ContinueOnError)
	fs.SortFlags = false
	all.VisitAll(func(f *pflag.Flag) {
		if only, ok := onlyFor[f.Name]; !ok || only.verb == v {
			fs.AddFlag(f)
		}
	})
	return fs
}

// allFlags defines every flag of every verb.
func allFlags(o *options) *pflag.FlagSet {
	o.interval, o.timeout, o.closeTimeout = defaultInterval, defaultTimeout, defaultCloseTimeout
	o.modeName, o.mark, o.window, o.wscale, o.ttl = "rst", defaultMark, 64240, 7, 64
	o.rate, o.retries = 10000, 1
	fs := pflag.NewFlagSet("synprobe", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.VarP(intFlag[int]{p: &o.count, lo: 0, hi: math.MaxInt32}, "count", "c", "probes per target (default: until interrupted)")
	fs.VarP(durationFlag{d: &o.interval}, "interval", "i", "time between rounds of probes, a Go duration or seconds")
	fs.VarP(durationFlag{d: &o.timeout}, "timeout", "w", "how long to wait for each reply")
	fs.BoolVarP(&o.quiet, "quiet", "q", false, "print only the summary")
	fs.BoolVar(&o.json, "json", false, "print JSON Lines (see docs/json.md)")
	fs.BoolVarP(&o.ipv4, "ipv4", "4", false, "resolve names to IPv4 only")
	fs.BoolVarP(&o.ipv6, "ipv6", "6", false, "resolve names to IPv6 only")
	fs.StringVar(&o.modeName, "mode", o.modeName, "what follows the SYN-ACK: rst (reset), ack (complete the handshake, then reset) or fin (complete it and close it with FIN, reporting how the peer closes)")
	fs.Var(durationFlag{d: &o.hold, zero: true}, "hold", "fin mode: keep the connection open this long before our FIN (default: none)")
	fs.StringVar(&o.dataArg, "data", "", `fin mode: send this right after the handshake (escapes: \r \n \t \0 \\ \xHH)`)
	fs.Var(durationFlag{d: &o.closeTimeout}, "close-timeout", "fin mode: how long to wait for the peer's ACK and FIN after ours (then up to 3 probes ask whether it still holds the connection)")
	fs.BoolVar(&o.trace, "trace", false, "draw each probe's exchange as a ladder with both sides' TCP states")
	fs.BoolVar(&o.explain, "explain", false, "where SYNs got silence, send one bare ACK at the end: a RST to it means the host's TCP is there and only SYNs are dropped (a full accept queue, or a filter of SYNs alone)")
	fs.Var(intFlag[uint32]{p: &o.mark, lo: 1, hi: math.MaxUint32, hex: true, msg: "must be 1 to 0xffffffff: the RST guard tells our RSTs from the kernel's by it"}, "mark", "ack/fin modes: SO_MARK of our packets, which the RST guard lets through")
	fs.BoolVar(&o.cleanup, "cleanup", false, "remove nftables tables left by synprobe runs that died, and exit")
	fs.Float64Var(&o.rate, "rate", o.rate, "at most this many probes per second, 1 to 1e9 (0: as fast as the machine allows)")
	fs.Var(intFlag[int]{p: &o.retries, lo: 0, hi: scan.MaxRetries}, "retries", "probe unanswered pairs again this many times")
	fs.BoolVar(&o.openOnly, "open", false, "print only open ports")
	fs.BoolVar(&o.mismatchesOnly, "mismatches", false, "print only the pairs that differ from their expectation")
	fs.StringVar(&o.expect, "expect", "", "expected state of every pair: open, closed or filtered; exit 1 on any mismatch")
	fs.Var(intFlag[int]{p: &o.senders, lo: 0, hi: maxSenders, msg: fmt.Sprintf("must be 0 (one per CPU) to %d", maxSenders)}, "senders", "sending threads, at most 256 (default: one per CPU)")
	fs.StringVarP(&o.user, "user", "Z", "", "run as root: become this user once the sockets are open (default: the user who ran sudo, else nobody; root: stay uid 0)")
	fs.BoolVar(&o.keepRoot, "keep-root", false, "run as root: stay uid 0 once the sockets are open (capabilities are dropped all the same)")
	fs.Var(intFlag[uint16]{p: &o.mss, lo: 0, hi: math.MaxUint16}, "mss", "MSS option value (default: 1460 for IPv4, 1440 for IPv6)")
	fs.Var(intFlag[uint16]{p: &o.window, lo: 0, hi: math.MaxUint16}, "window", "TCP window of the SYN")
	fs.Var(intFlag[int]{p: &o.wscale, lo: -1, hi: 14, msg: "must be 0-14, or -1 for none"}, "wscale", "window scale option shift (0-14; -1 leaves the option out)")
	fs.BoolVar(&o.noSACK, "no-sack", false, "leave out the SACK-permitted option")
	fs.BoolVar(&o.noTimestamps, "no-timestamps", false, "leave out the timestamps option")
	fs.BoolVar(&o.noOptions, "no-options", false, "send a SYN without any TCP option")
	fs.BoolVar(&o.ecn, "ecn", false, "ask for ECN (set ECE and CWR in the SYN)")
	fs.Var(intFlag[uint8]{p: &o.ttl, lo: 1, hi: 255}, "ttl", "IP TTL / hop limit of the SYN")
	fs.Var(intFlag[uint8]{p: &o.tos, lo: 0, hi: 255}, "tos", "IP TOS / traffic class of the SYN")
	fs.Var(intFlag[uint16]{p: &o.sport, lo: 1, hi: math.MaxUint16}, "sport", "fixed source port, held for the run (default: a fresh port per probe, from a block held outside the kernel's ephemeral range)")
	fs.VarP(addrFlag{&o.source}, "source", "S", "source address (default: the route's)")
	fs.StringVarP(&o.iface, "interface", "I", "", "send and receive on this interface only")
	fs.StringArrayVarP(&o.files, "file", "f", nil, "read targets from FILE, one per line, # comments ('-': standard input)")
	fs.StringVar(&o.pcap, "pcap", "", "write every packet sent and received, timed as synprobe timed it, to the pcapng `FILE` (tcpdump -r, Wireshark)")
	fs.BoolVarP(&o.version, "version", "V", false, "print the version and exit")
	fs.BoolVarP(&o.help, "help", "h", false, "show this help")
	return fs
}

// helpColumns is the width of the help text.
const helpColumns = cli.HelpColumns

func printUsage(w io.Writer, v verb) {
	var o options
	head, tail := pingHead, pingTail
	if v == verbScan {
		head, tail = scanHead, scanTail
	}
	fmt.Fprint(w, head)
	fmt.Fprint(w, newFlagSet(v, &o).FlagUsagesWrapped(helpColumns))
	fmt.Fprint(w, tail)
}

// splitVerb takes the verb off the command line: its first argument, if
// it names one; else ping.
func splitVerb(args []string) (verb, []string) {
	if len(args) > 0 {
		for _, v := range verbs {
			if args[0] == string(v) {
				return v, args[1:]
			}
		}
	}
	return verbPing, args
}

// wrongVerb words pflag's refusal of a flag that belongs to the other
// verb; nil if err is about something else.
func wrongVerb(v verb, err error) error {
	msg := err.Error()
	var name string
	if n, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		name = n
	} else if c, ok := strings.CutPrefix(msg, "unknown shorthand flag: '"); ok && len(c) > 0 {
		if f := allFlags(new(options)).ShorthandLookup(c[:1]); f != nil {
			name = f.Name
		}
	}
	only, ok := onlyFor[name]
	if !ok || only.verb == v {
		return nil
	}
	f := allFlags(new(options)).Lookup(name)
	flag := "--" + name
	if f.Shorthand != "" {
		flag = "-" + f.Shorthand + "/--" + name
	}
	return usagef("%s is a %s flag, not a %s one: %s", flag, only.verb, v, only.why)
}

// parseArgs parses the command line. Errors are usageErrors.
func parseArgs(args []string) (*options, error) {
	o := new(options)
	o.verb, args = splitVerb(args)
	fs := newFlagSet(o.verb, o)
	help, err := cli.Parse(fs, args)
	if err != nil {
		if werr := wrongVerb(o.verb, err); werr != nil {
			return nil, werr
		}
		return nil, err
	}
	o.help = o.help || help
	if o.help || o.version || o.cleanup {
		return o, nil
	}
	mode, err := probe.ParseMode(o.modeName)
	if err != nil {
		return nil, usagef("--mode: %v", err)
	}
	o.mode = mode
	for _, f := range []string{"hold", "data", "close-timeout"} {
		if fs.Changed(f) && mode != probe.ModeFIN {
			return nil, usagef("--%s needs --mode fin", f)
		}
	}
	if fs.Changed("data") {
		if o.data, err = unescape(o.dataArg); err != nil {
			return nil, usagef("--data: %v", err)
		}
		if len(o.data) == 0 {
			return nil, usagef("--data is empty")
		}
		if len(o.data) > 1<<16 {
			return nil, usagef("--data is %d bytes; at most 65536", len(o.data))
		}
	}
	switch {
	case o.ipv4 && o.ipv6:
		return nil, usagef("-4 and -6 exclude each other")
	case o.source.IsValid() && o.ipv4 && !o.source.Is4():
		return nil, usagef("--source %v is not an IPv4 address, but -4 was given", o.source)
	case o.source.IsValid() && o.ipv6 && o.source.Is4():
		return nil, usagef("--source %v is not an IPv6 address, but -6 was given", o.source)
	}
	o.intervalSet = fs.Changed("interval")
	if fs.Changed("pcap") && o.pcap == "" {
		return nil, usagef("--pcap needs a file name")
	}
	switch {
	case o.rate != 0 && !(o.rate >= minRate && o.rate <= maxRate):
		return nil, usagef("--rate must be 0 (no limit) or %v to %v probes per second (got %v)", minRate, maxRate, o.rate)
	case o.expect != "" && o.expect != scan.ExpectOpen && o.expect != scan.ExpectClosed && o.expect != scan.ExpectFiltered:
		return nil, usagef("--expect %q: want open, closed or filtered", o.expect)
	}
	for _, a := range fs.Args() {
		for _, v := range []verb{verbPing, verbScan, "serve"} {
			if a == string(v) {
				return nil, usagef("%q: the verb comes first, before any flag: synprobe %s [flags] ...", a, v)
			}
		}
		sp, err := scan.ParseSpec(a)
		if err != nil {
			if v := nearVerb(a); v != "" {
				return nil, usagef("target %v (did you mean the verb %s? synprobe %s --help)", err, v, v)
			}
			return nil, usagef("target %v", err)
		}
		if err := checkFamily(o, &sp); err != nil {
			return nil, usagef("target %q: %v", a, err)
		}
		o.specs = append(o.specs, sp)
	}
	if len(o.specs) == 0 && len(o.files) == 0 {
		if o.verb == verbScan {
			return nil, usagef("no target given (try: synprobe scan host:1-1024)")
		}
		return nil, usagef("no target given (try: synprobe host:port)")
	}
	return o, nil
}

// loadTargets collects the TARGET arguments and the lines of the -f
// files, streamed: a file's text is not kept.
func loadTargets(o *options, dest *usable) (*scan.Builder, error) {
	b := new(scan.Builder)
	for i := range o.specs {
		if err := dest.block(&o.specs[i], b, false); err != nil {
			return nil, usagef("target %q: %v", o.specs[i].Arg, err)
		}
		defaultExpect(o, &o.specs[i])
		b.AddArg(&o.specs[i])
	}
	for _, f := range o.files {
		if err := readTargetFile(o, dest, b, f); err != nil {
			return nil, err
		}
	}
	switch expecting := b.HasExpectation() || o.expect != ""; {
	case expecting && o.verb != verbScan:
		return nil, usagef("expectations (TARGET=STATE) are checked by scans, not by ping: synprobe scan TARGET=STATE...")
	case !expecting && o.mismatchesOnly:
		return nil, usagef("--mismatches prints the pairs that differ from their expectation, and none is given: add --expect STATE or TARGET=STATE")
	}
	return b, nil
}

// maxTargets bounds the expressions of a run: about 40 bytes each.
const maxTargets = 1 << 24

// targetBytes is what a target costs at most until its scan starts: its
// entry, its share of the set built from the entries and of the build's
// scratch (measured peaks of whole scans: 115 bytes a line at a million
// lines, 103 at 8 million). A file that would take more than half of the
// memory available is refused as it is read, before it does.
const targetBytes = 128

// memAvailableFn is memAvailable; tests give a machine of their own.
var memAvailableFn = memAvailable

// readTargetFile adds the targets of a -f file ("-": standard input).
// Its errors name the file and line, never what the file holds.
func readTargetFile(o *options, dest *usable, b *scan.Builder, name string) error {
	r := io.Reader(os.Stdin)
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return usagef("-f %s: %v", name, err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil && st.IsDir() {
			return usagef("-f %s: is a directory", name)
		}
		r = f
	} else {
		name = "stdin"
	}
	n := 0
	avail, bounded := memAvailableFn()
	err := scan.ParseFile(r, name, func(line int, spec *scan.Spec) error {
		if b.Len() >= maxTargets {
			return fmt.Errorf("%s:%d: more than %d targets in all", name, line, maxTargets)
		}
		if need := uint64(b.Len()+1) * targetBytes; bounded && need > avail/2 {
			return fmt.Errorf("%s:%d: %d targets would take about %d MiB, more than half of the memory available (%d MiB): split the file, or name ranges (ADDR/PREFIX:PORTS)", name, line, b.Len()+1, need>>20, avail>>20)
		}
		if err := checkFamily(o, spec); err != nil {
			return fmt.Errorf("%s:%d: %v", name, line, err)
		}
		if err := dest.block(spec, b, true); err != nil {
			return fmt.Errorf("%s:%d: %v", name, line, err)
		}
		defaultExpect(o, spec)
		b.AddLine(name, line, spec)
		n++
		return nil
	})
	if err != nil {
		return usagef("%v", err)
	}
	if n == 0 {
		return usagef("-f %s: no targets in it", name)
	}
	return nil
}

// durationFlag accepts a Go duration ("200ms", "1.5s") or plain seconds
// ("0.2"), and refuses negative values, and zero unless zero is set.
type durationFlag struct {
	d    *time.Duration
	zero bool
}

func (f durationFlag) String() string {
	if f.d == nil || *f.d == 0 {
		return "0" // pflag prints no default for it
	}
	return f.d.String()
}

func (f durationFlag) Type() string { return "duration" }

func (f durationFlag) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil && !(f.zero && d == 0 && errors.Is(err, errNotPositive)) {
		return err
	}
	*f.d = d
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		secs, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || secs != secs { // NaN
			return 0, errors.New("not a duration (use e.g. 0.2, 200ms or 1s)")
		}
		if secs > float64(1<<62)/1e9 {
			return 0, errors.New("too long")
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d <= 0 {
		return d, errNotPositive
	}
	return d, nil
}

var errNotPositive = errors.New("must be positive")

// unescape turns --data's escapes into bytes: \r \n \t \0 \\ \xHH.
func unescape(s string) ([]byte, error) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		if i++; i == len(s) {
			return nil, errors.New("trailing backslash")
		}
		switch s[i] {
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case '0':
			out = append(out, 0)
		case '\\':
			out = append(out, '\\')
		case 'x':
			if i+2 >= len(s) {
				return nil, fmt.Errorf("\\x needs two hex digits")
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return nil, fmt.Errorf("\\x%s is not a hex byte", s[i+1:i+3])
			}
			out = append(out, byte(v))
			i += 2
		default:
			return nil, fmt.Errorf("unknown escape \\%c", s[i])
		}
	}
	return out, nil
}

// intFlag is an integer flag with its bounds: a value outside them, or not
// a number (decimal, or hexadecimal after 0x; a leading 0 is not octal),
// is refused in words that name the bounds.
type intFlag[T ~int | ~uint8 | ~uint16 | ~uint32] struct {
	p      *T
	lo, hi int64
	hex    bool   // printed in hex
	msg    string // what the bounds mean, if not "must be lo to hi"
}

func (f intFlag[T]) String() string {
	switch {
	case f.p == nil:
		return ""
	case f.hex:
		return fmt.Sprintf("%#x", uint64(*f.p))
	}
	return strconv.FormatInt(int64(*f.p), 10)
}

func (f intFlag[T]) Type() string {
	if f.hex {
		return "uint32"
	}
	return "int"
}

func (f intFlag[T]) Set(s string) error {
	var v int64
	var err error
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		v, err = strconv.ParseInt(h, 16, 64)
	} else {
		v, err = strconv.ParseInt(s, 10, 64)
	}
	switch {
	case err != nil && !errors.Is(err, strconv.ErrRange):
		return errors.New("not a number")
	case err == nil && v >= f.lo && v <= f.hi:
		*f.p = T(v)
		return nil
	case f.msg != "":
		return errors.New(f.msg)
	case f.hex:
		return fmt.Errorf("must be %#x to %#x", f.lo, f.hi)
	}
	return fmt.Errorf("must be %d to %d", f.lo, f.hi)
}

// addrFlag parses an IP address.
type addrFlag struct{ a *netip.Addr }

func (f addrFlag) String() string {
	if f.a == nil || !f.a.IsValid() {
		return ""
	}
	return f.a.String()
}

func (f addrFlag) Type() string { return "addr" }

func (f addrFlag) Set(s string) error {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return fmt.Errorf("%q is not an IP address", s)
	}
	*f.a = a.Unmap()
	return nil
}

// defaultExpect gives a target without an expectation --expect's, before
// targets are weighed against each other: equally specific targets that
// disagree are then refused for what they really expect.
func defaultExpect(o *options, spec *scan.Spec) {
	if spec.Expect == "" {
		spec.Expect = o.expect
	}
}

// nearVerb returns the verb that a, a word where a target should be, is
// one or two typos from ("scna", "listner"), or "".
func nearVerb(a string) string {
	if strings.ContainsAny(a, ":./[]") {
		return ""
	}
	for _, v := range []string{"ping", "scan", "serve", "trace", "listener", "completion", "man"} {
		// Two typos in a word of 5 letters or more, one in a shorter one
		// of at least 3 ("me" is a host more likely than "man").
		if d := editDistance(a, v); a != v && len(a) >= 3 && (d <= 1 || d == 2 && len(a) >= 5) {
			return v
		}
	}
	return ""
}

// editDistance is the distance between a and b in insertions, deletions,
// substitutions and swaps of two neighbours (optimal string alignment).
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
