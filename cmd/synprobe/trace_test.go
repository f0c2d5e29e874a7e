package main

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/trace"
	"github.com/synprobe/synprobe/rawsock/wire"
)

func TestTraceArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string // "" for none
	}{
		{[]string{"198.18.0.2:80"}, ""},
		{[]string{"-q", "1", "-m", "255", "--interval", "0", "[2001:db8::2]:443"}, ""},
		{nil, "trace takes one HOST:PORT (got 0 arguments)"},
		{[]string{"a:1", "b:2"}, "trace takes one HOST:PORT (got 2 arguments)"},
		{[]string{"-q", "0", "h:1"}, "--queries 0: want 1 to 10"},
		{[]string{"-q", "11", "h:1"}, "--queries 11: want 1 to 10"},
		{[]string{"-m", "256", "h:1"}, "--max-hops 256: want 1 to 255"},
		{[]string{"-f", "5", "-m", "4", "h:1"}, "--first-hop 5: want 1 to --max-hops (4)"},
		{[]string{"-w", "0s", "h:1"}, "--wait 0s: must be positive"},
		{[]string{"-w", "61", "h:1"}, "--wait 1m1s: want more than 0 and at most 1m"},
		{[]string{"--interval", "-1s", "h:1"}, "--interval -1s: must be positive"},
		{[]string{"--interval", "61", "h:1"}, "--interval 1m1s: want 0 to 1m"},
		{[]string{"--max-silent", "0", "h:1"}, "--max-silent 0: want 1 to 255"},
		{[]string{"-4", "-6", "h:1"}, "-4 and -6 exclude each other"},
		{[]string{"-q", "x", "h:1"}, "--queries x: not a number"},
		{[]string{"--bogus", "h:1"}, "unknown flag: --bogus"},
	} {
		_, _, err := parseTraceArgs(tc.args)
		if got := ""; err != nil {
			got = err.Error()
			if got != tc.err {
				t.Errorf("%q: %q, want %q", tc.args, got, tc.err)
			}
		} else if tc.err != "" {
			t.Errorf("%q: no error, want %q", tc.args, tc.err)
		}
	}
	o := &traceOptions{}
	for _, tc := range []struct{ arg, err string }{
		{"198.18.0.2", `target "198.18.0.2": want HOST:PORT ([ADDR]:PORT for IPv6)`},
		{"198.18.0.2:0", `target "198.18.0.2:0": port "0": want 1 to 65535`},
		{"198.18.0.2:65536", `target "198.18.0.2:65536": port "65536": want 1 to 65535`},
		{"0.0.0.0:80", `target "0.0.0.0:80": 0.0.0.0 is not a unicast address`},
		{"[ff02::1]:80", `target "[ff02::1]:80": ff02::1 is not a unicast address`},
	} {
		if _, err := traceTarget(t.Context(), o, tc.arg); err == nil || err.Error() != tc.err {
			t.Errorf("%s: %v, want %s", tc.arg, err, tc.err)
		}
	}
	if _, err := traceTarget(t.Context(), &traceOptions{ipv6: true}, "198.18.0.2:80"); err == nil {
		t.Error("-6 took an IPv4 target")
	}
}

// traceDoc parses the field tables of docs/trace.md's JSON section:
// heading -> field -> JSON type.
func traceDoc(t *testing.T) map[string]map[string]string {
	b, err := os.ReadFile("../../docs/trace.md")
	if err != nil {
		t.Fatal(err)
	}
	_, js, ok := strings.Cut(string(b), "## JSON Lines")
	if !ok {
		t.Fatal("docs/trace.md: no JSON Lines section")
	}
	js, _, _ = strings.Cut(js, "\n## ")
	tick := regexp.MustCompile("`([^`]+)`")
	doc := map[string]map[string]string{}
	var cur map[string]string
	for _, line := range strings.Split(js, "\n") {
		switch {
		case strings.HasPrefix(line, "### "):
			cur = map[string]string{}
			doc[strings.TrimPrefix(line, "### ")] = cur
		case strings.HasPrefix(line, "| `") && cur != nil:
			cells := strings.Split(line, "|")
			names := tick.FindAllStringSubmatch(cells[1], -1)
			types := strings.Split(strings.TrimSpace(cells[2]), ", ")
			for i, m := range names {
				typ := types[0]
				if len(types) > 1 {
					typ = types[i]
				}
				cur[m[1]] = typ
			}
		}
	}
	return doc
}

// TestTraceJSONDoc holds docs/trace.md and trace's records together: each
// table names exactly its record's fields with their JSON types, and the
// records written for a report that shows every optional field have only
// documented fields.
// TestTraceInterface: trace refuses -I where the interface cannot reach
// the target, as ping does, before anything is opened: exit 2, one line.
func TestTraceInterface(t *testing.T) {
	for _, tc := range []struct{ args []string }{
		{[]string{"-I", "lo", "198.18.0.2:80"}},
		{[]string{"-I", "nosuchif0", "198.18.0.2:80"}},
	} {
		var out, errb bytes.Buffer
		code := traceMain(t.Context(), tc.args, &out, &errb)
		if code != exitUsage || strings.Count(errb.String(), "\n") != 1 || !strings.HasPrefix(errb.String(), "synprobe trace: -I ") || out.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and one line", tc.args, code, out.String(), errb.String())
		}
	}
}

func TestTraceJSONDoc(t *testing.T) {
	doc := traceDoc(t)
	sections := map[string]reflect.Type{
		"`\"type\":\"hop\"`":   reflect.TypeFor[traceHopRecord](),
		"`changes` of a hop":   reflect.TypeFor[traceChange](),
		"`\"type\":\"trace\"`": reflect.TypeFor[traceEndRecord](),
		"`synack`":             reflect.TypeFor[traceSynAckRecord](),
	}
	for h, typ := range sections {
		d := doc[h]
		if d == nil {
			t.Fatalf("docs/trace.md: no section %s", h)
		}
		code := map[string]string{}
		for _, f := range jsonFields(t, typ) {
			code[f.name] = f.typ
		}
		if !reflect.DeepEqual(code, d) {
			t.Errorf("%s: documented %v\n%v writes %v", h, d, typ, code)
		}
	}
	if len(doc) != len(sections) {
		t.Errorf("docs/trace.md has %d JSON sections, want %d", len(doc), len(sections))
	}
	// What the writer writes.
	r2, r3 := netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.18")
	dst := netip.MustParseAddrPort("198.18.0.26:80")
	q := &trace.Comparison{Len: 60, Level: trace.LevelWhole, Changes: []trace.Change{{Field: "mss", Sent: "1460", Seen: "1200"}}}
	hops := []trace.Hop{
		{TTL: 3, From: r3, Others: []netip.Addr{r2}, Quote: q, Varies: true,
			Replies: []trace.Reply{{From: r3, RTT: 20 * time.Microsecond, Kernel: true, Reason: "icmp-ttl-exceeded", ICMPType: 11}, {}},
			Changes: []trace.HopChange{{Change: q.Changes[0], After: 2, New: true}}},
		{TTL: 4, Replies: []trace.Reply{{From: r3, ICMPType: 11, Reason: "icmp-ttl-exceeded"}}, From: r3, QuoteErr: trace.ErrShortQuote},
	}
	rep := &trace.Report{Target: dst, Src: netip.MustParseAddr("198.18.0.1"), SrcPort: 61000, State: probe.StateOpen, Reason: "syn-ack",
		End: 4, From: dst.Addr(), LastHop: 4, LastFrom: dst.Addr(), Probes: 9,
		Changes: []trace.PathChange{{Change: q.Changes[0], After: 2, At: 3, AfterFrom: r2, AtFrom: r3}},
		SynAck:  &trace.SynAck{Flags: wire.FlagSyn | wire.FlagAck, Window: 1, Options: wire.SYNOptions{MSS: 1200, WScale: 7}, Changes: q.Changes}}
	var out bytes.Buffer
	w := &traceWriter{w: &out, json: true, arg: dst.String()}
	for i := range hops {
		w.hop(&hops[i])
	}
	w.final(rep, true)
	seen := map[string]map[string]bool{}
	var check func(h string, obj map[string]any)
	check = func(h string, obj map[string]any) {
		if seen[h] == nil {
			seen[h] = map[string]bool{}
		}
		for k, v := range obj {
			seen[h][k] = true
			typ, ok := doc[h][k]
			if !ok {
				t.Errorf("%s: field %q written, not documented", h, k)
			} else if got := valueType(v); got != typ && !(v == nil && h == "`\"type\":\"hop\"`") {
				t.Errorf("%s: field %q is a %s, documented as a %s", h, k, got, typ)
			}
			if k == "changes" {
				for _, c := range v.([]any) {
					check("`changes` of a hop", c.(map[string]any))
				}
			}
			if k == "synack" {
				check("`synack`", v.(map[string]any))
			}
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		check("`\"type\":\""+m["type"].(string)+"\"`", m)
	}
	for h, d := range doc {
		for k := range d {
			if !seen[h][k] {
				t.Errorf("%s: field %q never written by this test: extend it", h, k)
			}
		}
	}
}
