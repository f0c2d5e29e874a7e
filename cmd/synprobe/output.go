package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/scan"
	"github.com/synprobe/synprobe/rawsock/wire"
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
	// scanEnd follows the last result: the text output writes its
	// groups (scangroups.go).
	scanEnd(s *scan.Summary)
	mismatch(m *mismatch, o *options)
	scanSummary(s *scan.Summary, mismatches int, expecting bool)
}

func newPrinter(w io.Writer, o *options) printer {
	if o.json {
		p := newJSONPrinter(w)
		p.quiet, p.openOnly = o.quiet, o.openOnly
		return p
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
	noReply string      // " (no reply in 1s)"
	groups  *scanGroups // a scan's results, written at its end
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
		if r.Reason == probe.ReasonTTLExceeded {
			b = appendTTLExceeded(b, r.From, r.Target.Addr)
		}
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

// appendTTLExceeded says what an ICMP time exceeded means, in the words
// of the verdict's line.
func appendTTLExceeded(b []byte, router, target netip.Addr) []byte {
	b = append(b, " (ttl exceeded at "...)
	b = router.AppendTo(b)
	b = append(b, ": the SYN never reached "...)
	b = target.AppendTo(b)
	return append(b, ')')
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
	if p.quiet && escaped <= 0 {
		return // -q: the summary, and a warning
	}
	kind := "owned by this run: the kernel deletes it even if synprobe is killed"
	if !owned {
		kind = "not owned (old kernel): removed at exit; synprobe --cleanup removes leftovers"
	}
	if !p.quiet {
		fmt.Fprintf(p.w, "RST guard: nftables table inet %s, %s; it kept %d kernel RSTs off the wire\n", table, kind, dropped)
	}
	if escaped > 0 {
		fmt.Fprintf(p.w, "WARNING: %d kernel RSTs escaped the guard: the peers saw their connections reset by this host's kernel, and their close reports may be wrong (another firewall rule accepting them first?)\n", escaped)
	}
}

// appendSYNACKOptions renders a SYN-ACK's options and the ECN bits of its
// IP header's tos.
func appendSYNACKOptions(b []byte, o *wire.SYNOptions, tos uint8) []byte {
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

// plural says n things: "1 probe", "2 probes".
func plural[T ~int | ~int64 | ~uint64](n T, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func (p *textPrinter) summary(t *probe.Target, spec *targetSpec, s *probe.Stats) {
	var b strings.Builder
	fmt.Fprintf(&b, "--- %s synprobe statistics ---\n", spec.arg)
	fmt.Fprintf(&b, "%s sent, %d open, %d closed, %d filtered", plural(s.Sent, "probe", "probes"), s.Open, s.Closed, s.Filtered)
	if s.Interrupted > 0 {
		fmt.Fprintf(&b, ", %d unanswered at interrupt", s.Interrupted)
	}
	if s.Errors > 0 {
		fmt.Fprintf(&b, ", %d not sent (errors)", s.Errors)
	}
	fmt.Fprintf(&b, ", %s%% loss\n", strconv.FormatFloat(s.LossPercent(), 'f', -1, 64))
	if spec.explain != "" {
		fmt.Fprintf(&b, "explain: %s\n", wrap(spec.explain, helpColumns-9, "         "))
	}
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

// jsonPrinter writes JSON Lines: a record of records.go per line, through
// one json.Encoder (a Write per line). It reuses its probe and result
// records, so that their lines allocate nothing.
type jsonPrinter struct {
	// quiet (-q) writes the summaries only, and the guard's and the
	// source ports' lines when they warn.
	quiet    bool
	openOnly bool // --open: a scan's open pairs only
	enc      *json.Encoder
	prb      probeRecord
	pair     resultRecord
}

func newJSONPrinter(w io.Writer) *jsonPrinter {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &jsonPrinter{enc: enc}
}

// write encodes one record. A write that fails is the output's to report
// (run's output); the records themselves always encode.
func (p *jsonPrinter) write(rec any) { p.enc.Encode(rec) }

func (p *jsonPrinter) header(*probe.Target, *targetSpec, int) {}

func (p *jsonPrinter) result(r *probe.Result, spec *targetSpec) {
	if !p.quiet {
		p.write(p.prb.set(r, spec))
	}
}

func (p *jsonPrinter) guard(table string, owned bool, dropped uint64, escaped int64) {
	if p.quiet && escaped <= 0 {
		return
	}
	rec := &guardRecord{Type: "guard", Table: table, Owned: owned, Dropped: dropped}
	if escaped >= 0 {
		rec.Escaped = &escaped
	}
	p.write(rec)
}

func (p *jsonPrinter) summary(t *probe.Target, spec *targetSpec, s *probe.Stats) {
	p.write(newSummaryRecord(t, spec, s))
}
