package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/synprobe/synprobe/internal/pcap/pcapread"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// matrixRun is one run of the flag matrix.
type matrixRun struct {
	code           int
	stdout, stderr string
	sys            *fakeSystem
	o              *options // as parsed
}

// firstSYN returns the first SYN the run sent.
func (r *matrixRun) firstSYN() (wire.Packet, bool) {
	var p wire.Packet
	if r.sys.conn == nil {
		return p, false
	}
	for _, b := range r.sys.conn.Sent() {
		if wire.Parse(b, &p) == nil && p.Flags&wire.FlagSyn != 0 {
			return p, true
		}
	}
	return p, false
}

// TestFlagMatrix: every flag under every verb either works (the run is
// not refused, and the flag has the effect checked here: on the SYNs
// sent, the output, the sockets, the guard, or failing that the parsed
// options) or is refused with exit 2 and one line naming the flag and
// the verb it belongs to. A flag without a row fails the test: a new flag
// must say what it does in each verb.
func TestFlagMatrix(t *testing.T) {
	file := filepath.Join(t.TempDir(), "targets")
	pcapFile := filepath.Join(t.TempDir(), "run.pcapng")
	if err := os.WriteFile(file, []byte("198.18.0.2:81\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	syn := func(check func(p wire.Packet) bool) func(r *matrixRun) bool {
		return func(r *matrixRun) bool { p, ok := r.firstSYN(); return ok && check(p) }
	}
	out := func(s string) func(r *matrixRun) bool {
		return func(r *matrixRun) bool { return strings.Contains(r.stdout, s) }
	}
	lacks := func(s string) func(r *matrixRun) bool {
		return func(r *matrixRun) bool { return !strings.Contains(r.stdout, s) && r.stdout != "" }
	}
	// Each row: the flag's arguments, and its effect (the same in both
	// verbs unless scanEffect is set). Targets and a short wait come
	// first, so that the flag's own value wins.
	rows := map[string]struct {
		args       []string
		effect     func(r *matrixRun) bool
		scanEffect func(r *matrixRun) bool
	}{
		"count":         {[]string{"-c", "2"}, out("2 probes sent"), nil},
		"interval":      {[]string{"-c", "2", "-i", "0.01"}, func(r *matrixRun) bool { return r.o.interval == 10e6 && strings.Contains(r.stdout, "2 probes sent") }, nil},
		"timeout":       {[]string{"-w", "0.03"}, func(r *matrixRun) bool { return r.o.timeout == 30e6 }, nil},
		"quiet":         {[]string{"-q"}, lacks("reason="), nil},
		"json":          {[]string{"--json"}, func(r *matrixRun) bool { return strings.HasPrefix(r.stdout, `{"type":`) }, nil},
		"ipv4":          {[]string{"-4", "lab.test:80"}, syn(func(p wire.Packet) bool { return p.Dst.String() == "198.18.0.2" }), nil},
		"ipv6":          {[]string{"-6", "lab.test:80"}, syn(func(p wire.Packet) bool { return p.Dst.String() == "2001:db8::2" }), nil},
		"mode":          {[]string{"--mode", "ack"}, func(r *matrixRun) bool { return len(r.sys.guards) == 1 }, nil},
		"hold":          {[]string{"--mode", "fin", "--close-timeout", "0.05", "--hold", "0.01"}, func(r *matrixRun) bool { return r.o.hold == 10e6 && strings.Contains(r.stdout, "close=") }, nil},
		"data":          {[]string{"--mode", "fin", "--close-timeout", "0.05", "--data", "x"}, out("data=0/1"), nil},
		"close-timeout": {[]string{"--mode", "fin", "--close-timeout", "0.05"}, func(r *matrixRun) bool { return r.o.closeTimeout == 50e6 }, nil},
		"trace":         {[]string{"--trace"}, out("--S-->"), nil},
		"mark":          {[]string{"--mode", "ack", "--mark", "0x1234"}, func(r *matrixRun) bool { return r.sys.listenCfg.Mark == 0x1234 }, nil},
		"cleanup":       {[]string{"--cleanup"}, out("removed nftables table inet synprobe_99_deadbeef"), nil},
		"rate":          {[]string{"--rate", "500"}, out("(limit 500/s)"), nil},
		"retries":       {[]string{"--retries", "2", "198.18.0.2:79"}, out("(2 retries)"), nil},
		"open": {[]string{"--open", "198.18.0.2:81"}, func(r *matrixRun) bool {
			return strings.Contains(r.stdout, "open     ") && !strings.Contains(r.stdout, "closed   ")
		}, nil},
		"mismatches": {[]string{"--mismatches", "198.18.0.2:81=open"}, func(r *matrixRun) bool {
			return strings.Contains(r.stdout, "MISMATCH") && !strings.Contains(r.stdout, "open     ")
		}, nil},
		"expect":        {[]string{"--expect", "closed"}, out("MISMATCH 198.18.0.2:80"), nil},
		"senders":       {[]string{"--senders", "3"}, func(r *matrixRun) bool { return r.o.senders == 3 }, nil},
		"user":          {[]string{"-Z", "root"}, func(r *matrixRun) bool { return len(r.sys.drops) == 1 && !r.sys.drops[0].SetUID }, nil},
		"keep-root":     {[]string{"--keep-root"}, func(r *matrixRun) bool { return len(r.sys.drops) == 1 && !r.sys.drops[0].SetUID }, nil},
		"mss":           {[]string{"--mss", "1200"}, syn(func(p wire.Packet) bool { return p.Options.MSS == 1200 }), nil},
		"window":        {[]string{"--window", "1000"}, syn(func(p wire.Packet) bool { return p.Window == 1000 }), nil},
		"wscale":        {[]string{"--wscale", "3"}, syn(func(p wire.Packet) bool { return p.Options.WScale == 3 }), nil},
		"no-sack":       {[]string{"--no-sack"}, syn(func(p wire.Packet) bool { return !p.Options.SACKPermitted && p.Options.Timestamps }), nil},
		"no-timestamps": {[]string{"--no-timestamps"}, syn(func(p wire.Packet) bool { return !p.Options.Timestamps && p.Options.SACKPermitted }), nil},
		"no-options":    {[]string{"--no-options"}, syn(func(p wire.Packet) bool { return p.Options.MSS == 0 && p.Options.WScale < 0 }), nil},
		"ecn":           {[]string{"--ecn"}, syn(func(p wire.Packet) bool { return p.Flags == wire.FlagSyn|wire.FlagEce|wire.FlagCwr }), nil},
		"ttl":           {[]string{"--ttl", "9"}, syn(func(p wire.Packet) bool { return p.TTL == 9 }), nil},
		"tos":           {[]string{"--tos", "0xb8"}, syn(func(p wire.Packet) bool { return p.TOS == 0xb8 }), nil},
		"sport":         {[]string{"--sport", "40123"}, syn(func(p wire.Packet) bool { return p.SrcPort == 40123 }), nil},
		"source":        {[]string{"-S", "198.18.0.9"}, syn(func(p wire.Packet) bool { return p.Src.String() == "198.18.0.9" }), nil},
		"interface":     {[]string{"-I", "lo", "127.0.0.1:80"}, func(r *matrixRun) bool { return r.sys.listenCfg.Interface == "lo" }, nil},
		"file":          {[]string{"-f", file}, syn(func(p wire.Packet) bool { return p.DstPort == 81 }), nil},
		"pcap": {[]string{"--pcap", pcapFile}, func(r *matrixRun) bool {
			f, err := os.Open(pcapFile)
			if err != nil {
				return false
			}
			defer f.Close()
			recs, err := pcapread.Read(f)
			return err == nil && len(recs) > 0
		}, nil},
		"explain": {[]string{"--explain", "198.18.0.2:90"}, out("explain: SYNs got silence while a bare ACK drew a RST"), nil},
		"version": {[]string{"-V"}, out("synprobe "), nil},
		"help":    {[]string{"-h"}, out("Usage: synprobe"), nil},
	}
	base := map[verb][]string{
		verbPing: {"-c", "1", "-w", "0.5", "198.18.0.2:80"},
		verbScan: {"-w", "0.5", "--retries", "0", "198.18.0.2:80"},
	}
	allFlags(new(options)).VisitAll(func(f *pflag.Flag) {
		row, ok := rows[f.Name]
		if !ok {
			t.Errorf("--%s: no row in the flag matrix", f.Name)
			return
		}
		for _, v := range verbs {
			args := append([]string{string(v)}, base[v]...)
			if f.Name == "file" || f.Name == "explain" || f.Name == "ipv4" || f.Name == "ipv6" || f.Name == "retries" || f.Name == "mismatches" || f.Name == "interface" {
				args = args[:len(args)-1] // the row names its own targets
			}
			only, refused := onlyFor[f.Name]
			refused = refused && only.verb != v
			if refused {
				args = append(args, flagArgs(f, row.args)...) // the flag alone
			} else {
				args = append(args, row.args...)
			}
			t.Run(fmt.Sprintf("%s/%s", v, f.Name), func(t *testing.T) {
				sys := &fakeSystem{addrs: []netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.9"), netip.MustParseAddr("2001:db8::1")}}
				code, stdout, stderr := runCLI(t, sys, args...)
				r := &matrixRun{code: code, stdout: stdout, stderr: stderr, sys: sys}
				r.o, _ = parseArgs(args)
				if refused {
					name := "--" + f.Name
					if f.Shorthand != "" {
						name = "-" + f.Shorthand + "/--" + f.Name
					}
					want := fmt.Sprintf("synprobe: %s is a %s flag, not a %s one: ", name, only.verb, v)
					if code != exitUsage || stdout != "" || !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 {
						t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and one line beginning %q", args, code, stdout, stderr, want)
					}
					return
				}
				if code == exitUsage || code == exitFailure {
					t.Fatalf("%v: exit %d: %s", args, code, stderr)
				}
				effect := row.effect
				if v == verbScan && row.scanEffect != nil {
					effect = row.scanEffect
				}
				if !effect(r) {
					t.Errorf("%v: exit %d, no effect seen:\n%s%s", args, code, stdout, stderr)
				}
			})
		}
	})
}

// flagArgs picks f and its value out of a row's arguments.
func flagArgs(f *pflag.Flag, args []string) []string {
	for i, a := range args {
		if a == "--"+f.Name || f.Shorthand != "" && a == "-"+f.Shorthand {
			if f.NoOptDefVal != "" || i+1 == len(args) { // a switch
				return []string{a}
			}
			return args[i : i+2]
		}
	}
	panic("no --" + f.Name + " in its row")
}
