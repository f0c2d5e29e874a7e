//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/internal/pcap/pcapread"
	"github.com/synprobe/synprobe/rawsock/wire"
	"os"
	"path/filepath"
)

// traceLab is a chain of three Linux routers (r1, r2, r3) to a target
// that listens on 80 and 85 (84 is closed), v4 and v6, with nftables in
// the routers' forward hooks: r2 clamps the MSS of SYNs to and from 80 to
// 1200, rewrites SYNs to 85 (SACK-permitted and timestamps reset to
// NOPs, window 1024, ECE and CWR cleared, DSCP CS1, ECN field CE) and the sequence
// number of SYNs to 87 (not back: nothing answers); r3 drops SYNs to 81
// and rejects those to 82 with ICMP admin-prohibited. A lab per trace, so
// that no trace meets the ICMP rate limits another left.
func traceLab(t testing.TB) *netlab.Lab {
	t.Helper()
	l := netlab.NewChainLab(t, 3)
	for _, a := range []netip.Addr{l.TargetV4, l.TargetV6} {
		for _, port := range []uint16{80, 85} {
			ln := l.Listen(t, l.Target, "tcp", netip.AddrPortFrom(a, port).String())
			netlab.Serve(ln, func(c net.Conn) { c.Close() })
		}
	}
	l.Nft(t, l.Routers[1].NS, `table inet lab {
	chain rewrite {
		type filter hook forward priority mangle; policy accept;
		tcp dport 80 tcp flags & syn == syn tcp option maxseg size set 1200
		tcp sport 80 tcp flags & syn == syn tcp option maxseg size set 1200
		tcp dport 85 tcp flags & syn == syn reset tcp option sack-perm
		tcp dport 85 tcp flags & syn == syn reset tcp option timestamp
		tcp dport 85 tcp flags & syn == syn tcp window set 1024
		tcp dport 85 tcp flags == (syn | ecn | cwr) tcp flags set syn
		tcp dport 87 tcp flags & syn == syn tcp sequence set 305419896
		meta nfproto ipv4 tcp dport 85 ip dscp set cs1
		meta nfproto ipv6 tcp dport 85 ip6 dscp set cs1
		meta nfproto ipv4 tcp dport 85 ip ecn set ce
		meta nfproto ipv6 tcp dport 85 ip6 ecn set ce
	}
}`)
	l.Nft(t, l.Routers[2].NS, `table inet lab {
	chain rewrite {
		type filter hook forward priority filter; policy accept;
		tcp dport 81 drop
		tcp dport 82 reject with icmpx admin-prohibited
	}
}`)
	return l
}

// synsIn returns the SYNs to port that a capture saw.
func synsIn(t *testing.T, pkts []netlab.CapturedPacket, port uint16) []wire.Packet {
	t.Helper()
	var out []wire.Packet
	for _, c := range pkts {
		var p wire.Packet
		if wire.ParseChecksums(c.Data, &p, wire.ChecksumsNotReady) == nil && p.Proto == wire.ProtocolTCP &&
			p.Flags&(wire.FlagSyn|wire.FlagAck) == wire.FlagSyn && p.DstPort == port {
			out = append(out, p)
		}
	}
	return out
}

// hops returns the hop records of a trace run, and its trace record.
func traceRecords(t *testing.T, r cliRun) ([]map[string]any, map[string]any) {
	t.Helper()
	if len(r.lines) == 0 {
		t.Fatalf("no output; exit %d, stderr %s", r.code, r.stderr)
	}
	last := r.lines[len(r.lines)-1]
	if last["type"] != "trace" {
		t.Fatalf("last line %v", last)
	}
	for _, h := range r.lines[:len(r.lines)-1] {
		if h["type"] != "hop" {
			t.Fatalf("line %v", h)
		}
	}
	return r.lines[:len(r.lines)-1], last
}

// changes returns a record's changes as field sent→seen strings.
func changes(rec map[string]any) []string {
	out := []string{}
	list, _ := rec["changes"].([]any)
	for _, c := range list {
		m := c.(map[string]any)
		out = append(out, fmt.Sprintf("%s %s→%s", m["field"], m["sent"], m["seen"]))
	}
	return out
}

// routerAddr returns router i's address on the prober's side.
func routerAddr(l *netlab.Lab, i int, v6 bool) string {
	if v6 {
		return l.Routers[i].InV6.String()
	}
	return l.Routers[i].InV4.String()
}

// TestIntegrationTraceMSS: r2 clamps the MSS in its forward hook, so r2
// quotes the SYN as sent and r3 quotes MSS 1200: the change is made
// between hop 2 and hop 3, and the SYN-ACK, clamped on its way back too,
// shows 1200. Witnesses: captures on r2's and r3's inward links (1460
// before, 1200 after) and at the target, every SYN on one source port.
func TestIntegrationTraceMSS(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "v4", true: "v6"}[v6], func(t *testing.T) {
			l := traceLab(t)
			dst, mss := l.TargetV4, "1460"
			if v6 {
				dst, mss = l.TargetV6, "1440"
			}
			c2 := l.StartCapture(t, l.Routers[1].NS, "in0", "tcp port 80")
			c3 := l.StartCapture(t, l.Routers[2].NS, "in0", "tcp port 80")
			ct := l.StartCapture(t, l.Target, "in0", "tcp port 80")
			file := filepath.Join(pcapDir(t), "trace.pcapng")
			r := runIn(t, l, l.Prober, "trace", "--json", "--pcap", file, hostPort(dst, 80))
			hops, tr := traceRecords(t, r)
			if r.code != exitOK {
				t.Errorf("exit %d, want 0; stderr %s", r.code, r.stderr)
			}
			if len(hops) != 4 {
				t.Fatalf("%d hops: %v", len(hops), r.stdout)
			}
			// --pcap: the 12 SYNs sent, the 9 time-exceeded errors quoting
			// them and the 3 SYN-ACKs received.
			if f, err := os.Open(file); err != nil {
				t.Error(err)
			} else {
				recs, err := pcapread.Read(f)
				f.Close()
				var syns, icmps, synacks int
				var p wire.Packet
				for _, rec := range recs {
					if wire.Parse(rec.Data, &p) != nil {
						continue
					}
					switch {
					case rec.Sent && p.Proto == wire.ProtocolTCP && p.Flags == wire.FlagSyn:
						syns++
					case !rec.Sent && p.IsICMP():
						icmps++
					case !rec.Sent && p.Flags == wire.FlagSyn|wire.FlagAck:
						synacks++
					}
				}
				if err != nil || syns != 12 || icmps != 9 || synacks != 3 {
					t.Errorf("--pcap file: %d SYNs sent, %d ICMP errors and %d SYN-ACKs received (%v); want 12, 9, 3", syns, icmps, synacks, err)
				}
			}
			qlen := 60.0
			if v6 {
				qlen = 80
			}
			for i, h := range hops[:3] {
				want := []string{}
				if i == 2 {
					want = []string{"mss " + mss + "→1200"}
				}
				if h["ttl"] != float64(i+1) || h["from"] != routerAddr(l, i, v6) || h["answered"] != 3.0 || h["reply"] != "icmp-ttl-exceeded" ||
					h["quote_len"] != qlen || h["partial"] != false || h["clock"] != "kernel" || !reflect.DeepEqual(changes(h), want) {
					t.Errorf("hop %d: %v, changes %v (want %v)", i+1, h, changes(h), want)
				}
			}
			if h := hops[3]; h["from"] != dst.String() || h["reply"] != "syn-ack" || h["answered"] != 3.0 {
				t.Errorf("hop 4: %v", h)
			}
			ch, _ := tr["changes"].([]any)
			if tr["state"] != "open" || tr["reason"] != "syn-ack" || tr["hop"] != 4.0 || tr["from"] != dst.String() || tr["last_hop"] != 4.0 ||
				len(ch) != 1 || !reflect.DeepEqual(ch[0], map[string]any{"field": "mss", "sent": mss, "seen": "1200", "after": 2.0, "after_from": routerAddr(l, 1, v6), "at": 3.0, "at_from": routerAddr(l, 2, v6)}) {
				t.Errorf("trace record %v", tr)
			}
			sa, _ := tr["synack"].(map[string]any)
			if sa == nil || sa["mss"] != 1200.0 || !reflect.DeepEqual(changes(sa), []string{"mss " + mss + "→1200"}) {
				t.Errorf("synack %v", sa)
			}
			// The witnesses.
			sport := uint16(tr["sport"].(float64))
			for _, w := range []struct {
				c    *netlab.Capture
				name string
				n    int
				mss  string
			}{{c2, "r2 in", 9, mss}, {c3, "r3 in", 6, "1200"}, {ct, "target", 3, "1200"}} {
				pkts, err := w.c.Stop()
				if err != nil {
					t.Fatal(err)
				}
				syns := synsIn(t, pkts, 80)
				if len(syns) != w.n {
					t.Errorf("%s: %d SYNs, want %d (probes with TTL high enough)", w.name, len(syns), w.n)
				}
				for _, s := range syns {
					if s.SrcPort != sport || fmt.Sprint(s.Options.MSS) != w.mss {
						t.Errorf("%s: SYN from port %d (trace's %d) with MSS %d, want %s", w.name, s.SrcPort, sport, s.Options.MSS, w.mss)
					}
				}
			}
		})
	}
}

// TestIntegrationTraceRewrites: r2 rewrites SYNs to 85 in its forward
// hook; r3's quote shows each rewrite, made between hop 2 and hop 3, and
// the SYN-ACK answers what reached the target (no SACK, no timestamps,
// no ECN). Text output too: the change in the traceroute-like line.
func TestIntegrationTraceRewrites(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "v4", true: "v6"}[v6], func(t *testing.T) {
			l := traceLab(t)
			dst := l.TargetV4
			if v6 {
				dst = l.TargetV6
			}
			ct := l.StartCapture(t, l.Target, "in0", "tcp port 85")
			// ECT(0) in the IP header, ECE and CWR in TCP.
			r := runIn(t, l, l.Prober, "trace", "--json", "--ecn", "--tos", "2", "-q", "2", hostPort(dst, 85))
			hops, tr := traceRecords(t, r)
			want := []string{"dscp 0→8", "ecn ect0→ce", "flags SEC→S", "window 64240→1024", "sack-perm yes→nop", "ts yes→nop"}
			if len(hops) != 4 || !reflect.DeepEqual(changes(hops[2]), want) || len(changes(hops[1])) != 0 {
				t.Fatalf("hops: %v", r.stdout)
			}
			if got := changes(tr); len(got) != len(want) {
				t.Errorf("trace changes %v", got)
			}
			sa, _ := tr["synack"].(map[string]any)
			if wantSA := []string{"sack-perm yes→absent", "ts yes→absent", "ecn asked→refused"}; sa == nil || !reflect.DeepEqual(changes(sa), wantSA) {
				t.Errorf("synack %v, want changes %v", sa, wantSA)
			}
			pkts, err := ct.Stop()
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range synsIn(t, pkts, 85) {
				if s.Window != 1024 || s.Options.SACKPermitted || s.Options.Timestamps || s.Flags != wire.FlagSyn || s.TOS != 0x23 {
					t.Errorf("target got %+v", s)
				}
			}
			txt := runIn(t, l, l.Prober, "trace", "-q", "1", hostPort(dst, 85))
			t.Logf("synprobe trace -q 1 %s:\n%s", hostPort(dst, 85), txt.stdout)
			line := ""
			for _, ln := range strings.Split(txt.stdout, "\n") {
				if strings.HasPrefix(ln, " 3  ") {
					line = ln
				}
			}
			if !strings.Contains(line, routerAddr(l, 2, v6)) || !strings.Contains(line, "window 64240→1024") || !strings.Contains(line, "sack-perm yes→nop") || !strings.Contains(line, "ecn not-ect→ce") {
				t.Errorf("text hop 3 %q in\n%s", line, txt.stdout)
			}
		})
	}
}

// TestIntegrationTraceStops: a drop on r3 leaves r3 the last hop that
// answered (and no SYN reaches past r3: its outward capture); an
// admin-prohibited reject names r3 (which a capture on its inward link
// shows sending the errors); a closed port answers RST.
func TestIntegrationTraceStops(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "v4", true: "v6"}[v6], func(t *testing.T) {
			dstOf := func(l *netlab.Lab) netip.Addr {
				if v6 {
					return l.TargetV6
				}
				return l.TargetV4
			}
			t.Run("drop", func(t *testing.T) {
				l := traceLab(t)
				out := l.StartCapture(t, l.Routers[2].NS, "out0", "tcp port 81")
				r := runIn(t, l, l.Prober, "trace", "--json", "-w", "500ms", hostPort(dstOf(l), 81))
				hops, tr := traceRecords(t, r)
				if r.code != exitNotOpen || tr["state"] != "filtered" || tr["reason"] != "timeout" || tr["hop"] != nil ||
					tr["last_hop"] != 3.0 || tr["last_from"] != routerAddr(l, 2, v6) || len(hops) != 6 {
					t.Errorf("exit %d, %v, %d hops\n%s", r.code, tr, len(hops), r.stdout)
				}
				pkts, err := out.Stop()
				if err != nil {
					t.Fatal(err)
				}
				if n := len(synsIn(t, pkts, 81)); n != 0 {
					t.Errorf("%d SYNs left r3", n)
				}
			})
			t.Run("reject", func(t *testing.T) {
				l := traceLab(t)
				icmp := l.StartCapture(t, l.Routers[2].NS, "in0", "icmp or icmp6")
				r := runIn(t, l, l.Prober, "trace", "--json", hostPort(dstOf(l), 82))
				// The witness: r3 sent the admin-prohibited errors, one per
				// probe with TTL 4, quoting our SYN to 82.
				pkts, err := icmp.Stop()
				if err != nil {
					t.Fatal(err)
				}
				prohibited := 0
				for _, c := range pkts {
					var p wire.Packet
					if wire.Parse(c.Data, &p) == nil && p.IsICMP() && p.Quoted.DstPort == 82 && p.Src.String() == routerAddr(l, 2, v6) &&
						(p.ICMPType == 3 && p.ICMPCode == 13 && !v6 || p.ICMPType == 1 && p.ICMPCode == 1 && v6) {
						prohibited++
					}
				}
				if prohibited != 3 {
					t.Errorf("r3 sent %d admin-prohibited errors, want 3 (one per probe at hop 4)", prohibited)
				}
				hops, tr := traceRecords(t, r)
				if r.code != exitNotOpen || tr["state"] != "filtered" || tr["reason"] != "icmp-admin-prohibited" || tr["hop"] != 4.0 ||
					tr["from"] != routerAddr(l, 2, v6) || len(hops) != 4 || hops[3]["from"] != routerAddr(l, 2, v6) {
					t.Errorf("exit %d, %v\n%s", r.code, tr, r.stdout)
				}
				txt := runIn(t, l, l.Prober, "trace", "-q", "1", hostPort(dstOf(l), 82))
				t.Logf("synprobe trace -q 1 %s:\n%s", hostPort(dstOf(l), 82), txt.stdout)
				if !strings.Contains(txt.stdout, "filtered (icmp-admin-prohibited): "+routerAddr(l, 2, v6)+" at hop 4, a router, rejects the SYN") {
					t.Errorf("text:\n%s", txt.stdout)
				}
			})
			t.Run("closed", func(t *testing.T) {
				l := traceLab(t)
				r := runIn(t, l, l.Prober, "trace", "--json", "-q", "1", hostPort(dstOf(l), 84))
				_, tr := traceRecords(t, r)
				if r.code != exitNotOpen || tr["state"] != "closed" || tr["reason"] != "rst" || tr["hop"] != 4.0 || tr["from"] != dstOf(l).String() {
					t.Errorf("exit %d, %v", r.code, tr)
				}
			})
		})
	}
}

// TestIntegrationTraceNAT: r1 masquerades what it forwards. r2 and r3
// see (and quote) SYNs from r1's outward address, as the capture on r2's
// inward link shows, but r1's connection tracking translates their ICMP
// errors' quotes back: the trace sees every hop and no address change.
// That is the documented limit (docs/trace.md: NAT is invisible).
func TestIntegrationTraceNAT(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "v4", true: "v6"}[v6], func(t *testing.T) {
			l := traceLab(t)
			r1 := l.Routers[0]
			l.Nft(t, r1.NS, `table inet nat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "out0" masquerade
	}
}`)
			dst, outside := l.TargetV4, r1.OutV4
			if v6 {
				dst, outside = l.TargetV6, r1.OutV6
			}
			c2 := l.StartCapture(t, l.Routers[1].NS, "in0", "tcp port 80")
			r := runIn(t, l, l.Prober, "trace", "--json", "-q", "1", hostPort(dst, 80))
			hops, tr := traceRecords(t, r)
			if len(hops) != 4 || tr["state"] != "open" || tr["hop"] != 4.0 {
				t.Fatalf("exit %d\n%s", r.code, r.stdout)
			}
			for i, h := range hops[:3] {
				for _, c := range changes(h) {
					if strings.HasPrefix(c, "src ") || strings.HasPrefix(c, "sport ") {
						t.Errorf("hop %d shows the NAT: %v", i+1, c)
					}
				}
				if h["from"] != routerAddr(l, i, v6) {
					t.Errorf("hop %d from %v", i+1, h["from"])
				}
			}
			pkts, err := c2.Stop()
			if err != nil {
				t.Fatal(err)
			}
			syns := synsIn(t, pkts, 80)
			if len(syns) != 3 {
				t.Fatalf("r2 saw %d SYNs, want 3", len(syns))
			}
			for _, s := range syns {
				if s.Src != outside {
					t.Errorf("r2 saw a SYN from %v, not the NAT's %v", s.Src, outside)
				}
			}
		})
	}
}

// BenchmarkTraceTools runs synprobe trace, tcptraceroute, traceroute -T
// and nmap --traceroute (those installed) through traceLab, one fresh lab
// per tool and port so that no tool meets the ICMP rate limits another
// left, and prints each one's output and a comparison: hops listed, the
// last address, and whether it tells of the MSS clamp (port 80), the
// rewrites (85), the drop after r3 (81) and r3's reject (82).
// scripts/bench-trace.sh runs it.
func BenchmarkTraceTools(b *testing.B) {
	type tool struct {
		name string
		bin  string
		args func(dst netip.Addr, port uint16) []string
	}
	bin := synprobeBinary(b)
	tools := []tool{
		{"synprobe trace", bin, func(dst netip.Addr, port uint16) []string {
			return []string{"trace", "-q", "1", "-w", "1s", hostPort(dst, port)}
		}},
		{"synprobe trace -q3", bin, func(dst netip.Addr, port uint16) []string {
			return []string{"trace", hostPort(dst, port)} // the defaults: 3 probes per hop, 1 s apart
		}},
		{"tcptraceroute", "tcptraceroute", func(dst netip.Addr, port uint16) []string {
			return []string{"-n", "-q", "1", "-w", "1", "-m", "8", dst.String(), fmt.Sprint(port)}
		}},
		{"traceroute -T", "traceroute", func(dst netip.Addr, port uint16) []string {
			return []string{"-T", "-n", "-q", "1", "-w", "1", "-m", "8", "-p", fmt.Sprint(port), dst.String()}
		}},
		{"nmap --traceroute", "nmap", func(dst netip.Addr, port uint16) []string {
			return []string{"-n", "-Pn", "-sS", "-p", fmt.Sprint(port), "--traceroute", dst.String()}
		}},
	}
	type row struct{ tool, port, hops, last, tells string }
	var rows []row
	// A hop line starts with its number; its address is the last IPv4
	// address on it (nmap puts the RTT first), or none (a star).
	hopLine := regexp.MustCompile(`(?m)^ *\d+ .*$`)
	addr := regexp.MustCompile(`\b198\.18\.\d+\.\d+\b`)
	for range b.N {
		rows = rows[:0]
		for _, tl := range tools {
			path, err := exec.LookPath(tl.bin)
			if err != nil {
				b.Logf("%s: not installed", tl.name)
				continue
			}
			for _, port := range []uint16{80, 85, 81, 82} {
				l := traceLab(b)
				dst := l.TargetV4
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				start := time.Now()
				out, _ := l.Command(ctx, l.Prober, path, tl.args(dst, port)...).CombinedOutput()
				took := time.Since(start)
				cancel()
				text := string(out)
				b.Logf("%s, port %d (%v):\n%s", tl.name, port, took.Round(10*time.Millisecond), text)
				hops := hopLine.FindAllString(text, -1)
				last := "-"
				for _, h := range hops {
					if a := addr.FindAllString(h, -1); len(a) > 0 {
						last = a[len(a)-1]
					}
				}
				tells := "no"
				r3 := l.Routers[2].InV4.String()
				switch port {
				case 80:
					if strings.Contains(text, "1200") {
						tells = "yes"
					}
				case 85:
					if strings.Contains(text, "1024") || strings.Contains(text, "sack-perm") {
						tells = "yes"
					}
				case 81:
					if last == r3 {
						tells = "last hop r3"
					}
				case 82:
					if strings.Contains(text, r3) && (strings.Contains(text, "prohibited") || strings.Contains(text, "!X") || strings.Contains(text, "!A")) {
						tells = "yes: r3 rejects"
					} else if strings.Contains(text, "filtered") {
						tells = "filtered, not who"
					}
				}
				rows = append(rows, row{tl.name, fmt.Sprint(port), fmt.Sprint(len(hops)), last, tells + fmt.Sprintf(" (%v)", took.Round(100*time.Millisecond))})
			}
		}
	}
	var tb strings.Builder
	fmt.Fprintf(&tb, "%-18s %-5s %-5s %-14s %s\n", "tool", "port", "hops", "last address", "tells (80: MSS 1200; 85: rewrites; 81: drop after r3; 82: r3 rejects)")
	for _, r := range rows {
		fmt.Fprintf(&tb, "%-18s %-5s %-5s %-14s %s\n", r.tool, r.port, r.hops, r.last, r.tells)
	}
	b.Logf("comparison (IPv4, r1 %s, r2 %s, r3 %s):\n%s", "198.18.X.2", "198.18.X.10", "198.18.X.18", tb.String())
}

// TestIntegrationTraceInterrupt: a trace under way has given up its
// privileges; SIGINT ends it at once
// with the hops so far and a trace record marked interrupted (exit 1); a
// SYN this host's output firewall refuses ends it with exit 3 and one
// line, and so does a run without CAP_NET_RAW, naming the fix.
func TestIntegrationTraceInterrupt(t *testing.T) {
	l := traceLab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := l.Command(ctx, l.Prober, synprobeBinary(t), "trace", "--json", hostPort(l.TargetV4, 81))
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // into the silent hops after r3 (the trace takes 5 s)
	// Set up, a trace keeps no privilege (docs/privileges.md).
	for _, c := range procCreds(t, cmd.Process.Pid) {
		if c.capEff != noCaps || c.capPrm != noCaps || strings.HasPrefix(c.uid, "0 ") || c.noNewPrivs != "1" {
			t.Errorf("during the trace: %v", c)
		}
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v to end after SIGINT", took)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitNotOpen {
		t.Errorf("exit %v, want 1", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var tr map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &tr); err != nil || tr["type"] != "trace" || tr["interrupted"] != true ||
		tr["last_hop"] != 3.0 || tr["state"] != "filtered" || len(lines) < 4 {
		t.Errorf("after SIGINT:\n%s", out.String())
	}

	if _, err := exec.LookPath("setpriv"); err == nil {
		out, err := l.Command(context.Background(), l.Prober, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
			synprobeBinary(t), "trace", hostPort(l.TargetV4, 80)).CombinedOutput()
		var ee *exec.ExitError
		if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); !errors.As(err, &ee) || ee.ExitCode() != exitFailure ||
			len(lines) != 1 || !strings.Contains(lines[0], "CAP_NET_RAW") || !strings.Contains(lines[0], "sudo") {
			t.Errorf("as nobody: %v, want exit 3 and one line naming the fix:\n%s", err, out)
		}
	}

	l.Nft(t, l.Prober, `table inet out {
	chain o {
		type filter hook output priority filter; policy accept;
		tcp dport 86 drop
	}
}`)
	r := runIn(t, l, l.Prober, "trace", hostPort(l.TargetV4, 86))
	t.Logf("stderr: %s", r.stderr)
	if r.code != exitFailure || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "the SYN could not be sent") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

// TestIntegrationTraceSeq: r2 rewrites the sequence number of SYNs to 87.
// Over IPv4 r3's quote is matched by the 4-tuple and the IP ID (the ISN's
// top half) and shows the new sequence number, made between hop 2 and 3;
// the target's SYN-ACK acknowledges a sequence number that is not ours and
// answers nothing. IPv6 has no ID: r3's quote matches nothing, and hop 2
// is the last that answered (docs/trace.md, limits).
func TestIntegrationTraceSeq(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(map[bool]string{false: "v4", true: "v6"}[v6], func(t *testing.T) {
			l := traceLab(t)
			dst := l.TargetV4
			if v6 {
				dst = l.TargetV6
			}
			r := runIn(t, l, l.Prober, "trace", "--json", "-q", "1", "-w", "300ms", "--max-silent", "1", hostPort(dst, 87))
			hops, tr := traceRecords(t, r)
			if v6 {
				if tr["last_hop"] != 2.0 || tr["state"] != "filtered" {
					t.Errorf("%v\n%s", tr, r.stdout)
				}
				return
			}
			if len(hops) != 4 || tr["last_hop"] != 3.0 {
				t.Fatalf("%s", r.stdout)
			}
			ch := changes(hops[2])
			if len(ch) != 1 || !strings.HasPrefix(ch[0], "seq ") || !strings.HasSuffix(ch[0], "→305419896") {
				t.Errorf("hop 3 changes %v", ch)
			}
		})
	}
}
