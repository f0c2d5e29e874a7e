//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/probe/scan"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// scanLab is a lab whose target answers for a whole IPv4 /24 and a small
// IPv6 range (routed to its loopback), with real listeners on the given
// ports on every address. The ranges are returned.
func scanLab(t testing.TB, ports ...int) (*netlab.Lab, netip.Prefix, netip.Prefix) {
	l := netlab.New(t)
	n := l.TargetV4.As4()[2] // the lab's own number: keeps parallel labs apart
	v4 := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, n, 0}), 24)
	v6 := netip.MustParsePrefix(fmt.Sprintf("2001:db8:ff:%x::/120", n))
	l.Run(t, l.Target, "ip", "route", "add", "local", v4.String(), "dev", "lo")
	l.Run(t, l.Target, "ip", "-6", "route", "add", "local", v6.String(), "dev", "lo")
	l.Run(t, l.Prober, "ip", "route", "add", v4.String(), "via", l.TargetV4.String())
	l.Run(t, l.Prober, "ip", "-6", "route", "add", v6.String(), "via", l.TargetV6.String())
	// Deterministic reasons: no ICMP rate limit in the target.
	l.Run(t, l.Target, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", "net.ipv4.icmp_msgs_per_sec=1000000", "net.ipv4.icmp_msgs_burst=1000000",
		"net.ipv6.icmp.ratelimit=0", "net.ipv4.tcp_max_syn_backlog=65536")
	for _, p := range ports {
		ln := l.Listen(t, l.Target, "tcp", fmt.Sprintf(":%d", p)) // both families, every local address
		netlab.Serve(ln, func(c net.Conn) { c.Close() })
	}
	return l, v4, v6
}

// firewallLab is a scanLab with listeners on ports 22 and 80 behind a
// firewall that drops port 23, rejects 24 with ICMP admin prohibited and
// 25 with a RST, and drops port 80 of one host (.5), returned with the
// verdict ("state/reason") each pair should get.
func firewallLab(t testing.TB) (l *netlab.Lab, v4, v6 netip.Prefix, dropHost netip.Addr, want func(netip.Addr, uint16) string) {
	l, v4, v6 = scanLab(t, 22, 80)
	dropHost = v4.Addr().Next().Next().Next().Next().Next()
	l.Nft(t, l.Target, fmt.Sprintf(`table inet lab {
	chain input {
		type filter hook input priority 0;
		tcp dport 23 drop
		tcp dport 24 reject with icmpx admin-prohibited
		tcp dport 25 reject with tcp reset
		ip daddr %v tcp dport 80 drop
	}
}`, dropHost))
	want = func(a netip.Addr, port uint16) string {
		switch {
		case port == 22, port == 80 && a != dropHost:
			return "open/syn-ack"
		case port == 23, port == 80:
			return "filtered/timeout"
		case port == 24:
			return "filtered/icmp-admin-prohibited"
		}
		return "closed/rst"
	}
	return l, v4, v6, dropHost, want
}

// scanResults collects a --json scan's verdicts ("state/reason") by pair,
// each reported once, and its summary.
func scanResults(t testing.TB, r cliRun) (map[netip.AddrPort]string, map[string]any) {
	t.Helper()
	got := map[netip.AddrPort]string{}
	var summary map[string]any
	for _, m := range r.lines {
		switch m["type"] {
		case "result":
			ap := netip.AddrPortFrom(netip.MustParseAddr(m["addr"].(string)), uint16(m["port"].(float64)))
			if _, dup := got[ap]; dup {
				t.Errorf("%v reported twice", ap)
			}
			got[ap] = m["state"].(string) + "/" + m["reason"].(string)
		case "scan-summary":
			summary = m
		}
	}
	return got, summary
}

// checkVerdicts compares got with want for every address of each prefix
// and each of its ports; it returns the number of pairs and of wrong ones,
// reporting the first 20.
func checkVerdicts(t testing.TB, got map[netip.AddrPort]string, want func(netip.Addr, uint16) string, ports map[netip.Prefix][]uint16) (pairs, wrong int) {
	t.Helper()
	for p, pp := range ports {
		for a := p.Addr(); p.Contains(a); a = a.Next() {
			for _, port := range pp {
				pairs++
				if ap := netip.AddrPortFrom(a, port); got[ap] != want(a, port) {
					if wrong++; wrong <= 20 {
						t.Errorf("%v: %q, want %q", ap, got[ap], want(a, port))
					}
				}
			}
		}
	}
	return pairs, wrong
}

// TestIntegrationScan scans a /28 and a small IPv6 range over 10 ports with
// listeners, a closed port, a drop, an ICMP reject and an RST reject (one
// host drops port 80 too), and checks every single verdict.
func TestIntegrationScan(t *testing.T) {
	l, v4, v6, dropHost, want := firewallLab(t)
	sub4 := netip.PrefixFrom(v4.Addr(), 28)
	sub6 := netip.PrefixFrom(v6.Addr(), 126)
	r := runIn(t, l, l.Prober, "scan", "--json", "--rate", "0", "-w", "0.3", sub4.String()+":20-29,80", "["+sub6.String()+"]:22-25,80")
	if r.code != exitOK { // a discovery scan that completed
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
	got, summary := scanResults(t, r)
	pairs, _ := checkVerdicts(t, got, want, map[netip.Prefix][]uint16{
		sub4: {20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 80},
		sub6: {22, 23, 24, 25, 80},
	})
	if len(got) != pairs || summary == nil || summary["pairs"] != float64(pairs) {
		t.Errorf("%d results for %d pairs; summary %v", len(got), pairs, summary)
	}
	// The silent pairs (drops) were all probed again. (An answer delayed
	// past the wait on a loaded machine may add a retry: its verdict above
	// is still exact.)
	if silent := 16 + 4 + 1; summary["retries"].(float64) < float64(silent) {
		t.Errorf("retries %v, want at least %d", summary["retries"], silent)
	}
	if ss := l.Run(t, l.Target, "ss", "-Htan", "state", "syn-recv"); strings.TrimSpace(ss) != "" {
		t.Errorf("half-open connections left:\n%s", ss)
	}

	// A firewall check: the expectations hold, or each miss is named.
	ok := runIn(t, l, l.Prober, "scan", "-w", "0.3", "--rate", "0", sub4.String()+":22=open", sub4.String()+":23=filtered", sub4.String()+":25=closed", "["+sub6.String()+"]:24=filtered")
	if ok.code != exitOK || !strings.Contains(ok.stdout, "every pair is as expected") {
		t.Errorf("expectations met: exit %d\n%s%s", ok.code, ok.stdout, ok.stderr)
	}
	bad := runIn(t, l, l.Prober, "scan", "-w", "0.3", "--rate", "0", "--expect", "closed", sub4.String()+":80")
	if bad.code != exitNotOpen || strings.Count(bad.stdout, "\nMISMATCH ") != 16 ||
		!strings.Contains(bad.stdout, fmt.Sprintf("MISMATCH %v:80 (%v:80): expected closed, got filtered: no answer to 2 probes", dropHost, sub4)) {
		t.Errorf("expectations missed: exit %d\n%s", bad.code, bad.stdout)
	}
}

// resolveNeighbours fixes the target's Ethernet address in the prober's
// neighbour tables, as a resolved gateway would be: big scans then send
// Ethernet frames straight to it.
func resolveNeighbours(t testing.TB, l *netlab.Lab) {
	t.Helper()
	f := strings.Fields(l.Run(t, l.Target, "ip", "-br", "link", "show", "dev", l.TargetIf))
	if len(f) < 3 {
		t.Fatalf("no link address for %s: %q", l.TargetIf, f)
	}
	for _, a := range []netip.Addr{l.TargetV4, l.TargetV6} {
		l.Run(t, l.Prober, "ip", "neigh", "replace", a.String(), "lladdr", f[2], "dev", l.ProberIf, "nud", "permanent")
	}
}

// TestIntegrationScanRing: a scan big enough for the fast paths (a packet
// ring for the answers, Ethernet frames for the probes) over both
// families, with every kind of port, gets every single verdict right.
func TestIntegrationScanRing(t *testing.T) {
	l, v4, v6, _, want := firewallLab(t)
	resolveNeighbours(t, l)
	ports4 := []uint16{80}
	for p := uint16(1); p <= 64; p++ {
		ports4 = append(ports4, p)
	}
	// The witness: what crossed the prober's interface, and when.
	capt := l.StartCapture(t, l.Prober, l.ProberIf, "tcp or icmp or icmp6")
	synprobeBinary(t) // built before the clock starts
	start := time.Now()
	r := runIn(t, l, l.Prober, "scan", "--json", "--rate", "0", "-w", "0.3", v4.String()+":1-64,80", "["+v6.String()+"]:22-25,80")
	end := time.Now()
	if r.code != exitOK {
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
	pkts, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	got, summary := scanResults(t, r)
	ports := map[netip.Prefix][]uint16{v4: ports4, v6: {22, 23, 24, 25, 80}}
	pairs, wrong := checkVerdicts(t, got, want, ports)
	if pairs < scan.RingMinPairs {
		t.Fatalf("%d pairs: too few for the ring", pairs)
	}
	if wrong > 0 || len(got) != pairs || summary == nil || summary["pairs"] != float64(pairs) {
		for _, ns := range []string{l.Prober, l.Target} {
			t.Logf("%s:\n%s%s", ns, l.Run(t, ns, "ip", "-s", "-s", "link"), l.Run(t, ns, "nstat", "-az"))
		}
		t.Log(witnessReport(pkts, got, want, ports, start, end))
		t.Fatalf("%d wrong of %d results for %d pairs; summary %v", wrong, len(got), pairs, summary)
	}
	if summary["recv_path"] != "packet ring" || summary["recv_drops"] != 0.0 ||
		!strings.Contains(summary["path"].(string), "IPv4: Ethernet frames to ") || !strings.Contains(summary["path"].(string), "IPv6: Ethernet frames to ") {
		t.Errorf("summary %v: want probes sent as Ethernet frames and answers read from the packet ring, none lost", summary)
	}
	if ss := l.Run(t, l.Target, "ss", "-Htan", "state", "syn-recv"); strings.TrimSpace(ss) != "" {
		t.Errorf("half-open connections left:\n%s", ss)
	}
}

// TestIntegrationScanSlowReader: whoever reads synprobe's output stops
// for two seconds while a scan produces more answers than the packet ring
// holds. The scan waits for the reader instead of losing answers: every
// pair is answered the first time, none is lost or retried.
func TestIntegrationScanSlowReader(t *testing.T) {
	const ports = 700 // 179,200 pairs: more answers than the ring holds
	l, v4, _ := scanLab(t, 22)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// JSON Lines: they stream as answers come (the text output is
	// written at the end).
	cmd := l.Command(ctx, l.Prober, synprobeBinary(t), "scan", "--json", "--rate", "0", "-w", "0.5", fmt.Sprintf("%v:1-%d", v4, ports))
	out, stderr := startPiped(t, cmd)
	time.Sleep(2 * time.Second) // the pipe fills, then the ring
	open, closed, other := 0, 0, 0
	var tail []string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var m struct {
			Type, State string
			Port        int
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("bad JSON %q", sc.Text())
		}
		switch {
		case m.Type == "result" && m.State == "open" && m.Port == 22:
			open++
		case m.Type == "result" && m.State == "closed" && m.Port != 22:
			closed++
		case m.Type == "result":
			if other++; other <= 10 {
				t.Errorf("unexpected result %q", sc.Text())
			}
		default:
			tail = append(tail, sc.Text())
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v\n%s", err, stderr.String())
	}
	if open != 256 || closed != 256*(ports-1) || other != 0 {
		t.Errorf("%d open, %d closed, %d other, want 256 and %d", open, closed, other, 256*(ports-1))
	}
	summary := strings.Join(tail, "\n")
	if !strings.Contains(summary, fmt.Sprintf(`"sent":%d,"retries":0,`, 256*ports)) || !strings.Contains(summary, `"recv_drops":0,`) ||
		!strings.Contains(summary, `"recv_path":"packet ring"`) {
		t.Errorf("summary:\n%s", summary)
	}
}

// TestIntegrationScanStalledReader: whoever reads synprobe's output reads
// its first lines, then stops for 1.5 s, five times the wait (-w 0.3),
// while the answers are in: the scan's receiver blocks writing a result,
// the rest of the answers wait in the packet ring. With no retry, every
// pair still gets the verdict its answer says. (A pass once ended after a
// timeout with no answer handled, and under CI's load such a scan called
// a third of its pairs filtered, their answers unread in the ring.)
func TestIntegrationScanStalledReader(t *testing.T) {
	l, v4, v6, _, want := firewallLab(t)
	resolveNeighbours(t, l)
	ports4 := []uint16{80}
	for p := uint16(1); p <= 64; p++ {
		ports4 = append(ports4, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := l.Command(ctx, l.Prober, synprobeBinary(t), "scan", "--json", "--rate", "0", "-w", "0.3", "--retries", "0", v4.String()+":1-64,80", "["+v6.String()+"]:22-25,80")
	out, stderr := startPiped(t, cmd)
	r := cliRun{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		if r.lines = append(r.lines, m); len(r.lines) == 100 {
			time.Sleep(1500 * time.Millisecond)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v\n%s", err, stderr.String())
	}
	got, summary := scanResults(t, r)
	ports := map[netip.Prefix][]uint16{v4: ports4, v6: {22, 23, 24, 25, 80}}
	pairs, wrong := checkVerdicts(t, got, want, ports)
	if pairs < scan.RingMinPairs || summary == nil || summary["recv_path"] != "packet ring" {
		t.Fatalf("%d pairs, summary %v: want the packet ring", pairs, summary)
	}
	if wrong > 0 || len(got) != pairs || summary["retries"] != 0.0 || summary["recv_drops"] != 0.0 {
		t.Errorf("%d wrong of %d results for %d pairs; summary %v", wrong, len(got), pairs, summary)
	}
}

// TestIntegrationScanECN: a scan with --ecn sends ECN-setup SYNs (ECE and
// CWR, as the capture shows) and reports the SYN-ACK's ECE: Linux agrees
// to ECN when asked (net.ipv4.tcp_ecn=2, its default, set here); without
// --ecn neither.
func TestIntegrationScanECN(t *testing.T) {
	l, v4, v6 := scanLab(t, 22)
	l.Run(t, l.Target, "sysctl", "-qw", "net.ipv4.tcp_ecn=2")
	targets := []string{netip.AddrPortFrom(v4.Addr(), 22).String(), netip.AddrPortFrom(v6.Addr(), 22).String()}
	for _, ecn := range []bool{true, false} {
		args := []string{"scan", "--json", "-w", "0.3"}
		if ecn {
			args = append(args, "--ecn")
		}
		c := l.StartCapture(t, l.Prober, l.ProberIf, "tcp")
		r := runIn(t, l, l.Prober, append(args, targets...)...)
		pkts, err := c.Stop()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := scanResults(t, r)
		if r.code != exitOK || len(got) != 2 {
			t.Fatalf("--ecn %v: exit %d, %d results: %s%s", ecn, r.code, len(got), r.stdout, r.stderr)
		}
		for _, m := range r.lines {
			if m["type"] == "result" && (m["state"] != "open" || m["ece"] != ecn) {
				t.Errorf("--ecn %v: %v", ecn, m)
			}
		}
		want := wire.FlagSyn
		if ecn {
			want |= wire.FlagEce | wire.FlagCwr
		}
		syns := 0
		for _, cp := range pkts {
			var p wire.Packet
			if wire.Parse(cp.Data, &p) != nil || p.Flags&wire.FlagSyn == 0 || p.Flags&wire.FlagAck != 0 {
				continue
			}
			if syns++; p.Flags != want {
				t.Errorf("--ecn %v: a SYN on the wire with flags %v, want %v", ecn, p.Flags, want)
			}
		}
		if syns != 2 {
			t.Errorf("--ecn %v: %d SYNs on the wire, want 2", ecn, syns)
		}
	}
}

// TestIntegrationScanText: a scan's text output against the lab's own
// rules (the firewall of firewallLab, and eight addresses that drop
// everything): each answering host under a line that counts its
// verdicts, its ports in order, its 17 plain RSTs as one line of port
// ranges, and the eight silent hosts in one line.
func TestIntegrationScanText(t *testing.T) {
	l, v4, _, dropHost, want := firewallLab(t)
	block := netip.PrefixFrom(v4.Addr(), 28)
	dark := netip.PrefixFrom(v4.Addr().Next().Next().Next().Next().Next().Next().Next().Next(), 29) // .8-.15
	l.Nft(t, l.Target, fmt.Sprintf(`table inet dark {
	chain input {
		type filter hook input priority -10;
		ip daddr %v drop
	}
}`, dark))
	r := runIn(t, l, l.Prober, "scan", "--rate", "0", "-w", "0.3", "--retries", "0", block.String()+":20-39,80")
	if r.code != exitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	// What the lab's rules say, in the output's words.
	var wantText []string
	ports := append(seq(20, 39), 80)
	for a := block.Addr(); !dark.Contains(a); a = a.Next() {
		var open, closed, filtered int
		var lines, plain []string
		var rst []uint16
		for _, p := range ports {
			v := strings.SplitN(want(a, p), "/", 2)
			switch v[0] {
			case "open":
				open++
			case "closed":
				closed++
			default:
				filtered++
			}
			if v[1] == "rst" {
				rst = append(rst, p)
				plain = append(plain, fmt.Sprintf("%s %v reason=rst", v[0], netip.AddrPortFrom(a, p)))
				continue
			}
			lines = append(lines, fmt.Sprintf("%s %v reason=%s", v[0], netip.AddrPortFrom(a, p), v[1]))
		}
		if len(rst) > plainShown {
			plain = []string{fmt.Sprintf("closed %v:%s reason=rst", a, appendPortRanges(nil, rst))}
		} else {
			lines = append(lines, plain...) // (sorted with the rest: not so in this lab)
			plain = nil
		}
		wantText = append(wantText, fmt.Sprintf("%v: %d open, %d closed, %d filtered", a, open, closed, filtered))
		wantText = append(wantText, lines...)
		wantText = append(wantText, plain...)
	}
	last := dark.Addr()
	for range 7 {
		last = last.Next()
	}
	wantText = append(wantText, fmt.Sprintf("8 of 16 addresses never answered (every probe timed out): %v-%v", dark.Addr(), last))
	// The output, each result line cut to its verdict, pair and reason.
	var got []string
	for _, line := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(line, "---") {
			break
		}
		f := strings.Fields(line)
		if len(f) > 2 && (f[0] == "open" || f[0] == "closed" || f[0] == "filtered") {
			for _, x := range f[2:] {
				if strings.HasPrefix(x, "reason=") {
					line = f[0] + " " + f[1] + " " + x
				}
			}
		}
		got = append(got, line)
	}
	if strings.Join(got, "\n") != strings.Join(wantText, "\n") {
		t.Errorf("text output (verdict, pair, reason):\n%s\nwant:\n%s\n(drop host %v)", strings.Join(got, "\n"), strings.Join(wantText, "\n"), dropHost)
	}
	if !strings.Contains(r.stdout, fmt.Sprintf("--- scan of %d pairs:", 16*len(ports))) {
		t.Errorf("summary:\n%s", r.stdout)
	}
}

func seq(lo, hi uint16) []uint16 {
	var out []uint16
	for p := lo; p <= hi; p++ {
		out = append(out, p)
	}
	return out
}

// witnessed is what a capture shows of one pair: the probes sent to it and
// the answers from it, in capture order.
type witnessed struct {
	syns    []time.Time
	answers []time.Time
	kinds   []string
}

// witness sorts a capture's packets by pair (the remote address and port).
func witness(pkts []netlab.CapturedPacket) map[netip.AddrPort]*witnessed {
	out := map[netip.AddrPort]*witnessed{}
	at := func(ap netip.AddrPort) *witnessed {
		if out[ap] == nil {
			out[ap] = &witnessed{}
		}
		return out[ap]
	}
	var p wire.Packet
	for _, c := range pkts {
		if wire.Parse(c.Data, &p) != nil {
			continue
		}
		switch {
		case p.IsICMP():
			w := at(netip.AddrPortFrom(p.Quoted.Dst, p.Quoted.DstPort))
			w.answers, w.kinds = append(w.answers, c.Time), append(w.kinds, fmt.Sprintf("icmp %d/%d", p.ICMPType, p.ICMPCode))
		case p.Flags == wire.FlagSyn:
			w := at(netip.AddrPortFrom(p.Dst, p.DstPort))
			w.syns = append(w.syns, c.Time)
		case p.Flags&wire.FlagRst == 0 || p.Flags&wire.FlagAck != 0: // not our own RSTs
			w := at(netip.AddrPortFrom(p.Src, p.SrcPort))
			w.answers, w.kinds = append(w.answers, c.Time), append(w.kinds, p.Flags.String())
		}
	}
	return out
}

// witnessReport says, for a scan whose verdicts went wrong, what the
// capture saw of the wrong pairs: whether their answers crossed the
// interface before the scan ended (start and end: the scan's process).
func witnessReport(pkts []netlab.CapturedPacket, got map[netip.AddrPort]string, want func(netip.Addr, uint16) string, ports map[netip.Prefix][]uint16, start, end time.Time) string {
	w := witness(pkts)
	var b strings.Builder
	var wrong, answeredBefore, answeredAfter, unanswered, shown int
	rel := func(t time.Time) string { return fmt.Sprintf("%.1fms", float64(t.Sub(start).Microseconds())/1e3) }
	for p, pp := range ports {
		for a := p.Addr(); p.Contains(a); a = a.Next() {
			for _, port := range pp {
				ap := netip.AddrPortFrom(a, port)
				if got[ap] == want(a, port) {
					continue
				}
				wrong++
				e := w[ap]
				switch {
				case e == nil || len(e.answers) == 0:
					unanswered++
				case e.answers[0].Before(end):
					answeredBefore++
				default:
					answeredAfter++
				}
				if shown < 20 && e != nil {
					shown++
					fmt.Fprintf(&b, "%v (%s):", ap, got[ap])
					for _, t := range e.syns {
						fmt.Fprintf(&b, " SYN %s", rel(t))
					}
					for i, t := range e.answers {
						fmt.Fprintf(&b, " %s %s", e.kinds[i], rel(t))
					}
					b.WriteByte('\n')
				}
			}
		}
	}
	first, last := "", ""
	if len(pkts) > 0 {
		first, last = rel(pkts[0].Time), rel(pkts[len(pkts)-1].Time)
	}
	fmt.Fprintf(&b, "capture: %d packets from %s to %s; the scan ran to %s; of %d wrong pairs the capture saw answers to %d before the scan ended, %d after, none to %d",
		len(pkts), first, last, rel(end), wrong, answeredBefore, answeredAfter, unanswered)
	return b.String()
}

// startPiped starts cmd with its standard output on a pipe, for the test
// to read at its own pace, and its standard error kept.
func startPiped(t *testing.T, cmd *exec.Cmd) (io.ReadCloser, *bytes.Buffer) {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := new(bytes.Buffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return out, stderr
}
