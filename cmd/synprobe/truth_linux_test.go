//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// The tests here check verdicts on paths less tidy than one clean veth
// pair: slow hosts beside fast ones, the prober's own routes and output
// firewall, overlapping targets.

// TestIntegrationScanSlowHost: a scan of loopback ports (answered in
// microseconds) and of a host 200 ms away. The distant host's silence is
// judged by the timeout, never by the fast answers of others: its open
// port is open, so a firewall check expecting it filtered fails.
func TestIntegrationScanSlowHost(t *testing.T) {
	const delay = 100 * time.Millisecond // each way
	l := netlab.NewDelayLab(t, delay)
	for _, a := range []netip.Addr{l.TargetV4, l.TargetV6} {
		ln := l.Listen(t, l.Target, "tcp", netip.AddrPortFrom(a, 22).String())
		netlab.Serve(ln, func(c net.Conn) { c.Close() })
	}
	capt := l.StartCapture(t, l.Target, l.TargetIf, "tcp port 22")
	r := runIn(t, l, l.Prober, "scan", "--json", "127.0.0.1:1-50", "[::1]:1-50", hostPort(l.TargetV4, 22)+"=filtered", hostPort(l.TargetV6, 22)+"=filtered")
	if r.code != exitNotOpen {
		t.Errorf("exit %d, want %d (22 is open)\n%s%s", r.code, exitNotOpen, r.stdout, r.stderr)
	}
	got, summary := scanResults(t, r)
	for _, a := range []netip.Addr{l.TargetV4, l.TargetV6} {
		if v := got[netip.AddrPortFrom(a, 22)]; v != "open/syn-ack" {
			t.Errorf("%v:22 is %q, want open/syn-ack", a, v)
		}
	}
	for _, lo := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
		for port := uint16(1); port <= 50; port++ {
			if v := got[netip.AddrPortFrom(lo, port)]; v != "closed/rst" {
				t.Errorf("%v:%d is %q, want closed/rst", lo, port, v)
			}
		}
	}
	if summary["mismatches"] != 2.0 {
		t.Errorf("summary %v: want 2 mismatches", summary)
	}
	// The witness: the target did answer each SYN with a SYN-ACK.
	pkts, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	synacks := map[netip.Addr]int{}
	for _, c := range pkts {
		var p wire.Packet
		if wire.Parse(c.Data, &p) == nil && p.Flags == wire.FlagSyn|wire.FlagAck && p.SrcPort == 22 {
			synacks[p.Src]++
		}
	}
	if synacks[l.TargetV4] == 0 || synacks[l.TargetV6] == 0 {
		t.Errorf("the capture holds no SYN-ACK from each family: %v", synacks)
	}
	// Expecting it open passes.
	ok := runIn(t, l, l.Prober, "scan", "127.0.0.1:1-50", hostPort(l.TargetV4, 22)+"=open")
	if ok.code != exitOK || !strings.Contains(ok.stdout, "every pair is as expected") {
		t.Errorf("exit %d:\n%s%s", ok.code, ok.stdout, ok.stderr)
	}
}

// TestIntegrationScanSpecific: the example of --help, a firewall check of
// a range with exceptions, probes each port once and passes.
func TestIntegrationScanSpecific(t *testing.T) {
	l := verdictLab(t) // listens on 80; 81 dropped, 82 rejected, 83 reset
	ln := l.Listen(t, l.Target, "tcp", netip.AddrPortFrom(l.TargetV4, 443).String())
	netlab.Serve(ln, func(c net.Conn) { c.Close() })
	capt := l.StartCapture(t, l.Target, l.TargetIf, "tcp[tcpflags] == tcp-syn")
	a := l.TargetV4.String()
	r := runIn(t, l, l.Prober, "scan", "--json", "-w", "0.3", "--expect", "closed", a+":1-1024", a+":80,443=open", a+":81-82=filtered")
	if r.code != exitOK {
		t.Errorf("exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	got, summary := scanResults(t, r)
	if len(got) != 1024 || summary["pairs"] != 1024.0 || summary["mismatches"] != 0.0 {
		t.Errorf("%d results; summary %v", len(got), summary)
	}
	pkts, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	// Each port got one SYN (two where the first went unanswered).
	syns := map[uint16]int{}
	for _, c := range pkts {
		var p wire.Packet
		if wire.Parse(c.Data, &p) == nil {
			syns[p.DstPort]++
		}
	}
	for port := uint16(1); port <= 1024; port++ {
		want := 1
		if port == 81 {
			want = 2 // the drop: probed again
		}
		if syns[port] != want {
			t.Errorf("port %d: %d SYNs, want %d", port, syns[port], want)
		}
	}
}

// localBlockLab is a scanLab whose prober cannot send to parts of the
// scanned /24 (or, with v6, the /120): a prohibit route covers .64/27 and
// a blackhole route .96/28, and with firewall an nftables output rule
// drops .128/25. want gives each pair's verdict.
func localBlockLab(t *testing.T, firewall, v6 bool) (*netlab.Lab, netip.Prefix, func(netip.Addr, uint16) string) {
	l, block, block6 := scanLab(t, 22, 80)
	family, extra := "ip", 0
	if v6 {
		block, family, extra = block6, "ip6", 96
	}
	at := func(host byte, bits int) netip.Prefix {
		b := block.Addr().AsSlice()
		b[len(b)-1] = host
		a, _ := netip.AddrFromSlice(b)
		return netip.PrefixFrom(a, bits+extra)
	}
	drop, prohibit, blackhole := at(128, 25), at(64, 27), at(96, 28)
	if firewall {
		l.Nft(t, l.Prober, fmt.Sprintf(`table inet local {
	chain output {
		type filter hook output priority 0;
		%s daddr %v drop
	}
}`, family, drop))
	} else {
		drop = netip.Prefix{}
	}
	l.Run(t, l.Prober, "ip", "route", "add", "prohibit", prohibit.String())
	l.Run(t, l.Prober, "ip", "route", "add", "blackhole", blackhole.String())
	want := func(a netip.Addr, port uint16) string {
		switch {
		case drop.IsValid() && drop.Contains(a):
			return "error/local-firewall"
		case prohibit.Contains(a):
			return "error/local-prohibit"
		case blackhole.Contains(a):
			return "error/local-discarded"
		case port == 22 || port == 80:
			return "open/syn-ack"
		}
		return "closed/rst"
	}
	return l, block, want
}

// TestIntegrationScanLocalBlocks: probes the host's own routes or output
// firewall refuse are reported as such, each on its own; every other
// probe is sent and judged; and nothing reaches the blocked addresses,
// whether the scan is small (raw sockets) or big enough for the fast
// paths.
func TestIntegrationScanLocalBlocks(t *testing.T) {
	for _, tt := range []struct {
		name     string
		ports    string
		n        int
		firewall bool
		v6       bool
	}{{"small", "20-23,80", 5, true, false}, {"big", "1-64,80", 65, true, false}, {"big, routes only", "1-64,80", 65, false, false},
		{"IPv6 small", "20-23,80", 5, true, true}, {"IPv6 big", "1-64,80", 65, true, true}} {
		t.Run(tt.name, func(t *testing.T) {
			l, v4, want := localBlockLab(t, tt.firewall, tt.v6)
			resolveNeighbours(t, l)
			// The SYNs, IPv4's and IPv6's (no extension headers here).
			capt := l.StartCapture(t, l.Target, l.TargetIf, "(tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0) or (ip6 and ip6[6] == 6 and ip6[53] & 0x12 == 0x02)")
			block := v4.String()
			if tt.v6 {
				block = "[" + block + "]"
			}
			r := runIn(t, l, l.Prober, "scan", "--json", "--rate", "0", "-w", "0.3", block+":"+tt.ports)
			if r.code != exitFailure {
				t.Errorf("exit %d, want %d: probes were not sent\n%s", r.code, exitFailure, r.stderr)
			}
			got, summary := scanResults(t, r)
			ports := []uint16{80}
			lo, hi := 20, 23
			if tt.n == 65 {
				lo, hi = 1, 64
			}
			for p := lo; p <= hi; p++ {
				ports = append(ports, uint16(p))
			}
			pairs, wrong := checkVerdicts(t, got, want, map[netip.Prefix][]uint16{v4: ports})
			blocked := 32 + 16
			if tt.firewall {
				blocked += 128
			}
			if wrong > 0 || len(got) != pairs || summary["errors"] != float64(blocked*tt.n) {
				t.Errorf("%d wrong of %d results for %d pairs; summary %v", wrong, len(got), pairs, summary)
			}
			t.Logf("sent as %v", summary["path"])
			pkts, err := capt.Stop()
			if err != nil {
				t.Fatal(err)
			}
			reached, seen := 0, map[netip.AddrPort]bool{}
			for _, c := range pkts {
				var p wire.Packet
				if wire.Parse(c.Data, &p) != nil || p.Flags != wire.FlagSyn {
					continue
				}
				if strings.HasPrefix(want(p.Dst, p.DstPort), "error/") {
					reached++
				}
				seen[netip.AddrPortFrom(p.Dst, p.DstPort)] = true
			}
			if reached > 0 {
				t.Errorf("%d SYNs reached addresses the prober's routes or firewall block", reached)
			}
			// The capture is a witness: it saw every pair that was sent.
			if len(seen) != pairs-blocked*tt.n {
				t.Errorf("the capture saw SYNs for %d pairs, want %d", len(seen), pairs-blocked*tt.n)
			}
			if ss := l.Run(t, l.Target, "ss", "-Htan", "state", "syn-recv"); strings.TrimSpace(ss) != "" {
				t.Errorf("half-open connections left:\n%s", ss)
			}
		})
	}
}

// TestIntegrationPingLocalBlocks: ping mode over targets behind the
// prober's own prohibit and blackhole routes and output firewall, beside
// one it can reach. Each blocked target's probes are reported with the
// kernel's reason, and never stop the others: the reachable target is
// probed every time (the capture) and the run exits 3. With nothing of a
// family routed, the run fails in one line that says what the error means.
func TestIntegrationPingLocalBlocks(t *testing.T) {
	l, v4, want := localBlockLab(t, true, false)
	resolveNeighbours(t, l)
	b := v4.Addr().As4()
	at := func(host byte) netip.Addr { b[3] = host; return netip.AddrFrom4(b) }
	good := at(2)
	targets := []netip.Addr{at(65), good, at(97), at(130)} // prohibit, open, blackhole, firewall
	capt := l.StartCapture(t, l.Target, l.TargetIf, "tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0")
	args := []string{"--json", "-c", "3", "-i", "0.05", "-w", "0.5"}
	for _, a := range targets {
		args = append(args, hostPort(a, 22))
	}
	r := runIn(t, l, l.Prober, args...)
	if r.code != exitFailure || r.stderr != "" {
		t.Errorf("exit %d, stderr %q; want %d", r.code, r.stderr, exitFailure)
	}
	probes, summaries := map[netip.Addr]int{}, map[netip.Addr]map[string]any{}
	for _, m := range r.lines {
		a := netip.MustParseAddr(m["addr"].(string))
		switch m["type"] {
		case "probe":
			probes[a]++
			if v := m["state"].(string) + "/" + m["reason"].(string); v != want(a, 22) {
				t.Errorf("%v: %s, want %s", a, v, want(a, 22))
			}
		case "summary":
			summaries[a] = m
		}
	}
	for _, a := range targets {
		sent, errs := 3.0, 0.0
		if a != good {
			sent, errs = 0, 3
		}
		if s := summaries[a]; probes[a] != 3 || s == nil || s["sent"] != sent || s["errors"] != errs {
			t.Errorf("%v: %d probe lines, summary %v; want 3, %v sent, %v not sent", a, probes[a], s, sent, errs)
		}
	}
	pkts, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	reached := map[netip.Addr]int{}
	for _, c := range pkts {
		var p wire.Packet
		if wire.Parse(c.Data, &p) == nil {
			reached[p.Dst]++
		}
	}
	if len(reached) != 1 || reached[good] != 3 {
		t.Errorf("SYNs on the target's link: %v; want 3 to %v alone", reached, good)
	}
	// A family with no route at all: nothing to send from.
	one := runIn(t, l, l.Prober, "-c", "1", hostPort(at(65), 22))
	if one.code != exitFailure || one.stdout != "" || strings.Count(one.stderr, "\n") != 1 || !strings.Contains(one.stderr, "a prohibit route") {
		t.Errorf("exit %d, stdout %q, stderr %q; want %d and one line saying why", one.code, one.stdout, one.stderr, exitFailure)
	}
}

// TestIntegrationTargetFileMemory: a target file of 1,048,576 lines (256
// hosts, 4096 ports each, one pair a line with its expectation) is
// scanned in bounded memory: the file's text is not kept, and each line
// costs some tens of bytes.
func TestIntegrationTargetFileMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("a million probes")
	}
	l, v4, _ := scanLab(t, 22, 80)
	f := filepath.Join(t.TempDir(), "targets.txt")
	var b bytes.Buffer
	b.WriteString("# every pair of the lab, one a line\n")
	for a := v4.Addr(); v4.Contains(a); a = a.Next() {
		for port := 1; port <= 4096; port++ {
			state := "closed"
			if port == 22 || port == 80 {
				state = "open"
			}
			fmt.Fprintf(&b, "%v:%d=%s\n", a, port, state)
		}
	}
	if err := os.WriteFile(f, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	resolveNeighbours(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// GNU time reports its child's peak: synprobe's own. (The test's own
	// child would not do: a child made with vfork counts the memory of
	// the process it came from, a big one under -race.)
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		t.Skip("needs /usr/bin/time (apt install time)")
	}
	cmd := l.Command(ctx, l.Prober, "/usr/bin/time", "-f", "maxrss %M KiB", synprobeBinary(t), "scan", "--open", "--rate", "0", "-w", "0.5", "-f", f)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("%v:\n%s", err, lastLines(out, 10))
	}
	if !strings.Contains(string(out), "--- scan of 1048576 pairs: 512 open, 1048064 closed") || !strings.Contains(string(out), "every pair is as expected") {
		t.Errorf("output:\n%s", lastLines(out, 10))
	}
	var kib int64
	if i := strings.LastIndex(string(out), "maxrss "); i < 0 {
		t.Fatalf("no peak from /usr/bin/time:\n%s", lastLines(out, 5))
	} else if _, err := fmt.Sscanf(string(out[i:]), "maxrss %d KiB", &kib); err != nil {
		t.Fatal(err)
	}
	t.Logf("1048576 lines: peak RSS %d MiB", kib>>10)
	if kib > 160<<10 {
		t.Errorf("peak RSS %d MiB, want at most 160 MiB", kib>>10)
	}
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// lossyVerdictLab is verdictLab through a forwarder that holds every frame
// 25 ms and drops 10% each way at random.
func lossyVerdictLab(t *testing.T) *netlab.Lab {
	l := netlab.NewLossyLab(t, 25*time.Millisecond, netlab.Loss{ToTarget: 0.1, ToProber: 0.1})
	setUpVerdicts(t, l)
	return l
}

// TestIntegrationScanLossy: through 10% loss each way and 50 ms of RTT, a
// scan with enough retries gets every verdict exact: a lost SYN or a lost
// answer costs a retry, never a wrong verdict.
func TestIntegrationScanLossy(t *testing.T) {
	l := lossyVerdictLab(t)
	want := func(_ netip.Addr, port uint16) string {
		switch port {
		case 80:
			return "open/syn-ack"
		case 81:
			return "filtered/timeout"
		case 82:
			return "filtered/icmp-admin-prohibited"
		}
		return "closed/rst"
	}
	// Each attempt at a pair fails with probability 1-0.9², 19%; nine
	// attempts all fail with 3e-7, for each of the 200 pairs.
	r := runIn(t, l, l.Prober, "scan", "--json", "--retries", "8", "-w", "0.5", l.TargetV4.String()+":60-159", "["+l.TargetV6.String()+"]:60-159")
	got, summary := scanResults(t, r)
	pairs, wrong := checkVerdicts(t, got, want, map[netip.Prefix][]uint16{
		netip.PrefixFrom(l.TargetV4, 32):  portRange(60, 159),
		netip.PrefixFrom(l.TargetV6, 128): portRange(60, 159),
	})
	if wrong > 0 || len(got) != pairs {
		t.Errorf("%d wrong of %d results for %d pairs; summary %v", wrong, len(got), pairs, summary)
	}
	t.Logf("summary: %v", summary)
}

// TestIntegrationVerdictsLossy: ping mode through the same loss: a probe
// whose SYN or answer was lost times out (loss, as ping counts it), and
// every answered probe has its port's true verdict.
func TestIntegrationVerdictsLossy(t *testing.T) {
	l := lossyVerdictLab(t)
	want := map[uint16]string{80: "open/syn-ack", 81: "filtered/timeout", 82: "filtered/icmp-admin-prohibited", 83: "closed/rst", 84: "closed/rst"}
	for _, a := range []netip.Addr{l.TargetV4, l.TargetV6} {
		args := []string{"--json", "-c", "10", "-i", "0.02", "-w", "0.5"}
		for port := range want {
			args = append(args, hostPort(a, port))
		}
		r := runIn(t, l, l.Prober, args...)
		right := map[uint16]int{}
		for _, m := range r.lines {
			if m["type"] != "probe" {
				continue
			}
			port := uint16(m["port"].(float64))
			switch v := m["state"].(string) + "/" + m["reason"].(string); v {
			case want[port]:
				right[port]++
			case "filtered/timeout": // lost on the way
			default:
				t.Errorf("%v:%d: %s, want %s", a, port, v, want[port])
			}
		}
		for port := range want {
			if right[port] == 0 {
				t.Errorf("%v:%d: no probe of 10 got its verdict", a, port)
			}
		}
	}
}

func portRange(lo, hi uint16) []uint16 {
	var out []uint16
	for p := lo; p <= hi; p++ {
		out = append(out, p)
	}
	return out
}

// TestIntegrationResetAfterLostFIN: when our FIN never reaches the server
// (a rule in the target drops it), the close is no-ack and synprobe resets
// the connection where the server stands: its RCV.NXT is our FIN's
// sequence number, not the one after it (a RST there would draw a
// challenge ACK and leave the connection ESTABLISHED for good).
func TestIntegrationResetAfterLostFIN(t *testing.T) {
	l := closeLab(t)
	l.Nft(t, l.Target, fmt.Sprintf(`table inet lab {
	chain input {
		type filter hook input priority 0;
		tcp dport %d tcp flags & fin == fin drop
	}
}`, portNever))
	for _, a := range []netip.Addr{l.TargetV4, l.TargetV6} {
		r := runIn(t, l, l.Prober, "--json", "--mode", "fin", "-c", "1", "--close-timeout", "1", "--data", "hello", hostPort(a, portNever))
		for _, m := range r.lines {
			if m["type"] == "probe" {
				if cl, _ := m["close"].(map[string]any); cl == nil || cl["pattern"] != "no-ack" {
					t.Errorf("%v: %v, want close no-ack", a, m)
				}
			}
		}
	}
	// The server learns of the RST at once; give the kernel a moment.
	deadline := time.Now().Add(2 * time.Second)
	for {
		bad := leftovers(t, l, nil)
		if len(bad) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server keeps the connections:\n%s", strings.Join(bad, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIntegrationLinkLocalSource: a prober whose only IPv6 address is
// link-local. Beyond a router only the router's own addresses can answer
// it (the router forwards nothing from a link-local source: the kernel's
// own connection to the target fails with EHOSTUNREACH, to the router's
// far address it succeeds): the run probes both, finds the router's
// address open and the target filtered, and warns once why. -S with the
// link-local address, zoned or not, probes an on-link host (a zoned -S
// was refused by ping and made every scan answer unmatched: filtered).
func TestIntegrationLinkLocalSource(t *testing.T) {
	l := netlab.NewChainLab(t, 1)
	l.VerdictPorts(t)
	r := l.Routers[0]
	l.Run(t, l.Prober, "ip", "-6", "addr", "flush", "dev", l.ProberIf, "scope", "global")
	l.Run(t, l.Prober, "ip", "-6", "route", "replace", netip.PrefixFrom(r.InV6, 64).Masked().String(), "dev", l.ProberIf)
	l.Run(t, l.Prober, "ip", "-6", "route", "replace", netip.PrefixFrom(l.TargetV6, 64).Masked().String(), "via", r.InV6.String(), "dev", l.ProberIf)
	for _, a := range []netip.Addr{r.InV6, r.OutV6} {
		ln := l.Listen(t, r.NS, "tcp", netip.AddrPortFrom(a, netlab.PortOpen).String())
		netlab.Serve(ln, func(c net.Conn) { c.Close() })
	}
	var ll netip.Addr
	for _, f := range strings.Fields(l.Run(t, l.Prober, "ip", "-6", "-o", "addr", "show", "dev", l.ProberIf, "scope", "link")) {
		if p, err := netip.ParsePrefix(f); err == nil && p.Addr().IsLinkLocalUnicast() {
			ll = p.Addr()
		}
	}
	routerFar, target := netip.AddrPortFrom(r.OutV6, netlab.PortOpen), netip.AddrPortFrom(l.TargetV6, netlab.PortOpen)

	// The witness: the kernel's own connections from the same source.
	dial := func(dst netip.AddrPort) (err error) {
		l.InNS(l.Prober, func() error {
			var c net.Conn
			if c, err = net.DialTimeout("tcp6", dst.String(), 3*time.Second); err == nil {
				c.Close()
			}
			return nil
		})
		return err
	}
	if err := dial(target); !errors.Is(err, syscall.EHOSTUNREACH) {
		t.Fatalf("the kernel's own connection to %v: %v; want EHOSTUNREACH (the router refusing a link-local source)", target, err)
	}
	if err := dial(routerFar); err != nil {
		t.Fatalf("the kernel's own connection to the router's %v: %v", routerFar, err)
	}

	warning := fmt.Sprintf("synprobe: warning: source %v is link-local, and %v (and 1 more targets) lies beyond router %v, which forwards nothing from a link-local source", ll, r.OutV6, r.InV6)
	for _, args := range [][]string{
		{"--json", "-c", "1", "-w", "0.5", routerFar.String(), target.String()},
		{"scan", "--json", "-w", "0.5", routerFar.String(), target.String()},
	} {
		run := runIn(t, l, l.Prober, args...)
		states := map[string]string{}
		for _, m := range run.lines {
			if m["type"] == "probe" || m["type"] == "result" {
				states[m["addr"].(string)] = m["state"].(string) + "/" + m["reason"].(string)
			}
		}
		code := exitNotOpen // a scan's exit says whether it ran, or --expect held
		if args[0] == "scan" {
			code = exitOK
		}
		if run.code != code || !strings.HasPrefix(run.stderr, warning) || strings.Count(run.stderr, "\n") != 1 ||
			states[r.OutV6.String()] != "open/syn-ack" || !strings.HasPrefix(states[l.TargetV6.String()], "filtered/") {
			t.Errorf("synprobe %s: exit %d, verdicts %v, stderr %q; want %d, %v open, %v filtered, and one line starting %q",
				strings.Join(args, " "), run.code, states, run.stderr, code, r.OutV6, l.TargetV6, warning)
		}
	}

	onLink := netip.AddrPortFrom(r.InV6, netlab.PortOpen).String()
	for _, args := range [][]string{
		{"--json", "-c", "1", "-S", ll.String(), onLink},
		{"--json", "-c", "1", "-S", ll.String() + "%" + l.ProberIf, onLink},
		{"scan", "--json", "-S", ll.String() + "%" + l.ProberIf, onLink},
	} {
		run := runIn(t, l, l.Prober, args...)
		open := 0
		for _, m := range run.lines {
			if (m["type"] == "probe" || m["type"] == "result") && m["state"] == "open" && m["src"] == ll.String() {
				open++
			}
		}
		if run.code != exitOK || run.stderr != "" || open != 1 {
			t.Errorf("synprobe %s: exit %d, stderr %q, %d open from %v; want 0 and one", strings.Join(args, " "), run.code, run.stderr, open, ll)
		}
	}

	// Another interface's link-local address: the answers would go to
	// it on out0's link, where nothing has it (the kernel's own
	// connection: ENETUNREACH). Refused, and nothing leaves.
	l.Run(t, l.Prober, "ip", "link", "add", "spv0", "type", "veth", "peer", "name", "spv1") // gone with the namespace
	l.Run(t, l.Prober, "ip", "link", "set", "spv0", "up")
	l.Run(t, l.Prober, "ip", "link", "set", "spv1", "up")
	var other netip.Addr
	for range 50 { // the kernel gives the address once the link is up
		for _, f := range strings.Fields(l.Run(t, l.Prober, "ip", "-6", "-o", "addr", "show", "dev", "spv0", "scope", "link")) {
			if p, err := netip.ParsePrefix(f); err == nil && p.Addr().IsLinkLocalUnicast() {
				other = p.Addr()
			}
		}
		if other.IsValid() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !other.IsValid() {
		t.Fatal("spv0 has no link-local address")
	}
	capt := l.StartCapture(t, l.Prober, l.ProberIf, "ip6 and tcp")
	for _, args := range [][]string{{"-c", "1", "-S", other.String(), onLink}, {"scan", "-S", other.String(), onLink}} {
		run := runIn(t, l, l.Prober, args...)
		if run.code != exitFailure || strings.Count(run.stderr, "\n") != 1 || !strings.Contains(run.stderr, "is link-local to another interface than the route to") {
			t.Errorf("synprobe %s: exit %d, stdout %q, stderr %q; want %d and one line", strings.Join(args, " "), run.code, run.stdout, run.stderr, exitFailure)
		}
	}
	if pkts, err := capt.Stop(); err != nil || len(pkts) != 0 {
		t.Errorf("%d packets left from another interface's address (%v)", len(pkts), err)
	}
}

// TestIntegrationSecondarySource: -S with an interface's secondary
// address, whose local route gives the primary address as its source,
// is this host's: ping and scan send from it (a capture shows the SYNs'
// source) and find the port open. It was refused as not an address of
// this host.
func TestIntegrationSecondarySource(t *testing.T) {
	l := netlab.New(t)
	l.VerdictPorts(t)
	b := l.ProberV4.As4()
	b[3] = 3
	second := netip.AddrFrom4(b)
	l.Run(t, l.Prober, "ip", "addr", "add", second.String()+"/24", "dev", l.ProberIf)
	capt := l.StartCapture(t, l.Prober, l.ProberIf, "tcp[tcpflags] & tcp-syn != 0 and tcp[tcpflags] & tcp-ack == 0")
	dst := hostPort(l.TargetV4, netlab.PortOpen)
	for _, args := range [][]string{{"--json", "-c", "1", "-S", second.String(), dst}, {"scan", "--json", "-S", second.String(), dst}} {
		run := runIn(t, l, l.Prober, args...)
		if run.code != exitOK || run.stderr != "" || len(run.lines) == 0 || run.lines[0]["src"] != second.String() || run.lines[0]["state"] != "open" {
			t.Errorf("synprobe %s: exit %d, stderr %q, first line %v; want 0 and open from %v", strings.Join(args, " "), run.code, run.stderr, run.lines, second)
		}
	}
	pkts, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range pkts {
		var p wire.Packet
		if wire.Parse(c.Data, &p) == nil && p.Src != second {
			t.Errorf("a SYN from %v", p.Src)
		}
	}
	if len(pkts) != 2 {
		t.Errorf("%d SYNs captured; want 2", len(pkts))
	}
}

// TestIntegrationSourcePolicyRoute: this host's rules route packets from
// a secondary address through the lab's target (ip rule from ADDR lookup
// 100), its main table another way, to a dead end. The kernel's own
// connection from that address reaches the port; synprobe's raw sockets
// route by the destination alone, so its probes went the main table's
// way and read as filtered. Ping and scan from that source now refuse
// with one line (exit 3), and nothing leaves towards the dead end.
func TestIntegrationSourcePolicyRoute(t *testing.T) {
	l := netlab.New(t)
	b := l.ProberV4.As4()
	b[3] = 5
	second := netip.AddrFrom4(b)
	far := netip.MustParseAddr("198.18.253.2")
	for _, args := range [][]string{
		{"addr", "add", second.String() + "/24", "dev", l.ProberIf},
		{"link", "add", "spv0", "type", "veth", "peer", "name", "spv1"}, // gone with the namespace
		{"link", "set", "spv0", "up"},
		{"link", "set", "spv1", "up"},
		{"addr", "add", "198.18.254.1/24", "dev", "spv0"},
		{"route", "add", "198.18.253.0/24", "dev", "spv0"},
		{"route", "add", "198.18.253.0/24", "via", l.TargetV4.String(), "dev", l.ProberIf, "table", "100"},
		{"rule", "add", "from", second.String(), "lookup", "100"},
	} {
		l.Run(t, l.Prober, "ip", args...)
	}
	l.Run(t, l.Target, "ip", "addr", "add", far.String()+"/32", "dev", "lo")
	ln := l.Listen(t, l.Target, "tcp", netip.AddrPortFrom(far, netlab.PortOpen).String())
	netlab.Serve(ln, func(c net.Conn) { c.Close() })
	target := netip.AddrPortFrom(far, netlab.PortOpen)

	// The witness: the kernel's own connection from that source.
	var dialErr error
	l.InNS(l.Prober, func() error {
		d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: second.AsSlice()}}
		c, err := d.Dial("tcp4", target.String())
		if err == nil {
			c.Close()
		}
		dialErr = err
		return nil
	})
	if dialErr != nil {
		t.Fatalf("the kernel's own connection from %v to %v: %v", second, target, dialErr)
	}
	capt := l.StartCapture(t, l.Prober, "spv0", "tcp")
	for _, args := range [][]string{{"-c", "1", "-w", "0.5", "-S", second.String(), target.String()}, {"scan", "-w", "0.5", "-S", second.String(), target.String()}} {
		run := runIn(t, l, l.Prober, args...)
		if run.code != exitFailure || strings.Count(run.stderr, "\n") != 1 || !strings.Contains(run.stderr, "this host's routing rules send its packets to "+far.String()+" through "+l.ProberIf) {
			t.Errorf("synprobe %s: exit %d, stdout %q, stderr %q; want %d and one line", strings.Join(args, " "), run.code, run.stdout, run.stderr, exitFailure)
		}
	}
	pkts, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 0 {
		t.Errorf("%d packets left towards the dead end", len(pkts))
	}

	// Not refused where the probes go the rules' way after all: bound
	// to the interface the rules take (-I), whose main-table route
	// there goes the same way; and a source no rule selects, whose
	// route is a multipath one (the two lookups' hashes may pick other
	// next hops of one route: the same table).
	l.Run(t, l.Prober, "ip", "route", "add", "198.18.253.0/24", "via", l.TargetV4.String(), "dev", l.ProberIf, "metric", "200")
	b[3] = 3
	second2 := netip.AddrFrom4(b)
	l.Run(t, l.Target, "ip", "addr", "add", second2.String()+"/24", "dev", l.TargetIf)
	far2 := netip.MustParseAddr("198.18.252.2")
	l.Run(t, l.Target, "ip", "addr", "add", far2.String()+"/32", "dev", "lo")
	ln2 := l.Listen(t, l.Target, "tcp", netip.AddrPortFrom(far2, netlab.PortOpen).String())
	netlab.Serve(ln2, func(c net.Conn) { c.Close() })
	l.Run(t, l.Prober, "ip", "route", "add", "198.18.252.0/24", "nexthop", "via", l.TargetV4.String(), "nexthop", "via", second2.String())
	for _, args := range [][]string{
		{"--json", "-c", "1", "-w", "1", "-I", l.ProberIf, "-S", second.String(), target.String()},
		{"scan", "--json", "-w", "1", "-I", l.ProberIf, "-S", second.String(), target.String()},
		{"--json", "-c", "1", "-w", "1", "-S", l.ProberV4.String(), netip.AddrPortFrom(far2, netlab.PortOpen).String()},
		{"scan", "--json", "-w", "1", "-S", l.ProberV4.String(), netip.AddrPortFrom(far2, netlab.PortOpen).String()},
	} {
		run := runIn(t, l, l.Prober, args...)
		if run.stderr != "" || len(run.lines) == 0 || run.lines[0]["state"] != "open" {
			t.Errorf("synprobe %s: exit %d, first line %v, stderr %q; want open", strings.Join(args, " "), run.code, run.lines, run.stderr)
		}
	}
}
