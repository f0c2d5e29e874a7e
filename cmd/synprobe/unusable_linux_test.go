//go:build linux

package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// TestIntegrationUnusableTargets: unspecified, multicast and broadcast
// destinations, the lab subnet's own broadcast among them (known from the
// kernel's local table only), are refused with exit 2 and one line, before
// anything is sent; a scan of a block that holds that broadcast probes
// the rest and nothing goes to the broadcast address (the capture).
func TestIntegrationUnusableTargets(t *testing.T) {
	l := verdictLab(t)
	v4 := l.TargetV4.As4()
	v4[3] = 255
	bcast := netip.AddrFrom4(v4)
	c := l.StartCapture(t, l.Prober, l.ProberIf, "")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-c", "1", hostPort(bcast, 80)}, bcast.String() + " is the broadcast address of a subnet on " + l.ProberIf},
		{[]string{"scan", hostPort(bcast, 80) + "=closed"}, bcast.String() + " is the broadcast address of a subnet on " + l.ProberIf},
		{[]string{"-c", "1", "255.255.255.255:80"}, "255.255.255.255 is the limited broadcast address"},
		{[]string{"-c", "1", "224.0.0.1:80"}, "224.0.0.1 is a multicast address"},
		{[]string{"-c", "1", "[ff02::1]:80"}, "ff02::1 is a multicast address"},
		{[]string{"-c", "1", "0.0.0.0:80"}, "0.0.0.0 is the unspecified address"},
		{[]string{"-c", "1", "[::]:80"}, ":: is the unspecified address"},
		{[]string{"scan", "224.0.0.0/24:80"}, "the block holds 224.0.0.0, a multicast address"},
		{[]string{"0.0.0.0/8:80"}, "the block holds 0.0.0.0, the unspecified address"},
	} {
		r := runIn(t, l, l.Prober, tt.args...)
		if r.code != exitUsage || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", tt.args, r.code, r.stdout, r.stderr, tt.want)
		}
	}
	// The lab's /24: the broadcast is left out; the target answers.
	block := netip.PrefixFrom(bcast, 24).Masked()
	r := runIn(t, l, l.Prober, "scan", "--json", "-w", "0.3", "--retries", "0", block.String()+":80")
	if r.code != exitOK { // a discovery scan that completed
		t.Errorf("scan of %v: exit %d; %s", block, r.code, r.stderr)
	}
	if want := "synprobe: leaving out " + bcast.String() + ", the broadcast address of a subnet on " + l.ProberIf + "\n"; r.stderr != want {
		t.Errorf("stderr %q, want %q", r.stderr, want)
	}
	results := 0
	for _, m := range r.lines {
		switch m["type"] {
		case "result":
			results++
			if m["addr"] == bcast.String() {
				t.Errorf("the broadcast address was probed: %v", m)
			}
			if m["addr"] == l.TargetV4.String() && m["state"] != "open" {
				t.Errorf("the target: %v", m)
			}
		case "scan-summary":
			if m["pairs"] != 255.0 || m["open"] != 1.0 || m["send_errors"] != 0.0 {
				t.Errorf("summary %v", m)
			}
		}
	}
	if results != 255 {
		t.Errorf("%d results, want 255", results)
	}
	pkts, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	var p wire.Packet
	synToTarget := false
	for _, cp := range pkts {
		if wire.ParseChecksums(cp.Data, &p, wire.ChecksumsNotReady) != nil || p.Src != l.ProberV4 && p.Src != l.ProberV6 {
			continue
		}
		if p.Proto == wire.ProtocolTCP && p.Flags == wire.FlagSyn && p.Dst == l.TargetV4 {
			synToTarget = true
		}
		if p.Dst == bcast || p.Dst.IsMulticast() || p.Dst.IsUnspecified() || p.Dst == netip.MustParseAddr("255.255.255.255") {
			t.Errorf("sent to %v: %v %v", p.Dst, p.Proto, p.Flags)
		}
	}
	if !synToTarget {
		t.Error("the capture shows no SYN to the target: it saw nothing")
	}
}
