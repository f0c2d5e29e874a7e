package main

import (
	"cmp"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/scan"
)

// A scan's text output, for a person: its results grouped by host, hosts
// in address order, ports in order; a host's plain refusals (RST from the
// host itself) and silent ports in one line each when there are more than
// plainShown of them; the hosts that never answered in one line. The
// scan's results come in a random order, so the text is written at its
// end; JSON Lines (--json) and -q keep nothing and write as results come.
//
// Memory: a line for each pair shown in full, two bytes for each plain
// one, and an entry for each host that answered anything; nothing for a
// host that never answered, nor for what --open or --mismatches leave out.

// plainShown is how many plain pairs of a kind a host may have and still
// see them in full, one line each.
const plainShown = 8

// Kinds of plain pairs.
const (
	plainRST     = iota // closed: a RST from the host, nothing odd about it
	plainTimeout        // filtered: no answer to any probe
	plainKinds
)

type portLine struct {
	port uint16
	line []byte
}

// hostGroup is what the text output keeps of one host.
type hostGroup struct {
	name                           string // the host name it was given by, if any
	answered                       bool   // anything came back for it
	open, closed, filtered, errors uint64
	lines                          []portLine // shown in full
	plain                          [plainKinds][]uint16
	plainLines                     [plainKinds][]portLine // the first plainShown, in full
}

// scanGroups gathers a scan's text output.
type scanGroups struct {
	set      *scan.Set
	hosts    map[netip.Addr]*hostGroup
	openOnly bool
}

func newScanGroups(set *scan.Set, o *options) *scanGroups {
	return &scanGroups{set: set, hosts: map[netip.Addr]*hostGroup{}, openOnly: o.openOnly}
}

// add counts r and says whether its text line is kept: keep must then be
// called with it. Results come as answers do, then the errors, then the
// silent pairs: by the time a silent pair comes, whether its host answered
// anything is known. Most pairs of a big scan are counted only (a host's
// plain refusals past plainShown, what --open leaves out), so their line
// is never made.
func (g *scanGroups) add(r *probe.ScanResult, origin scan.Origin, mismatch bool) (keep bool) {
	h := g.hosts[r.Addr]
	if r.Reason == probe.ReasonTimeout && h == nil {
		return false // a host that never answered: summarised in one line
	}
	if h == nil {
		h = &hostGroup{name: origin.Host()}
		g.hosts[r.Addr] = h
	}
	switch r.State {
	case probe.StateOpen:
		h.open++
	case probe.StateClosed:
		h.closed++
	case probe.StateFiltered:
		h.filtered++
	default:
		h.errors++
	}
	h.answered = h.answered || r.Answered()
	if g.openOnly && r.State != probe.StateOpen {
		return false
	}
	kind := plainKind(r, mismatch)
	if kind < 0 {
		return true
	}
	h.plain[kind] = append(h.plain[kind], r.Port)
	return len(h.plainLines[kind]) < plainShown
}

// keep stores the text line of r, which add said to keep.
func (g *scanGroups) keep(r *probe.ScanResult, mismatch bool, line []byte) {
	h := g.hosts[r.Addr]
	pl := portLine{r.Port, slices.Clone(line)}
	if kind := plainKind(r, mismatch); kind >= 0 {
		h.plainLines[kind] = append(h.plainLines[kind], pl)
		return
	}
	h.lines = append(h.lines, pl)
}

// plainKind is the kind of plain pair r is, or -1 for a pair always shown
// in full.
func plainKind(r *probe.ScanResult, mismatch bool) int {
	switch {
	case mismatch || r.Hint != "":
	case r.State == probe.StateClosed && r.Reason == probe.ReasonRST && r.From == r.Addr:
		return plainRST
	case r.Reason == probe.ReasonTimeout:
		return plainTimeout
	}
	return -1
}

// write writes the groups, hosts in address order, then the line of the
// hosts that never answered. interrupted: the silent pairs were never
// reported, so a host without an answer is one without an answer yet.
func (g *scanGroups) write(w io.Writer, interrupted bool) {
	addrs := make([]netip.Addr, 0, len(g.hosts))
	for a := range g.hosts {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	var b []byte
	for _, a := range addrs {
		h := g.hosts[a]
		lines := h.lines
		var ranges [plainKinds]bool
		for k := range plainKinds {
			if len(h.plain[k]) <= plainShown {
				lines = append(lines, h.plainLines[k]...)
			} else {
				ranges[k] = true
			}
		}
		if len(lines) == 0 && !ranges[plainRST] && !ranges[plainTimeout] {
			continue // --open, and none is
		}
		slices.SortStableFunc(lines, func(x, y portLine) int { return cmp.Compare(x.port, y.port) })
		b = a.AppendTo(b[:0])
		if h.name != "" && h.name != a.String() {
			b = append(b, " ("+h.name+")"...)
		}
		b = fmt.Appendf(b, ": %d open, %d closed, %d filtered", h.open, h.closed, h.filtered)
		if h.errors > 0 {
			b = fmt.Appendf(b, ", %d not sent", h.errors)
		}
		b = append(b, '\n')
		for _, l := range lines {
			b = append(b, l.line...)
		}
		for k, what := range [plainKinds]string{"closed   ", "filtered "} {
			if !ranges[k] {
				continue
			}
			ports := slices.Clone(h.plain[k])
			slices.Sort(ports)
			b = append(b, what...)
			if a.Is6() {
				b = append(b, '[')
				b = a.AppendTo(b)
				b = append(b, "]:"...)
			} else {
				b = a.AppendTo(b)
				b = append(b, ':')
			}
			b = appendPortRanges(b, ports)
			if k == plainRST {
				b = append(b, "  reason=rst"...)
			} else {
				b = append(b, "  reason=timeout"...)
			}
			b = fmt.Appendf(b, " (%d ports)\n", len(ports))
		}
		w.Write(b)
	}
	g.writeSilent(w, interrupted)
}

// maxSilentRanges bounds the address ranges the never-answered line lists.
const maxSilentRanges = 8

// writeSilent writes the line of the hosts that never answered: how many
// of how many, and which, in ranges of consecutive addresses.
func (g *scanGroups) writeSilent(w io.Writer, interrupted bool) {
	if g.set == nil {
		return
	}
	var total, silent, nranges uint64
	var b []byte
	var first, last netip.Addr
	flush := func() {
		if !first.IsValid() {
			return
		}
		if nranges++; nranges <= maxSilentRanges {
			if nranges > 1 {
				b = append(b, ", "...)
			}
			b = first.AppendTo(b)
			if last != first {
				b = append(b, '-')
				b = last.AppendTo(b)
			}
		}
		first = netip.Addr{}
	}
	g.set.Hosts(func(a netip.Addr, _, _ uint64) bool {
		total++
		if h := g.hosts[a]; h != nil && (h.answered || h.errors > 0) {
			flush()
			return true
		}
		silent++
		if first.IsValid() && last.Next() == a {
			last = a
			return true
		}
		flush()
		first, last = a, a
		return true
	})
	flush()
	if silent == 0 {
		return
	}
	if nranges > maxSilentRanges {
		b = fmt.Appendf(b, " and %d more ranges", nranges-maxSilentRanges)
	}
	what := "never answered (every probe timed out)"
	if interrupted {
		what = "had no answer when the scan was interrupted"
	}
	fmt.Fprintf(w, "%d of %s %s: %s\n", silent, plural(total, "address", "addresses"), what, b)
}

// appendPortRanges writes sorted ports as ranges: 1-21,23,25-80.
func appendPortRanges(b []byte, ports []uint16) []byte {
	for i := 0; i < len(ports); {
		j := i
		for j+1 < len(ports) && ports[j+1] == ports[j]+1 {
			j++
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(ports[i]), 10)
		if j > i {
			b = append(b, '-')
			b = strconv.AppendUint(b, uint64(ports[j]), 10)
		}
		i = j + 1
	}
	return b
}
