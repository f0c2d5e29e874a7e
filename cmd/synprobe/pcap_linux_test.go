//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/internal/pcap/pcapread"
	"github.com/synprobe/synprobe/probe/scan"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// pcapDir is a directory that the user a root run becomes (-Z nobody)
// may write in.
func pcapDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "synprobe-pcap-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777)
	return dir
}

// pcapKey names a packet by its addresses and everything after the IP
// header: synprobe's IPv6 packets read have a header rebuilt from the
// socket's control messages, which the wire's flow label may differ from.
func pcapKey(t *testing.T, b []byte) (string, *wire.Packet) {
	t.Helper()
	var p wire.Packet
	if err := wire.Parse(b, &p); err != nil {
		t.Fatalf("unparsable packet %x: %v", b, err)
	}
	hl := wire.IPv6MinimumSize
	if b[0]>>4 == 4 {
		hl = int(b[0]&0x0f) * 4
	}
	end := len(b)
	if b[0]>>4 == 4 {
		end = int(b[2])<<8 | int(b[3])
	} else {
		end = wire.IPv6MinimumSize + (int(b[4])<<8 | int(b[5]))
	}
	return fmt.Sprintf("%v>%v:%x", p.Src, p.Dst, b[hl:min(end, len(b))]), &p
}

// pcapCheck checks the --pcap file of a run against a capture of the
// same run on the target's side of the link, and against the run's JSON:
//
//   - tcpdump -r reads the file, one line per packet;
//   - every packet in the file is one the capture saw (same addresses,
//     same TCP or ICMP bytes), each capture packet taken once;
//   - the capture saw nothing else but the kernel's own RSTs to
//     SYN-ACKs (rst mode: one per SYN-ACK; fin mode: none, the guard
//     drops them);
//   - a packet sent is in the file no later than the capture saw it
//     arrive, a packet received no sooner than the capture saw it leave,
//     and within maxSkew;
//   - every RTT the run reports with clock=kernel is the time between its
//     SYN and the answer in the file, to the nanosecond: the file holds
//     the stamps synprobe timed by.
func pcapCheck(t *testing.T, l *netlab.Lab, file string, capt []netlab.CapturedPacket, lines []map[string]any, kernelRSTs bool) (recs []pcapread.Record) {
	t.Helper()
	out, err := exec.Command("tcpdump", "-r", file, "-nn", "--time-stamp-precision=nano").CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump -r %s: %v\n%s", file, err, out)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if recs, err = pcapread.Read(f); err != nil {
		t.Fatalf("reading %s: %v", file, err)
	}
	if n := strings.Count(string(out), "\n") - strings.Count(string(out), "reading from file"); n != len(recs) {
		t.Errorf("tcpdump -r printed %d lines for %d packets:\n%s", n, len(recs), out)
	}
	if fi, err := os.Stat(file); err == nil {
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65534 {
			t.Errorf("%s belongs to uid %d, want 65534 (-Z nobody): the file is opened after the privilege drop", file, st.Uid)
		}
	}
	const maxSkew = 100 * time.Millisecond // generous: two busy CPUs
	used := make([]bool, len(capt))
	capPkts := make([]*wire.Packet, len(capt))
	byKey := map[string][]int{}
	for i := range capt {
		var k string
		k, capPkts[i] = pcapKey(t, capt[i].Data)
		byKey[k] = append(byKey[k], i)
	}
	var worst [2]time.Duration // sent, received
	pkts := make([]*wire.Packet, len(recs))
	for i, r := range recs {
		k, p := pcapKey(t, r.Data)
		pkts[i] = p
		// The same bytes may be on the wire twice (our RST and the
		// kernel's): the copy nearest in time.
		j := -1
		for _, c := range byKey[k] {
			if !used[c] && (j < 0 || absDur(capt[c].Time.Sub(r.Time)) < absDur(capt[j].Time.Sub(r.Time))) {
				j = c
			}
		}
		if j < 0 {
			t.Errorf("packet %d in the file (%s, %v %v>%v flags %v) is not in the capture", i, r.Comment, r.Time.Format("15:04:05.000000000"), p.Src, p.Dst, p.Flags)
			continue
		}
		used[j] = true
		d := capt[j].Time.Sub(r.Time) // sent: the capture's is later
		dir := 0
		if !r.Sent {
			d, dir = -d, 1
		}
		if d < -10*time.Microsecond || d > maxSkew {
			t.Errorf("packet %d (%s): %v from the capture's time, want 0 to %v", i, r.Comment, d, maxSkew)
		}
		worst[dir] = max(worst[dir], d)
		if wantSent := p.Src == l.ProberV4 || p.Src == l.ProberV6; r.Sent != wantSent {
			t.Errorf("packet %d from %v marked sent=%v", i, p.Src, r.Sent)
		}
		if i > 0 && r.Time.Before(recs[i-1].Time) {
			t.Errorf("packet %d at %v, before packet %d at %v: the file is not in order of time", i, r.Time, i-1, recs[i-1].Time)
		}
	}
	synacks, rsts := 0, 0
	for c := range capt {
		p := capPkts[c]
		if p.Proto == wire.ProtocolTCP && p.Flags&(wire.FlagSyn|wire.FlagAck) == wire.FlagSyn|wire.FlagAck {
			synacks++
		}
		if used[c] {
			continue
		}
		if kernelRSTs && p.Flags == wire.FlagRst && (p.Src == l.ProberV4 || p.Src == l.ProberV6) {
			rsts++
			continue
		}
		t.Errorf("the capture saw %v>%v proto %d flags %v that the file lacks", p.Src, p.Dst, p.Proto, p.Flags)
	}
	if kernelRSTs && rsts != synacks {
		t.Errorf("%d packets of the capture are not in the file, %d SYN-ACKs: want one kernel RST per SYN-ACK", rsts, synacks)
	}
	t.Logf("%d packets in the file, %d in the capture (%d the kernel's RSTs); capture time - file time: sent up to %v, received up to %v", len(recs), len(capt), rsts, worst[0], worst[1])

	// The RTTs reported, from the file: each probe's SYN, by its
	// 4-tuple (a fresh source port per probe and pass), and the first
	// answer to it.
	type tuple struct {
		remote netip.Addr
		port   uint16
		sport  uint16
	}
	syns := map[tuple]pcapread.Record{}
	answers := map[tuple][]pcapread.Record{}
	for i, r := range recs {
		p := pkts[i]
		switch {
		case r.Sent && p.Proto == wire.ProtocolTCP && p.Flags&(wire.FlagSyn|wire.FlagAck) == wire.FlagSyn:
			syns[tuple{p.Dst, p.DstPort, p.SrcPort}] = r
		case !r.Sent && p.IsICMP():
			k := tuple{p.Quoted.Dst, p.Quoted.DstPort, p.Quoted.SrcPort}
			answers[k] = append(answers[k], r)
		case !r.Sent:
			k := tuple{p.Src, p.SrcPort, p.DstPort}
			answers[k] = append(answers[k], r)
		}
	}
	timed := 0
	for _, m := range lines {
		rtt, ok := m["rtt_us"].(float64)
		if !ok || m["clock"] != "kernel" {
			continue
		}
		k := tuple{netip.MustParseAddr(m["addr"].(string)), uint16(m["port"].(float64)), uint16(m["sport"].(float64))}
		syn, ok := syns[k]
		var ans time.Time
		for _, a := range answers[k] {
			if ok && !a.Time.Before(syn.Time) && (ans.IsZero() || a.Time.Before(ans)) {
				ans = a.Time
			}
		}
		switch {
		case !ok || ans.IsZero():
			t.Errorf("%v: no SYN and answer in the file for rtt_us %v", k, rtt)
			continue
		case !syn.Kernel:
			t.Errorf("%v: the SYN of an RTT on the kernel's clock is on the user's in the file (%s)", k, syn.Comment)
		}
		if got := ans.Sub(syn.Time); math.Abs(float64(got)-rtt*1000) > 1 {
			t.Errorf("%v: rtt_us %.3f, the file says %v", k, rtt, got)
		}
		timed++
	}
	if timed == 0 {
		t.Errorf("no RTT checked against the file")
	}
	return recs
}

// TestIntegrationPcap runs a ping (-c 3, both families, open, closed and
// ICMP-filtered ports), a fin run and a scan with --pcap, each beside a
// capture in the target's namespace, and checks the files (pcapCheck).
func TestIntegrationPcap(t *testing.T) {
	l := verdictLab(t)
	dir := pcapDir(t)
	filter := "tcp or icmp or (icmp6 and ip6[40] < 128)"
	v4, v6 := l.TargetV4, l.TargetV6
	cases := []struct {
		name       string
		args       []string
		code       int
		kernelRSTs bool
		syns       int // SYNs sent
	}{
		{"ping", []string{"-c", "3", "-i", "0.05", "-w", "0.3", hostPort(v4, 80), hostPort(v6, 80), hostPort(v4, 84), hostPort(v6, 82)}, exitNotOpen, true, 12},
		{"fin", []string{"--mode", "fin", "-c", "2", "-i", "0.05", "--hold", "0.02", hostPort(v4, 80), hostPort(v6, 80)}, exitOK, false, 4},
		{"scan", []string{"-w", "0.2", v4.String() + ":79-84", "[" + v6.String() + "]:79-84"}, exitOK, true, 0}, // a completed discovery scan
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := filepath.Join(dir, c.name+".pcapng")
			capture := l.StartCapture(t, l.Target, l.TargetIf, filter)
			args := append([]string{"--json", "-Z", "nobody", "--pcap", file}, c.args...)
			if c.name == "scan" {
				args = append([]string{"scan"}, args...) // the verb first
			}
			r := runIn(t, l, l.Prober, args...)
			capt, err := capture.Stop()
			if err != nil {
				t.Fatal(err)
			}
			if r.code != c.code {
				t.Fatalf("exit %d, want %d\n%s%s", r.code, c.code, r.stdout, r.stderr)
			}
			recs := pcapCheck(t, l, file, capt, r.lines, c.kernelRSTs)
			syns := 0
			for _, rec := range recs {
				_, p := pcapKey(t, rec.Data)
				if rec.Sent && p.Proto == wire.ProtocolTCP && p.Flags == wire.FlagSyn|wire.FlagEce|wire.FlagCwr || rec.Sent && p.Flags&(wire.FlagSyn|wire.FlagAck) == wire.FlagSyn {
					syns++
				}
			}
			want := c.syns
			if c.name == "scan" {
				for _, m := range r.lines {
					if m["type"] == "scan-summary" {
						want = int(m["sent"].(float64))
					}
				}
			}
			if syns != want || want == 0 {
				t.Errorf("%d SYNs in the file, want %d", syns, want)
			}
		})
	}
}

// TestIntegrationPcapRefused: a --pcap path the run cannot write is bad
// input, one line, exit 2, before any probe: a directory, a FIFO (no
// wait for a reader), a device, a missing directory, and a directory only
// root may write in, since the file is opened as the user the run
// becomes. An existing file is replaced.
func TestIntegrationPcapRefused(t *testing.T) {
	l := verdictLab(t)
	dir := pcapDir(t)
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(fifo, 0o666) // writable by nobody: refused as a FIFO, not for permissions
	rootOnly := filepath.Join(dir, "root-only")
	if err := os.Mkdir(rootOnly, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{dir, "not a regular file"},
		{fifo, "not a regular file"},
		{"/dev/null", "not a regular file"},
		{filepath.Join(dir, "no/such/dir/x.pcapng"), "no such file or directory"},
		{filepath.Join(rootOnly, "x.pcapng"), "permission denied (written as uid 65534"},
	} {
		capture := l.StartCapture(t, l.Target, l.TargetIf, "tcp")
		r := runIn(t, l, l.Prober, "-Z", "nobody", "-c", "1", "--pcap", c.path, hostPort(l.TargetV4, 80))
		capt, err := capture.Stop()
		if err != nil {
			t.Fatal(err)
		}
		if r.code != exitUsage || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "--pcap "+c.path+": "+c.want) {
			t.Errorf("--pcap %s: exit %d, stderr %q; want 2 and %q", c.path, r.code, r.stderr, c.want)
		}
		if len(capt) != 0 {
			t.Errorf("--pcap %s: %d packets sent", c.path, len(capt))
		}
	}
	old := filepath.Join(dir, "old.pcapng")
	if err := os.WriteFile(old, bytes.Repeat([]byte("x"), 100000), 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(old, 0o666)
	if r := runIn(t, l, l.Prober, "-Z", "nobody", "-c", "1", "--pcap", old, hostPort(l.TargetV4, 80)); r.code != exitOK {
		t.Fatalf("--pcap over an existing file: exit %d\n%s", r.code, r.stderr)
	}
	f, _ := os.Open(old)
	defer f.Close()
	if recs, err := pcapread.Read(f); err != nil || len(recs) != 3 {
		t.Errorf("the file replaced: %d packets, %v; want SYN, SYN-ACK, RST", len(recs), err)
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// TestIntegrationPcapSignal: SIGTERM during a fin-mode hold: the RSTs of
// the interrupt are in the file, which is whole (pcapCheck).
func TestIntegrationPcapSignal(t *testing.T) {
	l := closeLab(t)
	file := filepath.Join(pcapDir(t), "term.pcapng")
	capture := l.StartCapture(t, l.Target, l.TargetIf, "tcp")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := l.Command(ctx, l.Prober, synprobeBinary(t), "--json", "-Z", "nobody", "--pcap", file, "--mode", "fin", "--hold", "5s", "-i", "0.05", hostPort(l.TargetV4, portNever), hostPort(l.TargetV6, portNever))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, l, portNever, 4, cmd)
	cmd.Process.Signal(syscall.SIGTERM)
	code := waitExit(t, cmd)
	capt, err := capture.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if code != exitOK || errb.Len() > 0 {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
	var lines []map[string]any
	for _, s := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("bad JSON %q", s)
		}
		lines = append(lines, m)
	}
	recs := pcapCheck(t, l, file, capt, lines, false)
	rsts := 0
	for _, r := range recs {
		_, p := pcapKey(t, r.Data)
		if r.Sent && p.Flags&wire.FlagRst != 0 {
			rsts++
		}
	}
	if rsts < 4 {
		t.Errorf("%d RSTs of ours in the file: want the interrupt's, one per connection at least", rsts)
	}
}

// TestIntegrationPcapRing: a scan big enough for the packet ring and
// Ethernet frames: the file holds every probe, timed by the ring's copy
// of it, and every answer (pcapCheck). At 20,000 probes a second: as fast
// as it goes, tcpdump's capture loses packets here.
func TestIntegrationPcapRing(t *testing.T) {
	l, v4, v6, _, _ := firewallLab(t)
	resolveNeighbours(t, l)
	file := filepath.Join(pcapDir(t), "ring.pcapng")
	capture := l.StartCapture(t, l.Target, l.TargetIf, "tcp or icmp or (icmp6 and ip6[40] < 128)")
	r := runIn(t, l, l.Prober, "scan", "--json", "-Z", "nobody", "--pcap", file, "--rate", "20000", "-w", "0.3", v4.String()+":1-64,80", "["+v6.String()+"]:22-25,80")
	capt, err := capture.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if r.code != exitOK { // a completed discovery scan
		t.Errorf("exit %d: %s", r.code, r.stderr)
	}
	_, summary := scanResults(t, r)
	if summary == nil || summary["recv_path"] != "packet ring" || summary["pairs"].(float64) < scan.RingMinPairs {
		t.Fatalf("summary %v: want a scan on the packet ring", summary)
	}
	recs := pcapCheck(t, l, file, capt, r.lines, true)
	clock := map[string]string{} // "addr:port/sport": the result's clock
	for _, m := range r.lines {
		if m["type"] == "result" && m["sport"] != nil {
			c, _ := m["clock"].(string)
			clock[fmt.Sprintf("%v:%v/%v", m["addr"], m["port"], m["sport"])] = c
		}
	}
	syns, user := 0, 0
	why := map[string]int{} // the user-clock SYNs' results' clocks ("": unanswered)
	for _, rec := range recs {
		_, p := pcapKey(t, rec.Data)
		if rec.Sent && p.Flags == wire.FlagSyn {
			syns++
			if !rec.Kernel {
				user++
				why[clock[fmt.Sprintf("%v:%v/%v", p.Dst, p.DstPort, p.SrcPort)]]++
			}
		}
	}
	t.Logf("SYNs on the user's clock, by their answers' clock: %v", why)
	// A probe whose copy in the ring the scan did not see in time is
	// timed by the user's clock, in the file as in its RTT (pcapCheck
	// holds every kernel-clock RTT to a kernel-stamped SYN): a few here,
	// hundreds under the race detector's load.
	if syns != int(summary["sent"].(float64)) {
		t.Errorf("%d SYNs in the file (%d on the user's clock), the summary says %v sent", syns, user, summary["sent"])
	}
	t.Logf("%d SYNs, %d on the user's clock", syns, user)
}

// TestIntegrationPcapDiskFull: a --pcap file on a full file system: the
// run goes on to its summary, then says so in one line and exits 3.
func TestIntegrationPcapDiskFull(t *testing.T) {
	l := verdictLab(t)
	dir := pcapDir(t)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16k,mode=0777", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	file := filepath.Join(dir, "full.pcapng")
	r := runIn(t, l, l.Prober, "-Z", "nobody", "-q", "-c", "200", "-i", "0.002", "--pcap", file, hostPort(l.TargetV4, 80))
	if r.code != exitFailure || !strings.Contains(r.stdout, "200 probes sent") ||
		r.stderr != "synprobe: --pcap "+file+": writing: no space left on device\n" {
		t.Errorf("exit %d, stdout %q, stderr %q; want the summary, then exit 3 and one line", r.code, r.stdout, r.stderr)
	}
}
