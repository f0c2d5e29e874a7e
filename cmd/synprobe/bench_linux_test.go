//go:build linux

package main

import (
	"bufio"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// The benchmarks here measure the whole binary in a namespace lab; run them
// as root with -benchtime=1x (scripts/bench-rtt.sh does): each iteration is
// a full measurement with its own probe count.

// BenchmarkRTTAccuracy reports |synprobe RTT - capture RTT| over 300
// probes per address family: the capture on the prober's veth is the
// independent clock.
func BenchmarkRTTAccuracy(b *testing.B) {
	for range b.N {
		for _, fam := range []string{"v4", "v6"} {
			l := verdictLab(b)
			dst, src := l.TargetV4, l.ProberV4
			if fam == "v6" {
				dst, src = l.TargetV6, l.ProberV6
			}
			c := l.StartCapture(b, l.Prober, l.ProberIf, "tcp port 80")
			r := runIn(b, l, l.Prober, "--json", "-c", "300", "-i", "0.005", hostPort(dst, 80))
			pkts, err := c.Stop()
			if err != nil || r.code != exitOK {
				b.Fatalf("capture %v, exit %d %s", err, r.code, r.stderr)
			}
			errs := compareWithCapture(b, r.lines, captureRTTs(b, pkts, src))
			if len(errs) < 290 {
				b.Fatalf("only %d probes compared", len(errs))
			}
			us := func(d time.Duration) float64 { return float64(d) / 1e3 }
			b.ReportMetric(us(errs[len(errs)/2]), "median-err-µs-"+fam)
			b.ReportMetric(us(errs[len(errs)*99/100]), "p99-err-µs-"+fam)
			b.ReportMetric(us(errs[len(errs)-1]), "max-err-µs-"+fam)
			b.ReportMetric(float64(len(errs)), "probes-"+fam)
			b.Logf("%s: %d probes, |synprobe - capture| median %.3f µs, p99 %.3f µs, max %.3f µs",
				fam, len(errs), us(errs[len(errs)/2]), us(errs[len(errs)*99/100]), us(errs[len(errs)-1]))
			// The same exchange by the tools users compare with, when
			// installed: hping3 and nping print their own RTTs per probe.
			for _, tool := range []string{"hping3", "nping"} {
				if _, err := exec.LookPath(tool); err != nil {
					continue
				}
				med, n := toolError(b, tool, dst, src, func(args ...string) ([]byte, []rawsockPkt) {
					c := l.StartCapture(b, l.Prober, l.ProberIf, "tcp port 80")
					out, _ := l.Command(b.Context(), l.Prober, args[0], args[1:]...).CombinedOutput()
					p, _ := c.Stop()
					return out, capturedPkts(p)
				})
				if n > 0 {
					b.Logf("%s %s: %d probes, |tool - capture| median %.3f µs", fam, tool, n, us(med))
					b.ReportMetric(us(med), tool+"-median-err-µs-"+fam)
				}
			}
		}
	}
}

// BenchmarkOneShot reports the wall time of a whole `synprobe -c 1` run
// against a lab listener, process start to exit (ip netns exec included,
// which alone costs about 3 ms here; its cost is reported separately).
func BenchmarkOneShot(b *testing.B) {
	for range b.N {
		l := verdictLab(b)
		bin := synprobeBinary(b)
		measure := func(name string, args ...string) time.Duration {
			var walls []time.Duration
			for range 30 {
				start := time.Now()
				if err := l.Command(b.Context(), l.Prober, name, args...).Run(); err != nil {
					if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() > 1 {
						b.Fatalf("%s: %v", name, err)
					}
				}
				walls = append(walls, time.Since(start))
			}
			slices.Sort(walls)
			return walls[len(walls)/2]
		}
		base := measure("true")
		ours := measure(bin, "-c", "1", "-q", hostPort(l.TargetV4, 80))
		b.ReportMetric(float64(ours)/1e6, "synprobe-c1-ms")
		b.ReportMetric(float64(base)/1e6, "netns-exec-ms")
		b.Logf("synprobe -c 1: median %v wall (ip netns exec alone: %v)", ours, base)
		if _, err := exec.LookPath("hping3"); err == nil {
			h := measure("hping3", "-S", "-p", "80", "-c", "1", "-q", l.TargetV4.String())
			b.ReportMetric(float64(h)/1e6, "hping3-c1-ms")
			b.Logf("hping3 -c 1: median %v wall", h)
		}
	}
}

type rawsockPkt struct {
	t time.Time
	p wire.Packet
}

// labserverBinary builds internal/labserver once per benchmark.
func labserverBinary(b *testing.B) string {
	p := filepath.Join(b.TempDir(), "labserver")
	if out, err := exec.Command("go", "build", "-o", p, "../../internal/labserver").CombinedOutput(); err != nil {
		b.Fatalf("build labserver: %v\n%s", err, out)
	}
	return p
}

// capturedPkts parses a capture's TCP packets.
func capturedPkts(c []netlab.CapturedPacket) []rawsockPkt {
	var out []rawsockPkt
	for _, x := range c {
		var p wire.Packet
		if wire.Parse(x.Data, &p) == nil && p.Proto == wire.ProtocolTCP {
			out = append(out, rawsockPkt{x.Time, p})
		}
	}
	return out
}

var hpingRTT = regexp.MustCompile(`seq=(\d+) .*rtt=([0-9.]+) ms`)

// toolError runs tool for 200 probes and returns the median |tool RTT -
// capture RTT|, pairing the i-th SYN with the tool's i-th reported RTT.
func toolError(b *testing.B, tool string, dst, src netip.Addr, run func(args ...string) ([]byte, []rawsockPkt)) (time.Duration, int) {
	var args []string
	fam := "-4"
	if dst.Is6() {
		fam = "-6"
	}
	switch tool {
	case "hping3":
		if dst.Is6() {
			return 0, 0 // hping3 has no IPv6
		}
		args = []string{"hping3", "-S", "-p", "80", "-c", "200", "-i", "u5000", dst.String()}
	case "nping":
		args = []string{"nping", fam, "--tcp", "-p", "80", "--flags", "syn", "-c", "200", "--delay", "5ms", "-v1", dst.String()}
	}
	out, pkts := run(args...)
	var syns, replies []time.Time
	for _, c := range pkts {
		switch {
		case c.p.Src == src && c.p.Flags == wire.FlagSyn:
			syns = append(syns, c.t)
		case c.p.Dst == src && c.p.Flags == wire.FlagSyn|wire.FlagAck:
			replies = append(replies, c.t)
		}
	}
	var toolRTT []time.Duration
	switch tool {
	case "hping3":
		for _, m := range hpingRTT.FindAllStringSubmatch(string(out), -1) {
			ms, _ := strconv.ParseFloat(m[2], 64)
			toolRTT = append(toolRTT, time.Duration(ms*1e6))
		}
	case "nping":
		// nping prints send and receive times; its RTT is the "Avg rtt"
		// only, so per probe we take RCVD - SENT of its own lines.
		sent := regexp.MustCompile(`SENT \(([0-9.]+)s\) TCP`).FindAllStringSubmatch(string(out), -1)
		rcvd := regexp.MustCompile(`RCVD \(([0-9.]+)s\) TCP`).FindAllStringSubmatch(string(out), -1)
		for i := range min(len(sent), len(rcvd)) {
			s, _ := strconv.ParseFloat(sent[i][1], 64)
			r, _ := strconv.ParseFloat(rcvd[i][1], 64)
			toolRTT = append(toolRTT, time.Duration((r-s)*1e9))
		}
	}
	n := min(len(syns), len(replies), len(toolRTT))
	var errs []time.Duration
	for i := range n {
		errs = append(errs, (toolRTT[i] - replies[i].Sub(syns[i])).Abs())
	}
	if len(errs) == 0 {
		return 0, 0
	}
	slices.Sort(errs)
	return errs[len(errs)/2], len(errs)
}

// BenchmarkCloseAccuracy compares fin mode's close timings (our FIN -> the
// peer's ACK, our FIN -> its FIN) with a capture of the same exchanges,
// and measures the time each probe spends on our side: from a peer's
// segment to our answer (SYN-ACK -> ACK, peer FIN -> final ACK) plus how
// late our FIN leaves after the hold.
func BenchmarkCloseAccuracy(b *testing.B) {
	const hold = 20 * time.Millisecond
	for range b.N {
		for _, srv := range []struct {
			name string
			port uint16
		}{{"close-at-EOF", portEOF}, {"close-later", portDelay}} {
			l := closeLab(b)
			c := l.StartCapture(b, l.Prober, l.ProberIf, "tcp")
			r := runIn(b, l, l.Prober, "--json", "--mode", "fin", "-c", "100", "-i", "0.005", "--hold", hold.String(), hostPort(l.TargetV4, srv.port))
			pkts, err := c.Stop()
			if err != nil || r.code != exitOK {
				b.Fatalf("capture %v, exit %d %s", err, r.code, r.stderr)
			}
			type conn struct {
				synack, ack, fin, peerAck, peerFin, lastAck time.Time
				finSeq                                      uint32
			}
			conns := map[uint16]*conn{}
			for _, cp := range capturedPkts(pkts) {
				p := &cp.p
				if p.Src == l.ProberV4 {
					k := conns[p.SrcPort]
					if k == nil {
						k = &conn{}
						conns[p.SrcPort] = k
					}
					switch {
					case p.Flags == wire.FlagAck && k.ack.IsZero():
						k.ack = cp.t
					case p.Flags&wire.FlagFin != 0 && k.fin.IsZero():
						k.fin, k.finSeq = cp.t, p.Seq
					case p.Flags == wire.FlagAck && !k.peerFin.IsZero() && k.lastAck.IsZero():
						k.lastAck = cp.t
					}
					continue
				}
				k := conns[p.DstPort]
				if k == nil {
					continue
				}
				switch {
				case p.Flags == wire.FlagSyn|wire.FlagAck && k.synack.IsZero():
					k.synack = cp.t
				case !k.fin.IsZero() && p.Ack == k.finSeq+1 && k.peerAck.IsZero():
					k.peerAck = cp.t
				}
				if p.Flags&wire.FlagFin != 0 && k.peerFin.IsZero() {
					k.peerFin = cp.t
				}
			}
			var ackErr, finErr, overhead []time.Duration
			patterns := map[string]int{}
			for _, m := range r.lines {
				if m["type"] != "probe" {
					continue
				}
				k := conns[uint16(m["sport"].(float64))]
				cl := m["close"].(map[string]any)
				if k == nil || k.peerAck.IsZero() || k.peerFin.IsZero() || k.lastAck.IsZero() {
					b.Fatalf("probe %v: capture %+v, close %v", m["sport"], k, cl)
				}
				patterns[cl["pattern"].(string)]++
				us := func(key string) time.Duration { return time.Duration(cl[key].(float64) * 1e3) }
				ackErr = append(ackErr, (us("ack_us") - k.peerAck.Sub(k.fin)).Abs())
				finErr = append(finErr, (us("fin_us") - k.peerFin.Sub(k.fin)).Abs())
				overhead = append(overhead, k.ack.Sub(k.synack)+k.fin.Sub(k.ack.Add(hold))+k.lastAck.Sub(k.peerFin))
				if os.Getenv("SYNPROBE_BENCH_DEBUG") != "" {
					b.Logf("sa->ack %v, hold overshoot %v, peer fin->last ack %v", k.ack.Sub(k.synack), k.fin.Sub(k.ack.Add(hold)), k.lastAck.Sub(k.peerFin))
				}
			}
			b.Logf("%s server: patterns %v", srv.name, patterns)
			for _, s := range []struct {
				name string
				d    []time.Duration
			}{{"ack-err", ackErr}, {"fin-err", finErr}, {"overhead", overhead}} {
				slices.Sort(s.d)
				med, p99 := s.d[len(s.d)/2], s.d[len(s.d)*99/100]
				b.ReportMetric(float64(med)/1e3, srv.name+"-"+s.name+"-median-µs")
				b.ReportMetric(float64(p99)/1e3, srv.name+"-"+s.name+"-p99-µs")
				b.Logf("%s %s: median %.3f µs, p99 %.3f µs over %d probes", srv.name, s.name, float64(med)/1e3, float64(p99)/1e3, len(s.d))
			}
		}
	}
}

// BenchmarkScan256k scans 256 hosts × ports 1-1000 (three open per host)
// as fast as the machine allows, beside nmap -sS -T5 when installed, and
// reports wall time, open ports found and synprobe's peak memory.
func BenchmarkScan256k(b *testing.B) {
	for range b.N {
		// The listeners run as their own process: in this test process
		// they would compete with the measurement.
		l, v4, _ := scanLab(b)
		srv := labserverBinary(b)
		ls := l.Command(b.Context(), l.Target, srv, "-listen", "0.0.0.0:22", "-listen", "0.0.0.0:80", "-listen", "0.0.0.0:443")
		lsOut, _ := ls.StdoutPipe()
		if err := ls.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ls.Process.Kill(); ls.Wait() })
		if _, err := bufio.NewReader(lsOut).ReadString('\n'); err != nil {
			b.Fatalf("labserver: %v", err)
		}
		target := v4.String() + ":1-1000"
		start := time.Now()
		cmd := l.Command(b.Context(), l.Prober, synprobeBinary(b), "scan", "--open", "--json", "--rate", "0", target)
		out, err := cmd.Output()
		wall := time.Since(start)
		if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() != exitNotOpen) {
			b.Fatalf("synprobe: %v", err)
		}
		open := strings.Count(string(out), `"state":"open"`)
		var rss int64
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			rss = ru.Maxrss // KiB
		}
		summary := string(out[strings.LastIndex(string(out), `{"type":"scan-summary"`):])
		b.ReportMetric(wall.Seconds(), "synprobe-s")
		b.ReportMetric(float64(open), "synprobe-open")
		b.ReportMetric(float64(rss)/1024, "synprobe-MiB")
		b.Logf("synprobe: %d open in %v, peak RSS %d KiB; %s", open, wall, rss, strings.TrimSpace(summary))
		if _, err := exec.LookPath("nmap"); err == nil {
			start = time.Now()
			nout, err := l.Command(b.Context(), l.Prober, "nmap", "-sS", "-n", "-Pn", "-T5", "--min-rate", "100000", "-p1-1000", v4.String()).Output()
			nwall := time.Since(start)
			if err != nil {
				b.Fatalf("nmap: %v", err)
			}
			nopen := len(regexp.MustCompile(`(?m)^[0-9]+/tcp +open `).FindAll(nout, -1))
			b.ReportMetric(nwall.Seconds(), "nmap-s")
			b.ReportMetric(float64(nopen), "nmap-open")
			b.Logf("nmap -sS -T5 --min-rate 100000: %d open in %v", nopen, nwall)
		}
	}
}
