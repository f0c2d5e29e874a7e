package main

import (
	"math"
	"net/netip"
	"strconv"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/scan"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// The records of the JSON Lines output, one Go type per "type" of line;
// docs/json.md is their schema, and TestJSONSchema holds the two together.
// encoding/json writes the fields in the order declared here. A field
// that is present only sometimes is omitempty or omitzero; a group of
// fields present only together (the doc's "when answered", "SYN-ACK", ...)
// is an embedded pointer, nil when absent.
//
// Encoding a probe line allocates nothing (a ping without -c writes 5000
// a second): the printer reuses its records and one json.Encoder, the
// groups point into their record's own storage, and the values that are
// not plain strings, integers or booleans (numbers with fixed decimals,
// addresses, times) are written by a MarshalJSON on the pointer that
// formats into an array of the value's own.

// probeRecord is a "type":"probe" line: one finished probe.
type probeRecord struct {
	Type    string    `json:"type"`
	Time    timestamp `json:"time,omitzero"`
	Target  string    `json:"target"`
	Addr    ipAddr    `json:"addr"`
	Port    uint16    `json:"port"`
	Src     ipAddr    `json:"src"`
	SrcPort uint16    `json:"sport,omitempty"`
	Seq     int       `json:"seq"`
	State   string    `json:"state"`
	Reason  string    `json:"reason"`
	Error   string    `json:"error,omitempty"`
	answer
	Mode        string        `json:"mode"`
	Close       *closeRecord  `json:"close,omitempty"`
	Interrupted bool          `json:"interrupted,omitempty"`
	Trace       []traceRecord `json:"trace,omitempty"`

	close closeRecord   // Close's storage
	trace []traceRecord // Trace's, reused
}

// set fills the record for r, a probe of spec.
func (rec *probeRecord) set(r *probe.Result, spec *targetSpec) *probeRecord {
	trace := rec.trace[:0]
	*rec = probeRecord{
		Type: "probe", Target: spec.arg, Port: r.Target.Port, SrcPort: r.SrcPort, Seq: r.Seq,
		State: r.State.String(), Reason: r.Reason, Mode: r.Mode.String(), Interrupted: r.Interrupted,
	}
	rec.Time.t = r.Sent
	rec.Addr.a, rec.Src.a = r.Target.Addr, r.Target.Src
	if r.State == probe.StateError {
		rec.Error = r.Err.Error()
	}
	rep := probe.Reply{From: r.From, ICMPType: r.ICMPType, ICMPCode: r.ICMPCode, TTL: r.TTL, TOS: r.TOS, IPID: r.IPID, DF: r.DF,
		Flags: r.Flags, Window: r.Window, Options: r.Options}
	rec.answer.set(r.Answered(), r.State == probe.StateOpen, r.Sent, timingOf(r.RTT, r.KernelClock, r.MaybeRetransmit), &rep)
	if r.Close != nil {
		rec.close.set(r.Close)
		rec.Close = &rec.close
	}
	for _, ev := range r.Trace {
		trace = append(trace, traceRecord{
			At: micros(ev.At), Dir: "in", Flags: ev.Flags.String(), Seq: ev.Seq, Ack: ev.Ack, Len: ev.Len, Win: ev.Win,
			Us: ev.Us.String(), Peer: ev.Peer.String(), Note: ev.Note,
		})
		if ev.Out {
			trace[len(trace)-1].Dir = "out"
		}
	}
	if len(trace) > 0 {
		rec.Trace = trace
	}
	rec.trace = trace
	return rec
}

// resultRecord is a "type":"result" line: one pair of a scan. A scan is
// in rst mode: no seq, close, interrupted or trace.
type resultRecord struct {
	Type     string    `json:"type"`
	Time     timestamp `json:"time,omitzero"`
	Target   string    `json:"target"`
	Addr     ipAddr    `json:"addr"`
	Port     uint16    `json:"port"`
	Src      ipAddr    `json:"src"`
	SrcPort  uint16    `json:"sport,omitempty"`
	State    string    `json:"state"`
	Reason   string    `json:"reason"`
	Expected string    `json:"expected,omitempty"`
	Hint     string    `json:"hint,omitempty"`
	Error    string    `json:"error,omitempty"`
	answer
	Mode string `json:"mode"`
}

// set fills the record for r, a pair of origin expected to be expect
// ("" when nothing is expected).
func (rec *resultRecord) set(r *probe.ScanResult, origin scan.Origin, expect string) *resultRecord {
	*rec = resultRecord{
		Type: "result", Target: origin.Arg(), Port: r.Port, SrcPort: r.SrcPort,
		State: r.State.String(), Reason: r.Reason, Expected: expect, Hint: r.Hint, Mode: probe.ModeRST.String(),
	}
	rec.Time.t = r.Sent
	rec.Addr.a, rec.Src.a = r.Addr, r.Src
	if r.State == probe.StateError {
		rec.Error = r.Err.Error()
	}
	rec.answer.set(r.Answered(), r.State == probe.StateOpen, r.Sent, timingOf(r.RTT, r.KernelClock, r.MaybeRetransmit), &r.Reply)
	return rec
}

// answer is the part of probe and result lines that says who answered
// and how. Each group points into the answer's own storage, or is nil.
type answer struct {
	*timing    // when answered and timed
	*replyIP   // when answered
	*replyIPv4 // when answered over IPv4
	*replyICMP // when an ICMP error decided
	*replyTCP  // when a TCP reply decided
	*synAck    // SYN-ACK

	store struct {
		timing    timing
		ip        replyIP
		ipv4      replyIPv4
		icmp      replyICMP
		tcp       replyTCP
		synAck    synAck
		wscale    wscaleOption
		timestamp timestampOption
	}
}

type timing struct {
	RTT             number `json:"rtt_us"`
	MaybeRetransmit bool   `json:"maybe_retransmit,omitempty"`
	Clock           string `json:"clock"`
}

// timingOf returns the timing group of an answer.
func timingOf(rtt time.Duration, kernel, maybeRetransmit bool) timing {
	return timing{RTT: micros(rtt), MaybeRetransmit: maybeRetransmit, Clock: clockName(kernel)}
}

type replyIP struct {
	From       ipAddr `json:"from"`
	TTL        uint8  `json:"ttl"`
	Hops       int    `json:"hops"`
	InitialTTL int    `json:"initial_ttl"`
	TOS        uint8  `json:"tos"`
}

type replyIPv4 struct {
	IPID uint16 `json:"ip_id"`
	DF   bool   `json:"df"`
}

type replyICMP struct {
	Type uint8 `json:"icmp_type"`
	Code uint8 `json:"icmp_code"`
}

type replyTCP struct {
	Flags string `json:"flags"`
	Win   uint16 `json:"win"`
}

type synAck struct {
	MSS uint16 `json:"mss,omitempty"`
	*wscaleOption
	SACK bool `json:"sack"`
	TS   bool `json:"ts"`
	*timestampOption
	ECE bool `json:"ece"`
	CWR bool `json:"cwr"`
}

type wscaleOption struct {
	WScale int `json:"wscale"`
}

type timestampOption struct {
	TSVal uint32 `json:"tsval"`
	TSEcr uint32 `json:"tsecr"`
}

// set fills the answer: answered says something answered, open that it
// was a SYN-ACK; sent is when the answered probe left (zero: unknown, and
// then the answer has no timing), t its timing, rep the reply.
func (a *answer) set(answered, open bool, sent time.Time, t timing, rep *probe.Reply) {
	*a = answer{}
	if !answered {
		return
	}
	s := &a.store
	if !sent.IsZero() {
		s.timing = t
		a.timing = &s.timing
	}
	hops, initial := probe.Hops(rep.TTL)
	s.ip = replyIP{TTL: rep.TTL, Hops: hops, InitialTTL: initial, TOS: rep.TOS}
	s.ip.From.a = rep.From
	a.replyIP = &s.ip
	if rep.From.Is4() {
		s.ipv4 = replyIPv4{IPID: rep.IPID, DF: rep.DF}
		a.replyIPv4 = &s.ipv4
	}
	if rep.IsICMP() {
		s.icmp = replyICMP{Type: rep.ICMPType, Code: rep.ICMPCode}
		a.replyICMP = &s.icmp
		return
	}
	s.tcp = replyTCP{Flags: rep.Flags.String(), Win: rep.Window}
	a.replyTCP = &s.tcp
	if !open {
		return
	}
	o := &rep.Options
	s.synAck = synAck{MSS: o.MSS, SACK: o.SACKPermitted, TS: o.Timestamps,
		ECE: rep.Flags&wire.FlagEce != 0, CWR: rep.Flags&wire.FlagCwr != 0}
	if o.WScale >= 0 {
		s.wscale = wscaleOption{o.WScale}
		s.synAck.wscaleOption = &s.wscale
	}
	if o.Timestamps {
		s.timestamp = timestampOption{TSVal: o.TSVal, TSEcr: o.TSEcr}
		s.synAck.timestampOption = &s.timestamp
	}
	a.synAck = &s.synAck
}

// closeRecord is a probe line's "close": how a fin-mode connection ended.
type closeRecord struct {
	Pattern         string   `json:"pattern"`
	Alternatives    []string `json:"alternatives,omitempty"`
	Note            string   `json:"note,omitempty"`
	Ack             number   `json:"ack_us,omitzero"`
	Fin             number   `json:"fin_us,omitzero"`
	DataAck         number   `json:"data_ack_us,omitzero"`
	PeerBytes       int      `json:"peer_bytes"`
	PeerDataBytes   int      `json:"peer_data_bytes"`
	PeerRetransmits int      `json:"peer_retransmits"`
	FinRetransmits  int      `json:"fin_retransmits"`
	*dataRecord
	SendErrors int    `json:"send_errors"`
	SendError  string `json:"send_error,omitempty"`
	Clock      string `json:"clock"`

	data dataRecord // dataRecord's storage
}

// dataRecord is the part of a close that reports --data.
type dataRecord struct {
	Bytes        int `json:"data_bytes"`
	Acked        int `json:"data_acked"`
	Retransmits  int `json:"data_retransmits"`
	WindowProbes int `json:"window_probes"`
	SegmentSize  int `json:"segment_size"`
}

func (rec *closeRecord) set(c *probe.CloseReport) {
	*rec = closeRecord{
		Pattern: c.Pattern.String(), Note: c.Note,
		PeerBytes: c.PeerBytes, PeerDataBytes: c.PeerDataBytes, PeerRetransmits: c.PeerRetransmits, FinRetransmits: c.FinRetransmits,
		SendErrors: c.SendErrors, Clock: clockName(c.Kernel),
	}
	for _, alt := range c.Alternatives.Patterns() {
		rec.Alternatives = append(rec.Alternatives, alt.String())
	}
	if c.HasAck {
		rec.Ack = micros(c.AckTime)
	}
	if c.HasFin {
		rec.Fin = micros(c.FinTime)
	}
	if c.HasDataAck {
		rec.DataAck = micros(c.DataAckTime)
	}
	if c.DataBytes > 0 {
		rec.data = dataRecord{Bytes: c.DataBytes, Acked: c.DataAcked, Retransmits: c.DataRetransmits, WindowProbes: c.WindowProbes, SegmentSize: c.SegmentSize}
		rec.dataRecord = &rec.data
	}
	if c.SendError != nil {
		rec.SendError = c.SendError.Error()
	}
}

// traceRecord is an element of a probe line's "trace": one segment.
type traceRecord struct {
	At    number `json:"t_us"`
	Dir   string `json:"dir"`
	Flags string `json:"flags"`
	Seq   uint32 `json:"seq"`
	Ack   uint32 `json:"ack"`
	Len   int    `json:"len"`
	Win   uint16 `json:"win"`
	Us    string `json:"us"`
	Peer  string `json:"peer"`
	Note  string `json:"note,omitempty"`
}

// summaryRecord is a "type":"summary" line: one target's statistics.
type summaryRecord struct {
	Type               string        `json:"type"`
	Target             string        `json:"target"`
	Addr               ipAddr        `json:"addr"`
	Port               uint16        `json:"port"`
	Sent               int           `json:"sent"`
	Open               int           `json:"open"`
	Closed             int           `json:"closed"`
	Filtered           int           `json:"filtered"`
	Errors             int           `json:"errors"`
	Timeouts           int           `json:"timeouts"`
	Interrupted        int           `json:"interrupted"`
	LossPct            number        `json:"loss_pct"`
	Close              *closeSummary `json:"close,omitempty"`
	MaybeRetransmits   int           `json:"maybe_retransmits"`
	MaybeRetransmitMin number        `json:"maybe_retransmit_min_us,omitzero"`
	MaybeRetransmitAvg number        `json:"maybe_retransmit_avg_us,omitzero"`
	MaybeRetransmitMax number        `json:"maybe_retransmit_max_us,omitzero"`
	Explain            string        `json:"explain,omitempty"`
	ExplainReply       string        `json:"explain_reply,omitempty"`
	*rttSummary
}

// rttSummary is the part of a summary present when any probe was
// answered.
type rttSummary struct {
	Clock string `json:"clock"`
	Min   number `json:"min_us"`
	Avg   number `json:"avg_us"`
	Max   number `json:"max_us"`
	Mdev  number `json:"mdev_us"`
	P50   number `json:"p50_us"`
	P90   number `json:"p90_us"`
	P99   number `json:"p99_us"`
}

func newSummaryRecord(t *probe.Target, spec *targetSpec, s *probe.Stats) *summaryRecord {
	rec := &summaryRecord{
		Type: "summary", Target: spec.arg, Port: t.Port,
		Sent: s.Sent, Open: s.Open, Closed: s.Closed, Filtered: s.Filtered, Errors: s.Errors, Timeouts: s.Timeouts, Interrupted: s.Interrupted,
		LossPct:          decimal(s.LossPercent(), 3),
		MaybeRetransmits: s.MaybeRetransmits.N,
		Explain:          spec.explain,
		ExplainReply:     spec.explainReply,
	}
	rec.Addr.a = t.Addr
	if s.Patterns != [len(s.Patterns)]int{} || s.CloseInterrupted > 0 {
		rec.Close = newCloseSummary(s)
	}
	if m := &s.MaybeRetransmits; m.N > 0 {
		rec.MaybeRetransmitMin, rec.MaybeRetransmitAvg, rec.MaybeRetransmitMax = micros(m.Min), micros(m.Avg), micros(m.Max)
	}
	if r := &s.RTT; r.N > 0 {
		rec.rttSummary = &rttSummary{Clock: statsClock(s), Min: micros(r.Min), Avg: micros(r.Avg), Max: micros(r.Max), Mdev: micros(r.Mdev),
			P50: micros(r.P50), P90: micros(r.P90), P99: micros(r.P99)}
	}
	return rec
}

// closeSummary is a summary's "close": the closes of a fin-mode run, a
// count per pattern in probe.ClosePatterns' order first.
type closeSummary struct {
	ThreeWay        int    `json:"3-way"`
	FourWay         int    `json:"4-way"`
	PeerFirst       int    `json:"peer-first"`
	Simultaneous    int    `json:"simultaneous"`
	RST             int    `json:"rst"`
	NoFIN           int    `json:"no-fin"`
	NoACK           int    `json:"no-ack"`
	ZeroWindow      int    `json:"zero-window"`
	AckMin          number `json:"ack_min_us,omitzero"`
	AckAvg          number `json:"ack_avg_us,omitzero"`
	AckMax          number `json:"ack_max_us,omitzero"`
	FinMin          number `json:"fin_min_us,omitzero"`
	FinAvg          number `json:"fin_avg_us,omitzero"`
	FinMax          number `json:"fin_max_us,omitzero"`
	DataAckMin      number `json:"data_ack_min_us,omitzero"`
	DataAckAvg      number `json:"data_ack_avg_us,omitzero"`
	DataAckMax      number `json:"data_ack_max_us,omitzero"`
	PeerDataBytes   int    `json:"peer_data_bytes"`
	PeerRetransmits int    `json:"peer_retransmits"`
	FinRetransmits  int    `json:"fin_retransmits"`
	LateFINs        int    `json:"late_peer_fins"`
	Uncertain       int    `json:"uncertain"`
	DataShort       int    `json:"data_short"`
	SendErrors      int    `json:"send_errors"`
	Interrupted     int    `json:"interrupted"`
}

func newCloseSummary(s *probe.Stats) *closeSummary {
	p := &s.Patterns
	c := &closeSummary{
		ThreeWay: p[probe.Close3Way], FourWay: p[probe.Close4Way], PeerFirst: p[probe.ClosePeerFirst], Simultaneous: p[probe.CloseSimultaneous],
		RST: p[probe.CloseRST], NoFIN: p[probe.CloseNoFIN], NoACK: p[probe.CloseNoACK], ZeroWindow: p[probe.CloseZeroWindow],
		PeerDataBytes: s.PeerDataBytes, PeerRetransmits: s.PeerRetransmits, FinRetransmits: s.FinRetransmits, LateFINs: s.LateFINs,
		Uncertain: s.Uncertain, DataShort: s.DataShort, SendErrors: s.SendErrors, Interrupted: s.CloseInterrupted,
	}
	for _, d := range []struct {
		s             *probe.DurationStats
		min, avg, max *number
	}{{&s.CloseAck, &c.AckMin, &c.AckAvg, &c.AckMax}, {&s.CloseFin, &c.FinMin, &c.FinAvg, &c.FinMax}, {&s.DataAck, &c.DataAckMin, &c.DataAckAvg, &c.DataAckMax}} {
		if d.s.N > 0 {
			*d.min, *d.avg, *d.max = micros(d.s.Min), micros(d.s.Avg), micros(d.s.Max)
		}
	}
	return c
}

// guardRecord is a "type":"guard" line: the RST guard of an ack or fin run.
type guardRecord struct {
	Type    string `json:"type"`
	Table   string `json:"table"`
	Owned   bool   `json:"owned"`
	Dropped uint64 `json:"kernel_rsts_dropped"`
	Escaped *int64 `json:"kernel_rsts_escaped,omitempty"` // nil: not watched
}

// portsRecord is a "type":"ports" line: a fin run's source ports.
type portsRecord struct {
	Type      string `json:"type"`
	Held      int    `json:"held"`
	Ranges    string `json:"ranges"`
	Needed    int    `json:"needed"`
	Reused    uint64 `json:"reused"`
	Exhausted uint64 `json:"exhausted"`
}

// mismatchRecord is a "type":"mismatch" line: a pair whose verdict differs
// from its expectation.
type mismatchRecord struct {
	Type     string `json:"type"`
	Target   string `json:"target"`
	Addr     ipAddr `json:"addr"`
	Port     uint16 `json:"port"`
	Expected string `json:"expected"`
	Got      string `json:"got"`
	Reason   string `json:"reason"`
	*answeredBy
	Hint     string `json:"hint,omitempty"`
	Evidence string `json:"evidence"`
}

// answeredBy is the part of a mismatch present when anyone answered.
type answeredBy struct {
	From ipAddr `json:"from"`
	TTL  uint8  `json:"ttl"`
}

// scanSummaryRecord is a "type":"scan-summary" line.
type scanSummaryRecord struct {
	Type        string            `json:"type"`
	Pairs       uint64            `json:"pairs"`
	Sent        uint64            `json:"sent"`
	Retries     uint64            `json:"retries"`
	Open        uint64            `json:"open"`
	Closed      uint64            `json:"closed"`
	Filtered    uint64            `json:"filtered"`
	Errors      uint64            `json:"errors"`
	Reasons     map[string]uint64 `json:"reasons"` // written with its keys sorted
	Duplicates  uint64            `json:"duplicates"`
	Duration    number            `json:"duration_s"`
	Rate        number            `json:"rate_pps"`
	RateLimit   number            `json:"rate_limit_pps"`
	Slowdowns   int               `json:"slowdowns"`
	SendErrors  uint64            `json:"send_errors"`
	RecvDrops   uint64            `json:"recv_drops"`
	Received    uint64            `json:"received"`
	Unmatched   uint64            `json:"unmatched"`
	Interrupted bool              `json:"interrupted"`
	Path        string            `json:"path"`
	RecvPath    string            `json:"recv_path"`
	Clock       string            `json:"clock,omitempty"`      // "": no answer was timed
	Mismatches  *int              `json:"mismatches,omitempty"` // nil: nothing expected
}

func newScanSummaryRecord(s *scan.Summary, mismatches int, expecting bool) *scanSummaryRecord {
	rec := &scanSummaryRecord{
		Type: "scan-summary", Pairs: s.Pairs, Sent: s.Sent, Retries: s.Retries, Open: s.Open, Closed: s.Closed, Filtered: s.Filtered, Errors: s.Errors,
		Reasons: s.Reasons, Duplicates: s.Duplicates,
		Duration: decimal(s.Duration.Seconds(), 6), Rate: decimal(s.Rate, 1), RateLimit: decimal(s.RateLimit, 1),
		Slowdowns: s.Slowdowns, SendErrors: s.SendErrors, RecvDrops: s.RecvDrops, Received: s.Received, Unmatched: s.Unmatched, Interrupted: s.Interrupted, Path: s.SendPath, RecvPath: s.RecvPath,
		Clock: s.Clock(),
	}
	if rec.Reasons == nil {
		rec.Reasons = map[string]uint64{}
	}
	if expecting {
		rec.Mismatches = &mismatches
	}
	return rec
}

// number is a JSON number written with a fixed count of decimals: µs with
// three (36.816), as docs/json.md promises. Its zero value is "not set"
// (omitzero leaves it out); a value that is not finite is written null.
type number struct {
	v    float64
	prec int8
	set  bool
	buf  [32]byte
}

// micros is d in microseconds, with nanosecond digits.
func micros(d time.Duration) number { return decimal(float64(d)/1e3, 3) }

func decimal(v float64, prec int) number { return number{v: v, prec: int8(prec), set: true} }

func (n *number) IsZero() bool { return !n.set }

func (n *number) MarshalJSON() ([]byte, error) {
	if math.IsNaN(n.v) || math.IsInf(n.v, 0) {
		return append(n.buf[:0], "null"...), nil
	}
	return strconv.AppendFloat(n.buf[:0], n.v, 'f', int(n.prec), 64), nil
}

// ipAddr is an address, written as a string ("" when invalid).
type ipAddr struct {
	a   netip.Addr
	buf [48]byte
}

func (a *ipAddr) IsZero() bool { return !a.a.IsValid() }

func (a *ipAddr) MarshalJSON() ([]byte, error) {
	b := append(a.buf[:0], '"')
	b = a.a.AppendTo(b)
	return append(b, '"'), nil
}

// timestamp is a time, written as RFC 3339 in UTC with nanoseconds.
type timestamp struct {
	t   time.Time
	buf [40]byte
}

func (t *timestamp) IsZero() bool { return t.t.IsZero() }

func (t *timestamp) MarshalJSON() ([]byte, error) {
	b := append(t.buf[:0], '"')
	b = t.t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}
