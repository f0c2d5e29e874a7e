package main

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/scan"
	"github.com/synprobe/synprobe/rawsock"
)

// printer renders results for people (text) or scripts (JSON Lines).
type printer interface {
	header(t *probe.Target, spec *targetSpec, synLen int)
	result(r *probe.Result, spec *targetSpec)
	summary(t *probe.Target, spec *targetSpec, s *probe.Stats)
	// guard reports the RST guard of an ack or fin run: kernel RSTs it
	// dropped, and those that escaped it (-1: not watched).
	guard(table string, owned bool, dropped uint64, escaped int64)
	// portsStart and portsEnd report a fin-mode run's source ports
	// (ports.go).
	portsStart(r *portsReport)
	portsEnd(r *portsReport)

	// Scans: one result per pair, the mismatches with the expectations,
	// and the summary.
	scanResult(r *probe.ScanResult, origin scan.Origin, expect string)
	mismatch(m *mismatch, o *options)
	scanSummary(s *scan.Summary, mismatches int, expecting bool, path, recv string)
}

func newPrinter(w io.Writer, o *options) printer {
	if o.json {
		return &jsonPrinter{w: w}
	}
	return &textPrinter{w: w, quiet: o.quiet, timeout: o.timeout, mode: o.mode}
}

// ms formats a duration in milliseconds with microsecond digits.
func ms(d time.Duration) string { return string(appendMs(nil, d)) }

func appendMs(b []byte, d time.Duration) []byte {
	return strconv.AppendFloat(b, float64(d)/1e6, 'f', 3, 64)
}

func clockName(kernel bool) string {
	if kernel {
		return "kernel"
	}
	return "user"
}

// statsClock says which clock timed a target's RTTs.
func statsClock(s *probe.Stats) string {
	switch n := s.RTT.N; {
	case n == 0:
		return ""
	case s.Kernel == n:
		return "kernel"
	case s.Kernel == 0:
		return "user"
	}
	return "mixed"
}

type textPrinter struct {
	w       io.Writer
	quiet   bool
	timeout time.Duration
	mode    probe.Mode
	b       []byte
	noReply string // " (no reply in 1s)"
}

func (p *textPrinter) header(t *probe.Target, spec *targetSpec, synLen int) {
	if p.quiet {
		return
	}
	fmt.Fprintf(p.w, "SYNPROBE %s (%s) port %d from %s: %d-byte SYN, mode %v\n", spec.host, t.Addr, t.Port, t.Src, synLen, p.mode)
}

// result writes one probe's line. It allocates nothing (a ping at 5 kHz
// writes 5000 of them a second), but for errors.
func (p *textPrinter) result(r *probe.Result, spec *targetSpec) {
	if p.quiet {
		return
	}
	b := p.b[:0]
	st := r.State.String()
	b = append(b, st...)
	for i := len(st); i < 8; i++ {
		b = append(b, ' ')
	}
	b = append(b, ' ')
	b = netip.AddrPortFrom(r.Target.Addr, r.Target.Port).AppendTo(b)
	b = append(b, "  seq="...)
	b = strconv.AppendInt(b, int64(r.Seq), 10)
	b = append(b, " sport="...)
	b = strconv.AppendUint(b, uint64(r.SrcPort), 10)
	if r.Answered() {
		b = append(b, "  rtt="...)
		b = appendMs(b, r.RTT)
		b = append(b, " ms"...)
		if r.MaybeRetransmit {
			b = append(b, " (may be a retransmitted SYN-ACK: kept out of the rtt statistics)"...)
		}
	}
	b = append(b, "  reason="...)
	b = append(b, r.Reason...)
	switch {
	case r.State == probe.StateError:
		b = fmt.Appendf(b, " (%v)", r.Err)
	case r.Reason == probe.ReasonTimeout:
		if p.noReply == "" {
			p.noReply = fmt.Sprintf(" (no reply in %v)", p.timeout)
		}
		b = append(b, p.noReply...)
	case r.IsICMP():
		b = append(b, " from="...)
		b = r.From.AppendTo(b)
		b = append(b, " ttl="...)
		b = strconv.AppendUint(b, uint64(r.TTL), 10)
	default:
		hops, _ := probe.Hops(r.TTL)
		b = append(b, " ttl="...)
		b = strconv.AppendUint(b, uint64(r.TTL), 10)
		b = append(b, " hops="...)
		b = strconv.AppendInt(b, int64(hops), 10)
		if r.Target.Addr.Is4() {
			b = append(b, " id="...)
			b = strconv.AppendUint(b, uint64(r.IPID), 10)
			if r.DF {
				b = append(b, " DF"...)
			}
		}
		b = append(b, " flags="...)
		b = append(b, r.Flags.String()...)
		b = append(b, " win="...)
		b = strconv.AppendUint(b, uint64(r.Window), 10)
		if r.State == probe.StateOpen {
			b = appendSYNACKOptions(b, &r.Options, r.TOS)
		}
	}
	if r.Answered() {
		b = append(b, " clock="...)
		b = append(b, clockName(r.KernelClock)...)
	}
	if c := r.Close; c != nil {
		b = appendClose(b, c)
	}
	if r.Interrupted {
		b = append(b, "\n         interrupted before the close: synprobe reset the connection"...)
	}
	b = append(b, '\n')
	b = appendTrace(b, r)
	p.b = b
	p.w.Write(b)
}

// appendClose renders a close report: "  close=4-way ack=0.052 ms ...".
func appendClose(b []byte, c *probe.CloseReport) []byte {
	b = fmt.Appendf(b, "\n         close=%v", c.Pattern)
	for i, alt := range c.Alternatives.Patterns() {
		if i == 0 {
			b = append(b, " (or "...)
		} else {
			b = append(b, ", "...)
		}
		b = append(b, alt.String()...)
	}
	if c.Alternatives != 0 {
		b = append(b, ')')
	}
	if c.HasAck {
		b = fmt.Appendf(b, " ack=%s ms", ms(c.AckTime))
	}
	if c.HasFin {
		b = fmt.Appendf(b, " fin=%s ms", ms(c.FinTime))
	}
	if c.HasDataAck {
		b = fmt.Appendf(b, " data-ack=%s ms", ms(c.DataAckTime))
	}
	b = fmt.Appendf(b, " peer-bytes=%d after-fin=%d", c.PeerBytes, c.PeerDataBytes)
	if c.PeerRetransmits > 0 {
		b = fmt.Appendf(b, " peer-retransmits=%d", c.PeerRetransmits)
	}
	if c.FinRetransmits > 0 {
		b = fmt.Appendf(b, " fin-retransmits=%d", c.FinRetransmits)
	}
	if c.DataBytes > 0 {
		b = fmt.Appendf(b, " data=%d/%d acked segment=%d", c.DataAcked, c.DataBytes, c.SegmentSize)
		if c.DataRetransmits > 0 {
			b = fmt.Appendf(b, " data-retransmits=%d", c.DataRetransmits)
		}
		if c.WindowProbes > 0 {
			b = fmt.Appendf(b, " window-probes=%d", c.WindowProbes)
		}
	}
	if c.SendErrors > 0 {
		b = fmt.Appendf(b, " send-errors=%d (%v)", c.SendErrors, c.SendError)
	}
	b = append(b, " clock="+clockName(c.Kernel)...)
	if c.Note != "" {
		b = append(b, "\n         note: "+c.Note...)
	}
	return b
}

// appendTrace draws the exchange as a ladder: our state, the segment and
// its direction, the peer's state, then time and numbers.
func appendTrace(b []byte, r *probe.Result) []byte {
	if len(r.Trace) == 0 {
		return b
	}
	b = append(b, "         us                          peer          time since SYN   (seq/ack relative to each side's ISN)\n"...)
	for _, ev := range r.Trace {
		arrow := fmt.Sprintf("--%s-->", ev.Flags)
		if !ev.Out {
			arrow = fmt.Sprintf("<--%s--", ev.Flags)
		}
		b = fmt.Appendf(b, "         %-12s %-14s %-12s %9s ms  seq=%d ack=%d len=%d win=%d", ev.Us, arrow, ev.Peer, ms(ev.At), ev.Seq, ev.Ack, ev.Len, ev.Win)
		if ev.Note != "" {
			b = append(b, "  ("+ev.Note+")"...)
		}
		b = append(b, '\n')
	}
	return b
}

func (p *textPrinter) guard(table string, owned bool, dropped uint64, escaped int64) {
	kind := "owned by this run: the kernel deletes it even if synprobe is killed"
	if !owned {
		kind = "not owned (old kernel): removed at exit; synprobe --cleanup removes leftovers"
	}
	fmt.Fprintf(p.w, "RST guard: nftables table inet %s, %s; it kept %d kernel RSTs off the wire\n", table, kind, dropped)
	if escaped > 0 {
		fmt.Fprintf(p.w, "WARNING: %d kernel RSTs escaped the guard: the peers saw their connections reset by this host's kernel, and their close reports may be wrong (another firewall rule accepting them first?)\n", escaped)
	}
}

// appendSYNACKOptions renders a SYN-ACK's options and the ECN bits of its
// IP header's tos.
func appendSYNACKOptions(b []byte, o *rawsock.SYNOptions, tos uint8) []byte {
	if o.MSS != 0 {
		b = append(b, " mss="...)
		b = strconv.AppendUint(b, uint64(o.MSS), 10)
	}
	if o.WScale >= 0 {
		b = append(b, " ws="...)
		b = strconv.AppendInt(b, int64(o.WScale), 10)
	}
	if o.SACKPermitted {
		b = append(b, " sack"...)
	}
	if o.Timestamps {
		b = append(b, " ts="...)
		b = strconv.AppendUint(b, uint64(o.TSVal), 10)
	}
	if ecn := tos & 3; ecn != 0 {
		b = append(b, " ip-ecn="...)
		b = strconv.AppendUint(b, uint64(ecn), 10)
	}
	return b
}

func (p *textPrinter) summary(t *probe.Target, spec *targetSpec, s *probe.Stats) {
	var b strings.Builder
	fmt.Fprintf(&b, "--- %s synprobe statistics ---\n", spec.arg)
	fmt.Fprintf(&b, "%d probes sent, %d open, %d closed, %d filtered", s.Sent, s.Open, s.Closed, s.Filtered)
	if s.Interrupted > 0 {
		fmt.Fprintf(&b, ", %d unanswered at interrupt", s.Interrupted)
	}
	if s.Errors > 0 {
		fmt.Fprintf(&b, ", %d not sent (errors)", s.Errors)
	}
	fmt.Fprintf(&b, ", %s%% loss\n", strconv.FormatFloat(s.LossPercent(), 'f', -1, 64))
	if sum := &s.RTT; sum.N > 0 {
		fmt.Fprintf(&b, "rtt min/avg/max/mdev = %s/%s/%s/%s ms  p50/p90/p99 = %s/%s/%s ms  clock=%s\n",
			ms(sum.Min), ms(sum.Avg), ms(sum.Max), ms(sum.Mdev), ms(sum.P50), ms(sum.P90), ms(sum.P99), statsClock(s))
	}
	if m := &s.MaybeRetransmits; m.N > 0 {
		fmt.Fprintf(&b, "%d SYN-ACKs came %v or more after the SYN and may be retransmissions: kept out of rtt; min/avg/max = %s/%s/%s ms\n",
			m.N, probe.SynAckRTO, ms(m.Min), ms(m.Avg), ms(m.Max))
	}
	if p.mode == probe.ModeFIN && s.Open > 0 {
		b.WriteString("close:")
		for i, pat := range probe.ClosePatterns() {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, " %d %v", s.Patterns[pat], pat)
		}
		if s.CloseInterrupted > 0 {
			fmt.Fprintf(&b, "; %d interrupted and reset", s.CloseInterrupted)
		}
		b.WriteByte('\n')
		for _, d := range []struct {
			name string
			s    *probe.DurationStats
		}{{"FIN->ACK", &s.CloseAck}, {"FIN->FIN", &s.CloseFin}, {"data->ACK", &s.DataAck}} {
			if d.s.N > 0 {
				fmt.Fprintf(&b, "close %s min/avg/max = %s/%s/%s ms\n", d.name, ms(d.s.Min), ms(d.s.Avg), ms(d.s.Max))
			}
		}
		if s.PeerDataBytes > 0 || s.PeerRetransmits > 0 || s.FinRetransmits > 0 || s.LateFINs > 0 {
			fmt.Fprintf(&b, "peer bytes after our FIN %d, peer retransmissions %d, our FIN retransmissions %d, late peer FINs %d\n",
				s.PeerDataBytes, s.PeerRetransmits, s.FinRetransmits, s.LateFINs)
		}
		if s.DataShort > 0 {
			fmt.Fprintf(&b, "--data not acknowledged whole by the peer in %d of %d connections\n", s.DataShort, s.Open)
		}
		if s.Uncertain > 0 || s.SendErrors > 0 {
			fmt.Fprintf(&b, "closes with an alternative (loss hid the difference) %d, segments the kernel refused %d\n", s.Uncertain, s.SendErrors)
		}
	}
	io.WriteString(p.w, b.String())
}

// jsonPrinter writes JSON Lines; the schema is docs/json.md.
type jsonPrinter struct {
	w      io.Writer
	j      jsonLine
	typ    string // "result" for scans; "probe" otherwise
	expect string // the pair's expected state, scans only
}

func (p *jsonPrinter) header(*probe.Target, *targetSpec, int) {}

func (p *jsonPrinter) result(r *probe.Result, spec *targetSpec) {
	j := &p.j
	if p.typ == "result" {
		j.begin("result")
	} else {
		j.begin("probe")
	}
	if !r.Sent.IsZero() {
		j.key("time")
		j.b = append(j.b, '"')
		j.b = r.Sent.UTC().AppendFormat(j.b, time.RFC3339Nano)
		j.b = append(j.b, '"')
	}
	p.target(r.Target, spec)
	j.addr("src", r.Target.Src)
	if r.SrcPort != 0 {
		j.uint("sport", uint64(r.SrcPort))
	}
	if p.typ != "result" {
		j.uint("seq", uint64(r.Seq))
	}
	j.str("state", r.State.String())
	j.str("reason", r.Reason)
	if p.expect != "" {
		j.str("expected", p.expect)
	}
	if r.Hint != "" {
		j.str("hint", r.Hint)
	}
	if r.State == probe.StateError {
		j.str("error", r.Err.Error())
	}
	if r.Answered() {
		// A scan's answer whose probe's send time was forgotten (its
		// slot in a busy table reused) has no RTT: none is printed.
		if !r.Sent.IsZero() {
			j.micros("rtt_us", r.RTT)
			if r.MaybeRetransmit {
				j.bool("maybe_retransmit", true)
			}
			j.str("clock", clockName(r.KernelClock))
		}
		j.addr("from", r.From)
		j.uint("ttl", uint64(r.TTL))
		hops, initial := probe.Hops(r.TTL)
		j.uint("hops", uint64(hops))
		j.uint("initial_ttl", uint64(initial))
		j.uint("tos", uint64(r.TOS))
		if r.From.Is4() {
			j.uint("ip_id", uint64(r.IPID))
			j.bool("df", r.DF)
		}
	}
	if r.IsICMP() {
		j.uint("icmp_type", uint64(r.ICMPType))
		j.uint("icmp_code", uint64(r.ICMPCode))
	} else if r.Answered() {
		j.str("flags", r.Flags.String())
		j.uint("win", uint64(r.Window))
		if r.State == probe.StateOpen {
			o := &r.Options
			if o.MSS != 0 {
				j.uint("mss", uint64(o.MSS))
			}
			if o.WScale >= 0 {
				j.uint("wscale", uint64(o.WScale))
			}
			j.bool("sack", o.SACKPermitted)
			j.bool("ts", o.Timestamps)
			if o.Timestamps {
				j.uint("tsval", uint64(o.TSVal))
				j.uint("tsecr", uint64(o.TSEcr))
			}
			j.bool("ece", r.Flags&rawsock.FlagEce != 0)
			j.bool("cwr", r.Flags&rawsock.FlagCwr != 0)
		}
	}
	j.str("mode", r.Mode.String())
	if c := r.Close; c != nil {
		j.object("close")
		j.str("pattern", c.Pattern.String())
		if c.Alternatives != 0 {
			j.key("alternatives")
			j.b = append(j.b, '[')
			j.first = true
			for _, alt := range c.Alternatives.Patterns() {
				j.key("")
				j.b = appendJSONString(j.b, alt.String())
			}
			j.close(']')
		}
		if c.Note != "" {
			j.str("note", c.Note)
		}
		if c.HasAck {
			j.micros("ack_us", c.AckTime)
		}
		if c.HasFin {
			j.micros("fin_us", c.FinTime)
		}
		if c.HasDataAck {
			j.micros("data_ack_us", c.DataAckTime)
		}
		j.uint("peer_bytes", uint64(c.PeerBytes))
		j.uint("peer_data_bytes", uint64(c.PeerDataBytes))
		j.uint("peer_retransmits", uint64(c.PeerRetransmits))
		j.uint("fin_retransmits", uint64(c.FinRetransmits))
		if c.DataBytes > 0 {
			j.uint("data_bytes", uint64(c.DataBytes))
			j.uint("data_acked", uint64(c.DataAcked))
			j.uint("data_retransmits", uint64(c.DataRetransmits))
			j.uint("window_probes", uint64(c.WindowProbes))
			j.uint("segment_size", uint64(c.SegmentSize))
		}
		j.uint("send_errors", uint64(c.SendErrors))
		if c.SendError != nil {
			j.str("send_error", c.SendError.Error())
		}
		j.str("clock", clockName(c.Kernel))
		j.close('}')
	}
	if r.Interrupted {
		j.bool("interrupted", true)
	}
	if len(r.Trace) > 0 {
		j.key("trace")
		j.b = append(j.b, '[')
		j.first = true
		for _, ev := range r.Trace {
			j.object("")
			j.micros("t_us", ev.At)
			dir := "in"
			if ev.Out {
				dir = "out"
			}
			j.str("dir", dir)
			j.str("flags", ev.Flags.String())
			j.uint("seq", uint64(ev.Seq))
			j.uint("ack", uint64(ev.Ack))
			j.uint("len", uint64(ev.Len))
			j.uint("win", uint64(ev.Win))
			j.str("us", ev.Us.String())
			j.str("peer", ev.Peer.String())
			if ev.Note != "" {
				j.str("note", ev.Note)
			}
			j.close('}')
		}
		j.close(']')
	}
	j.end(p.w)
}

func (p *jsonPrinter) guard(table string, owned bool, dropped uint64, escaped int64) {
	j := &p.j
	j.begin("guard")
	j.str("table", table)
	j.bool("owned", owned)
	j.uint("kernel_rsts_dropped", dropped)
	if escaped >= 0 {
		j.uint("kernel_rsts_escaped", uint64(escaped))
	}
	j.end(p.w)
}

func (p *jsonPrinter) target(t *probe.Target, spec *targetSpec) {
	p.j.str("target", spec.arg)
	p.j.addr("addr", t.Addr)
	p.j.uint("port", uint64(t.Port))
}

func (p *jsonPrinter) summary(t *probe.Target, spec *targetSpec, s *probe.Stats) {
	j := &p.j
	j.begin("summary")
	p.target(t, spec)
	j.uint("sent", uint64(s.Sent))
	j.uint("open", uint64(s.Open))
	j.uint("closed", uint64(s.Closed))
	j.uint("filtered", uint64(s.Filtered))
	j.uint("errors", uint64(s.Errors))
	j.uint("timeouts", uint64(s.Timeouts))
	j.uint("interrupted", uint64(s.Interrupted))
	j.float("loss_pct", s.LossPercent(), 3)
	if s.Patterns != [len(s.Patterns)]int{} || s.CloseInterrupted > 0 {
		j.object("close")
		for _, pat := range probe.ClosePatterns() {
			j.uint(pat.String(), uint64(s.Patterns[pat]))
		}
		for _, d := range []struct {
			name string
			s    *probe.DurationStats
		}{{"ack", &s.CloseAck}, {"fin", &s.CloseFin}, {"data_ack", &s.DataAck}} {
			if d.s.N > 0 {
				j.micros(d.name+"_min_us", d.s.Min)
				j.micros(d.name+"_avg_us", d.s.Avg)
				j.micros(d.name+"_max_us", d.s.Max)
			}
		}
		j.uint("peer_data_bytes", uint64(s.PeerDataBytes))
		j.uint("peer_retransmits", uint64(s.PeerRetransmits))
		j.uint("fin_retransmits", uint64(s.FinRetransmits))
		j.uint("late_peer_fins", uint64(s.LateFINs))
		j.uint("uncertain", uint64(s.Uncertain))
		j.uint("data_short", uint64(s.DataShort))
		j.uint("send_errors", uint64(s.SendErrors))
		j.uint("interrupted", uint64(s.CloseInterrupted))
		j.close('}')
	}
	j.uint("maybe_retransmits", uint64(s.MaybeRetransmits.N))
	if m := &s.MaybeRetransmits; m.N > 0 {
		j.micros("maybe_retransmit_min_us", m.Min)
		j.micros("maybe_retransmit_avg_us", m.Avg)
		j.micros("maybe_retransmit_max_us", m.Max)
	}
	if sum := &s.RTT; sum.N > 0 {
		j.str("clock", statsClock(s))
		j.micros("min_us", sum.Min)
		j.micros("avg_us", sum.Avg)
		j.micros("max_us", sum.Max)
		j.micros("mdev_us", sum.Mdev)
		j.micros("p50_us", sum.P50)
		j.micros("p90_us", sum.P90)
		j.micros("p99_us", sum.P99)
	}
	j.end(p.w)
}

// jsonLine builds one JSON object by appending; it escapes every string.
type jsonLine struct {
	b     []byte
	first bool // no member written yet in the innermost object or array
}

func (j *jsonLine) begin(typ string) {
	j.b = append(j.b[:0], '{')
	j.first = true
	j.str("type", typ)
}

// key writes a member name; "" writes an array element's separator only.
func (j *jsonLine) key(k string) {
	if !j.first {
		j.b = append(j.b, ',')
	}
	j.first = false
	if k != "" {
		j.b = appendJSONString(j.b, k)
		j.b = append(j.b, ':')
	}
}

// object opens a nested object, as member k or (k == "") array element.
func (j *jsonLine) object(k string) {
	j.key(k)
	j.b = append(j.b, '{')
	j.first = true
}

// close ends the innermost object ('}') or array (']').
func (j *jsonLine) close(c byte) {
	j.b = append(j.b, c)
	j.first = false
}

func (j *jsonLine) str(k, v string) { j.key(k); j.b = appendJSONString(j.b, v) }

// addr writes an address; its text needs no escaping.
func (j *jsonLine) addr(k string, a netip.Addr) {
	j.key(k)
	j.b = append(j.b, '"')
	j.b = a.AppendTo(j.b)
	j.b = append(j.b, '"')
}
func (j *jsonLine) uint(k string, v uint64) {
	j.key(k)
	j.b = strconv.AppendUint(j.b, v, 10)
}
func (j *jsonLine) bool(k string, v bool) { j.key(k); j.b = strconv.AppendBool(j.b, v) }
func (j *jsonLine) float(k string, v float64, prec int) {
	j.key(k)
	j.b = strconv.AppendFloat(j.b, v, 'f', prec, 64)
}

// micros writes a duration in microseconds with nanosecond digits.
func (j *jsonLine) micros(k string, d time.Duration) { j.float(k, float64(d)/1e3, 3) }

func (j *jsonLine) end(w io.Writer) {
	j.b = append(j.b, '}', '\n')
	w.Write(j.b)
}

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, `\u00`...)
			b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
