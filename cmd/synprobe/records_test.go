package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/scan"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// TestJSONGolden: every kind of line, each with its optional parts present
// and absent, is byte for byte what the hand-written encoder before
// records.go wrote (testdata/golden.jsonl, written by it from the same
// results at commit 8146aa7, and the scan summary's "clock" where the
// kernel-stamp branch's encoder put it): field names, order and number
// formats. The listener lines at the end were written by writeListenerJSON
// when it came.
func TestJSONGolden(t *testing.T) {
	want, err := os.ReadFile("testdata/golden.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	got := goldenLines(t)
	if !bytes.Equal(got, want) {
		g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := range max(len(g), len(w)) {
			if i >= len(g) || i >= len(w) || g[i] != w[i] {
				t.Errorf("line %d:\n got %s\nwant %s", i+1, at(g, i), at(w, i))
			}
		}
	}
}

func at(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "(none)"
}

// goldenLines prints the golden results through the JSON printer.
func goldenLines(t *testing.T) []byte {
	var out bytes.Buffer
	p := newPrinter(&out, &options{json: true})
	sent := time.Date(2026, 11, 21, 14, 0, 36, 841488856, time.FixedZone("X", 3600))
	v4 := &probe.Target{Name: "lab.test", Addr: netip.MustParseAddr("198.18.9.2"), Port: 80, Src: netip.MustParseAddr("198.18.9.1")}
	v6 := &probe.Target{Addr: netip.MustParseAddr("2001:db8::2"), Port: 443, Src: netip.MustParseAddr("2001:db8::1")}
	s4 := &targetSpec{arg: "lab.test:80", host: "lab.test", port: 80}
	s6 := &targetSpec{arg: "[2001:db8::2]:443", port: 443}
	results := []probe.Result{
		{Target: v4, Seq: 0, SrcPort: 63077, Sent: sent, State: probe.StateOpen, Reason: probe.ReasonSYNACK, RTT: 36816, KernelClock: true,
			From: v4.Addr, TTL: 64, TOS: 2, DF: true, Flags: wire.FlagSyn | wire.FlagAck | wire.FlagEce, Window: 65160,
			Options: wire.SYNOptions{MSS: 1460, WScale: 10, SACKPermitted: true, Timestamps: true, TSVal: 2671791528, TSEcr: 1725411344}},
		{Target: v6, Seq: 1, SrcPort: 63078, Sent: sent, State: probe.StateOpen, Reason: probe.ReasonSYNACK, RTT: 1000000123, MaybeRetransmit: true,
			From: v6.Addr, TTL: 57, Flags: wire.FlagSyn | wire.FlagAck, Window: 28800,
			Options: wire.SYNOptions{WScale: 0}},
		{Target: v4, Seq: 2, SrcPort: 63079, Sent: sent, State: probe.StateClosed, Reason: probe.ReasonRST, RTT: 12000, KernelClock: true,
			From: v4.Addr, TTL: 61, IPID: 4660, Flags: wire.FlagRst | wire.FlagAck},
		{Target: v4, Seq: 3, SrcPort: 63080, Sent: sent, State: probe.StateFiltered, Reason: "icmp-admin-prohibited", RTT: 90000,
			From: netip.MustParseAddr("198.18.7.1"), TTL: 250, IPID: 7, ICMPType: 3, ICMPCode: 13},
		{Target: v6, Seq: 4, SrcPort: 63081, Sent: sent, State: probe.StateFiltered, Reason: "icmp-port-unreachable", RTT: 90001, KernelClock: true,
			From: netip.MustParseAddr("2001:db8::ff"), TTL: 63, ICMPType: 1, ICMPCode: 4},
		{Target: v4, Seq: 5, SrcPort: 63082, Sent: sent, State: probe.StateFiltered, Reason: probe.ReasonTimeout},
		{Target: v4, Seq: 6, State: probe.StateError, Reason: "local-firewall", Err: errors.New(`sendmsg: operation not permitted "x"\y`)},
		{Target: v4, Seq: 7, SrcPort: 63083, Sent: sent, Mode: probe.ModeFIN, State: probe.StateOpen, Reason: probe.ReasonSYNACK, RTT: 50828, KernelClock: true,
			From: v4.Addr, TTL: 64, DF: true, Flags: wire.FlagSyn | wire.FlagAck, Window: 65160,
			Options: wire.SYNOptions{MSS: 1460, WScale: -1},
			Close: &probe.CloseReport{Pattern: probe.Close3Way, Alternatives: probe.PatternSet(0).Add(probe.Close4Way).Add(probe.CloseSimultaneous),
				Note: `its first FIN was lost "maybe"`, AckTime: 3654112, HasAck: true, FinTime: 50451008, HasFin: true, DataAckTime: 999, HasDataAck: true,
				PeerDataBytes: 5, PeerBytes: 10, PeerRetransmits: 1, FinRetransmits: 2, DataBytes: 3000, DataAcked: 2000, DataRetransmits: 3, WindowProbes: 4,
				SegmentSize: 1448, SendErrors: 1, SendError: errors.New("sendmsg: no buffer space available"), Kernel: true},
			Trace: []probe.TraceEvent{
				{At: 0, Out: true, Flags: wire.FlagSyn, Us: probe.TCPState(1), Peer: probe.TCPState(2)},
				{At: 50828, Flags: wire.FlagFin | wire.FlagAck, Seq: 1, Ack: 1, Len: 0, Win: 501, Us: probe.TCPState(3), Peer: probe.TCPState(4), Note: "retransmission"},
			}},
		{Target: v4, Seq: 8, SrcPort: 63084, Sent: sent, Mode: probe.ModeFIN, State: probe.StateOpen, Reason: probe.ReasonSYNACK, RTT: 50828,
			From: v4.Addr, TTL: 64, Flags: wire.FlagSyn | wire.FlagAck, Window: 65160, Options: wire.SYNOptions{WScale: -1},
			Close: &probe.CloseReport{Pattern: probe.CloseNoFIN}},
		{Target: v4, Seq: 9, SrcPort: 63085, Sent: sent, Mode: probe.ModeFIN, State: probe.StateOpen, Reason: probe.ReasonSYNACK, RTT: 50828,
			From: v4.Addr, TTL: 64, Flags: wire.FlagSyn | wire.FlagAck, Window: 65160, Options: wire.SYNOptions{WScale: -1}, Interrupted: true},
	}
	for i := range results {
		p.result(&results[i], []*targetSpec{s4, s6}[results[i].Target.Port/443])
	}
	// The statistics of the results above, as the engine counts them
	// (9 SYNs sent, one awaiting its answer at the end).
	st := probe.Stats{Sent: 9, Open: 5, Closed: 1, Filtered: 3, Errors: 1, Timeouts: 1, Interrupted: 1,
		RTT:    probe.RTTSummary{N: 7, Min: 12000, Avg: 54472, Max: 90001, Mdev: 25857, P50: 50847, P90: 90001, P99: 90001},
		Kernel: 4, MaybeRetransmits: probe.DurationStats{N: 1, Min: 1000000123, Avg: 1000000123, Max: 1000000123},
		CloseAck:      probe.DurationStats{N: 1, Min: 3654112, Avg: 3654112, Max: 3654112},
		CloseFin:      probe.DurationStats{N: 1, Min: 50451008, Avg: 50451008, Max: 50451008},
		DataAck:       probe.DurationStats{N: 1, Min: 999, Avg: 999, Max: 999},
		PeerDataBytes: 5, PeerRetransmits: 1, FinRetransmits: 2, SendErrors: 1, Uncertain: 1, DataShort: 1, CloseInterrupted: 1}
	st.Patterns[probe.Close3Way], st.Patterns[probe.CloseNoFIN] = 1, 1
	p.summary(v4, s4, &st)
	s6.explain, s6.explainReply = "a bare ACK got no answer either", "timeout" // --explain
	p.summary(v6, s6, &probe.Stats{Sent: 3, Filtered: 3, Timeouts: 3})
	p.guard("synprobe_8481_12384e91", true, 19, 0)
	p.guard("synprobe_8481_12384e91", false, 0, -1)
	p.portsEnd(&portsReport{held: 640, ranges: "62121-62760", needed: 640, reused: 3, exhausted: 1})

	spec, err := scan.ParseSpec("198.18.1.0/24:22,80")
	if err != nil {
		t.Fatal(err)
	}
	set, err := scan.NewSet(scan.Block{Spec: &spec})
	if err != nil {
		t.Fatal(err)
	}
	_, _, origin := set.Pair(0)
	a, b := netip.MustParseAddr("198.18.1.7"), netip.MustParseAddr("198.18.1.8")
	src := netip.MustParseAddr("198.18.0.1")
	sr := []struct {
		r      probe.ScanResult
		expect string
	}{
		{probe.ScanResult{Addr: a, Port: 22, Src: src, SrcPort: 61001, Sent: sent, State: probe.StateOpen, Reason: probe.ReasonSYNACK, RTT: 651000,
			Reply: probe.Reply{From: a, TTL: 64, DF: true, Flags: wire.FlagSyn | wire.FlagAck, Window: 64240,
				Options: wire.SYNOptions{MSS: 1460, WScale: 7, SACKPermitted: true, Timestamps: true, TSVal: 1, TSEcr: 0}}}, ""},
		{probe.ScanResult{Addr: a, Port: 80, Src: src, SrcPort: 61002, Sent: sent, State: probe.StateClosed, Reason: probe.ReasonRST, RTT: 700,
			Reply: probe.Reply{From: a, TTL: 60, DF: true, Flags: wire.FlagRst | wire.FlagAck}, Hint: "rst-ttl-differs-from-syn-ack"}, "open"},
		// An answer whose probe's send time was forgotten: no timing.
		{probe.ScanResult{Addr: b, Port: 80, Src: src, SrcPort: 61003, State: probe.StateClosed, Reason: probe.ReasonRST,
			Reply: probe.Reply{From: b, TTL: 64, Flags: wire.FlagRst | wire.FlagAck}}, ""},
		{probe.ScanResult{Addr: b, Port: 22, Src: src, SrcPort: 61004, Sent: sent, State: probe.StateFiltered, Reason: "icmp-admin-prohibited", RTT: 800,
			Reply: probe.Reply{From: netip.MustParseAddr("198.18.7.1"), TTL: 250, ICMPType: 3, ICMPCode: 13}, Hint: "icmp-from-other-address"}, "closed"},
		{probe.ScanResult{Addr: b, Port: 23, Src: src, State: probe.StateFiltered, Reason: probe.ReasonTimeout}, "filtered"},
		{probe.ScanResult{Addr: b, Port: 24, Src: src, State: probe.StateError, Reason: "local-firewall", Err: errors.New("operation not permitted")}, ""},
		{probe.ScanResult{Addr: a, Port: 443, Src: src, SrcPort: 61005, Sent: sent, State: probe.StateOpen, Reason: probe.ReasonSYNACK, RTT: 1200000000,
			MaybeRetransmit: true, KernelClock: true, Reply: probe.Reply{From: a, TTL: 64, Flags: wire.FlagSyn | wire.FlagAck, Window: 64240, Options: wire.SYNOptions{WScale: -1}}}, ""},
	}
	for i := range sr {
		p.scanResult(&sr[i].r, origin, sr[i].expect)
	}
	o := &options{retries: 1, timeout: 300 * time.Millisecond}
	for _, m := range []mismatch{
		{"198.18.1.0/24:22,80", "open", sr[1].r},
		{"targets.txt:3: 198.18.1.8:22=closed", "closed", sr[3].r},
		{"198.18.1.0/24:22,80", "closed", sr[4].r},
		{"198.18.1.0/24:22,80", "open", sr[5].r},
	} {
		p.mismatch(&m, o)
	}
	sum := &scan.Summary{Pairs: 256000, Sent: 256010, Retries: 10, Open: 768, Closed: 255230, Filtered: 1, Errors: 1,
		Reasons: map[string]uint64{"rst": 255230, "syn-ack": 768, "timeout": 1, "local-firewall": 1}, Duplicates: 2,
		Duration: 520841234 * time.Nanosecond, Rate: 513198.456, RateLimit: 100000, Slowdowns: 1, SendErrors: 3, RecvDrops: 4, Received: 256781, Unmatched: 3, Interrupted: true,
		KernelClock: 767, // clock: kernel (the first summary), absent (the second: nothing timed)
		SendPath:    "IPv4: Ethernet frames to 02:73:70:00:00:02 on interface 2", RecvPath: "packet ring"}
	p.scanSummary(sum, 4, true)
	p.scanSummary(&scan.Summary{Pairs: 1, Sent: 1, Open: 1, Reasons: map[string]uint64{"syn-ack": 1}, Duration: time.Millisecond, Rate: 1000,
		SendPath: "IPv4: raw IP socket", RecvPath: "raw sockets"}, 0, false)
	// synprobe listener's records: an open listener and a full queue.
	rtt := 48.2
	writeListenerJSON(&out, &listenerReport{Type: "listener", Target: "lab.test:80", Addr: "198.18.9.2", Port: 80, State: "open", Reason: "syn-ack",
		RTTus: &rtt, Clock: "kernel", Observe: 8.5, Retransmits: []float64{1.039, 3.075}, AfterACK: "silent", AcceptQueue: "ok", Findings: []string{"retransmitted"}, Healthy: true,
		Tests: []cookieTestRecord{{Name: "isn", Vote: "stateful", Evidence: "moved"}}})
	yes := true
	writeListenerJSON(&out, &listenerReport{Type: "listener", Target: "lab.test:81", Addr: "198.18.9.2", Port: 81, State: "filtered", Reason: "timeout",
		Observe: 8.5, Retransmits: []float64{}, SynCookies: &yes, AfterACK: "dropped", DeferAccept: true, AcceptQueue: "full", BareACK: &bareACKFinding{State: "closed", Reason: "rst-to-ack", RTTus: &rtt},
		Findings: []string{"full"}})
	return out.Bytes()
}

// TestJSONStrings: strings are escaped as JSON needs, and HTML characters
// are left as they are (they were before encoding/json wrote the lines);
// invalid UTF-8 becomes U+FFFD.
func TestJSONStrings(t *testing.T) {
	for in, want := range map[string]string{
		`a"b\c`:         `a"b\c`,
		"\x00\n\t":      "\x00\n\t",
		"\xff":          "\uFFFD",
		"héllo <a & b>": "héllo <a & b>",
		"\u2028":        "\u2028",
	} {
		var out bytes.Buffer
		p := newPrinter(&out, &options{json: true})
		p.guard(in, true, 1, -1)
		if strings.Contains(in, "<") && !strings.Contains(out.String(), "<a & b>") {
			t.Errorf("%q: HTML escaped: %s", in, out.String())
		}
		var back struct{ Table string }
		if err := json.Unmarshal(out.Bytes(), &back); err != nil || back.Table != want || strings.Count(out.String(), "\n") != 1 {
			t.Errorf("%q: %s decodes to %q (%v), want %q on one line", in, out.String(), back.Table, err, want)
		}
	}
}

// The sections of docs/json.md that document a record, by the start of
// their heading, and the Go type of that record. Every table of the page
// is in one of them.
var jsonSections = []struct {
	heading string
	typ     reflect.Type
}{
	{"`\"type\":\"probe\"`", reflect.TypeFor[probeRecord]()},
	{"`close` (fin mode)", reflect.TypeFor[closeRecord]()},
	{"`trace`", reflect.TypeFor[traceRecord]()},
	{"`\"type\":\"summary\"`", reflect.TypeFor[summaryRecord]()},
	{"`close` in summaries", reflect.TypeFor[closeSummary]()},
	{"`\"type\":\"guard\"`", reflect.TypeFor[guardRecord]()},
	{"`\"type\":\"ports\"`", reflect.TypeFor[portsRecord]()},
	{"`\"type\":\"result\"`", reflect.TypeFor[resultRecord]()},
	{"`\"type\":\"mismatch\"`", reflect.TypeFor[mismatchRecord]()},
	{"`\"type\":\"scan-summary\"`", reflect.TypeFor[scanSummaryRecord]()},
	{"`\"type\":\"listener\"`", reflect.TypeFor[listenerReport]()},
	{"`bare_ack` in listener records", reflect.TypeFor[bareACKFinding]()},
	{"`syncookie_tests` in listener records", reflect.TypeFor[cookieTestRecord]()},
}

// docSection is what docs/json.md says of one record.
type docSection struct {
	heading  string
	fields   map[string]string // field -> JSON type
	example  string            // the first json block, if any
	nullable map[string]bool   // fields written as null when unset
}

// TestJSONSchema holds docs/json.md and the record types together: each
// section's table names exactly the fields the record's struct tags give
// encoding/json, with the same JSON types; each example's fields are
// documented and in the order synprobe writes them; and the lines the
// printer writes for results covering every optional part (goldenLines)
// carry exactly the documented fields, with their types.
func TestJSONSchema(t *testing.T) {
	doc := readJSONDoc(t)
	byType := map[reflect.Type]*docSection{}
	for _, s := range jsonSections {
		d := doc[s.heading]
		if d == nil {
			t.Errorf("docs/json.md: no section %s with a table", s.heading)
			continue
		}
		byType[s.typ] = d
		d.nullable = nullableFields(s.typ)
		delete(doc, s.heading)

		code := map[string]string{}
		for _, f := range jsonFields(t, s.typ) {
			code[f.name] = f.typ
		}
		for name, typ := range d.fields {
			switch ct, ok := code[name]; {
			case !ok:
				t.Errorf("%s: documented field %q is not in %v", s.heading, name, s.typ)
			case ct != typ:
				t.Errorf("%s: field %q is documented as a %s, %v writes a %s", s.heading, name, typ, s.typ, ct)
			}
		}
		for name := range code {
			if _, ok := d.fields[name]; !ok {
				t.Errorf("%s: %v writes field %q, which is not documented", s.heading, s.typ, name)
			}
		}
		if d.example != "" {
			checkExample(t, d, s.typ)
		}
	}
	for h := range doc {
		t.Errorf("docs/json.md: section %q has a table of fields, but no record type is known for it (jsonSections)", h)
	}
	if t.Failed() {
		return
	}

	// What the printer writes, against the doc.
	seen := map[*docSection]map[string]bool{}
	var check func(where string, d *docSection, obj map[string]any)
	check = func(where string, d *docSection, obj map[string]any) {
		if seen[d] == nil {
			seen[d] = map[string]bool{}
		}
		for k, v := range obj {
			seen[d][k] = true
			typ, ok := d.fields[k]
			if !ok {
				t.Errorf("%s: field %q is not documented in %s", where, k, d.heading)
				continue
			}
			if got := valueType(v); got != typ && !(v == nil && d.nullable[k]) {
				t.Errorf("%s: field %q is a %s, documented as a %s", where, k, got, typ)
			}
		}
	}
	lines := strings.Split(strings.TrimSpace(string(goldenLines(t))), "\n")
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %d: %v: %s", i+1, err, l)
		}
		var d *docSection
		for _, s := range jsonSections {
			if s.heading == fmt.Sprintf("`\"type\":%q`", m["type"]) {
				d = byType[s.typ]
			}
		}
		if d == nil {
			t.Errorf("line %d: type %v is not documented", i+1, m["type"])
			continue
		}
		where := fmt.Sprintf("line %d (%v)", i+1, m["type"])
		check(where, d, m)
		switch m["type"] {
		case "probe":
			if c, ok := m["close"].(map[string]any); ok {
				check(where+" close", byType[reflect.TypeFor[closeRecord]()], c)
			}
			if tr, ok := m["trace"].([]any); ok {
				for _, ev := range tr {
					check(where+" trace", byType[reflect.TypeFor[traceRecord]()], ev.(map[string]any))
				}
			}
		case "summary":
			if c, ok := m["close"].(map[string]any); ok {
				check(where+" close", byType[reflect.TypeFor[closeSummary]()], c)
			}
		case "listener":
			if b, ok := m["bare_ack"].(map[string]any); ok {
				check(where+" bare_ack", byType[reflect.TypeFor[bareACKFinding]()], b)
			}
			if ts, ok := m["syncookie_tests"].([]any); ok {
				for _, x := range ts {
					check(where+" syncookie_tests", byType[reflect.TypeFor[cookieTestRecord]()], x.(map[string]any))
				}
			}
		}
	}
	for _, s := range jsonSections {
		d := byType[s.typ]
		for k := range d.fields {
			if !seen[d][k] {
				t.Errorf("%s: no line of goldenLines has field %q: add a result that shows it", s.heading, k)
			}
		}
	}
}

// readJSONDoc parses docs/json.md: the sections that have a table of
// fields, by heading (without its #s).
func readJSONDoc(t *testing.T) map[string]*docSection {
	b, err := os.ReadFile("../../docs/json.md")
	if err != nil {
		t.Fatal(err)
	}
	tick := regexp.MustCompile("`([^`]+)`")
	sections := map[string]*docSection{}
	var cur *docSection
	var probeFields map[string]string
	var except []string
	inJSON := false
	for n, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "```"):
			inJSON = !inJSON && line == "```json"
		case inJSON:
			if cur != nil && cur.example == "" {
				cur.example = line
			}
		case strings.HasPrefix(line, "#"):
			cur = &docSection{heading: strings.TrimSpace(strings.TrimLeft(line, "#")), fields: map[string]string{}}
		case cur == nil:
		case strings.HasPrefix(line, "The same fields as `probe` lines, except "):
			// "except `seq`, `close`, ... (...), with": the names
			// before the first parenthesis or comma-word.
			list, _, _ := strings.Cut(strings.TrimPrefix(line, "The same fields as `probe` lines, except "), " (")
			for _, m := range tick.FindAllStringSubmatch(list, -1) {
				except = append(except, m[1])
			}
			if probeFields == nil {
				t.Fatalf("docs/json.md:%d: the result section comes before the probe section", n+1)
			}
			for k, v := range probeFields {
				cur.fields[k] = v
			}
			for _, k := range except {
				if _, ok := cur.fields[k]; !ok {
					t.Errorf("docs/json.md:%d: %q is not a probe field", n+1, k)
				}
				delete(cur.fields, k)
			}
			sections[cur.heading] = cur
		case strings.HasPrefix(line, "| `"):
			cells := strings.Split(line, "|")
			if len(cells) < 5 {
				t.Errorf("docs/json.md:%d: a field without a type: %s", n+1, line)
				continue
			}
			names := tick.FindAllStringSubmatch(cells[1], -1)
			types := strings.Split(strings.TrimSpace(cells[2]), ", ")
			if len(types) != 1 && len(types) != len(names) {
				t.Errorf("docs/json.md:%d: %d names, %d types", n+1, len(names), len(types))
				continue
			}
			for i, m := range names {
				typ := types[0]
				if len(types) > 1 {
					typ = types[i]
				}
				if _, dup := cur.fields[m[1]]; dup && !strings.HasPrefix(cur.heading, "`\"type\":\"result\"`") {
					t.Errorf("docs/json.md:%d: %q documented twice", n+1, m[1])
				}
				cur.fields[m[1]] = typ
			}
			sections[cur.heading] = cur
			if strings.HasPrefix(cur.heading, "`\"type\":\"probe\"`") {
				probeFields = cur.fields
			}
		}
	}
	// Key sections by the heading starts of jsonSections.
	out := map[string]*docSection{}
	for h, d := range sections {
		key := h
		for _, s := range jsonSections {
			if strings.HasPrefix(h, s.heading) {
				key = s.heading
			}
		}
		out[key] = d
	}
	return out
}

// checkExample checks a section's example: a line, or for a nested object
// a member ("close":{...}), whose fields are documented and in the order
// of typ's fields.
func checkExample(t *testing.T, d *docSection, typ reflect.Type) {
	t.Helper()
	ex := d.example
	if strings.HasPrefix(ex, `"`) {
		_, v, _ := strings.Cut(ex, ":")
		ex = v
	}
	dec := json.NewDecoder(strings.NewReader(ex))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Errorf("%s: example is not an object: %s", d.heading, d.example)
		return
	}
	order := map[string]int{}
	for i, f := range jsonFields(t, typ) {
		order[f.name] = i
	}
	nullable := nullableFields(typ)
	last, lastKey := -1, ""
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Errorf("%s: example: %v", d.heading, err)
			return
		}
		k := tok.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Errorf("%s: example: %v", d.heading, err)
			return
		}
		if typ, ok := d.fields[k]; !ok {
			t.Errorf("%s: example field %q is not documented", d.heading, k)
		} else if got := valueType(v); got != typ && !(v == nil && nullable[k]) {
			t.Errorf("%s: example field %q is a %s, documented as a %s", d.heading, k, got, typ)
		}
		if i, ok := order[k]; ok {
			if i < last {
				t.Errorf("%s: example has %q after %q; synprobe writes it before", d.heading, k, lastKey)
			}
			last, lastKey = i, k
		}
	}
}

// nullableFields names the fields of typ that encoding/json writes as
// null when unset: pointers without omitempty.
func nullableFields(typ reflect.Type) map[string]bool {
	nullable := map[string]bool{}
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		nullable[name] = f.Type.Kind() == reflect.Pointer && !strings.Contains(opts, "omitempty")
	}
	return nullable
}

// jsonField is a field as encoding/json writes it.
type jsonField struct{ name, typ string }

// jsonFields lists the fields of record type t as encoding/json names
// them, in the order it writes them: embedded structs (and pointers to
// them) flattened, unexported fields left out.
func jsonFields(t *testing.T, typ reflect.Type) []jsonField {
	var out []jsonField
	seen := map[string]bool{}
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for f := range typ.Fields() {
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if f.Anonymous && tag == "" && ft.Kind() == reflect.Struct {
				walk(ft)
				continue
			}
			if !f.IsExported() || tag == "-" {
				continue
			}
			if tag == "" {
				t.Errorf("%v.%s has no json name", typ, f.Name)
			}
			if seen[tag] {
				// encoding/json would drop both silently.
				t.Errorf("%v: two fields named %q", typ, tag)
			}
			seen[tag] = true
			out = append(out, jsonField{tag, jsonType(ft)})
		}
	}
	walk(typ)
	return out
}

// jsonType is the JSON type encoding/json writes for a Go type.
func jsonType(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[number]():
		return "number"
	case reflect.TypeFor[ipAddr](), reflect.TypeFor[timestamp]():
		return "string"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice, reflect.Array:
		return "array"
	}
	return t.String()
}

// valueType is the JSON type of a decoded value.
func valueType(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case bool:
		return "bool"
	case float64:
		return "number"
	case map[string]any:
		return "object"
	case []any:
		return "array"
	}
	return fmt.Sprintf("%T", v)
}
