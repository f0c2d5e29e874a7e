package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/scan"
	"github.com/synprobe/synprobe/rawsock"
)

// How many source ports a run holds.
const (
	// portBlockSize serves ping-style runs in rst and ack modes, and
	// scans: a port comes back after 511 others, long after the server
	// has forgotten the exchange we reset, and a scan's retry passes
	// (at most scan.MaxRetries) each take another port.
	portBlockSize = 512
	// minPortBlock is the fewest ports a run settles for when other
	// sockets hold the rest of the range.
	minPortBlock = 64
	// maxFINPorts bounds a fin-mode block: probe.Prober keeps every
	// connection, TIME_WAIT included, in a table of 2048.
	maxFINPorts = 2048
	// timeWait is how long a fin-mode port stays taken after its close
	// (probe's TIME_WAIT).
	timeWait = 60 * time.Second
)

// portPlan is how many ports a run asks for, and why.
type portPlan struct {
	min, max int
	needed   int     // fin mode: ports the rate needs (busy for a close and its TIME_WAIT)
	rate     float64 // fin mode: probes per second
}

// pingPorts plans the block of a ping-style run over targets pairs. rst
// and ack modes rotate through up to portBlockSize ports (no more than
// the run sends probes). In fin mode a port is taken from its SYN to the
// end of its TIME_WAIT, so the block is sized to the rate: every target
// sends a probe per interval, each holding a port for at most -w, --hold,
// --close-timeout and the minute of TIME_WAIT. Past maxFINPorts, ports in
// TIME_WAIT are reused as RFC 6191 allows (probe.PortPool).
func pingPorts(o *options, targets int) portPlan {
	probes := math.MaxInt
	if o.count > 0 {
		probes = o.count * targets
	}
	if o.mode != probe.ModeFIN {
		n := min(portBlockSize, probes)
		return portPlan{min: min(n, minPortBlock), max: n}
	}
	busy := o.timeout + o.hold + o.closeTimeout + timeWait
	perTarget := int(math.Ceil(busy.Seconds() / o.interval.Seconds()))
	pl := portPlan{needed: min(perTarget*targets, probes), rate: float64(targets) / o.interval.Seconds()}
	if o.count == 1 {
		pl.rate = 0 // one round: no rate to speak of
	}
	pl.max = min(pl.needed, maxFINPorts)
	pl.min = min(pl.max, minPortBlock)
	return pl
}

// scanPorts plans a scan's block: enough that every pass over a pair has
// a port of its own (scan's sport), up to portBlockSize, and no more than
// the scan sends probes.
func scanPorts(o *options, pairs uint64) portPlan {
	passes := o.retries + 1
	n := uint64(portBlockSize)
	if p := pairs * uint64(passes); p < n {
		n = max(p, uint64(passes))
	}
	return portPlan{min: min(int(n), max(passes, minPortBlock)), max: int(n)}
}

// portsFailure says why the run's source ports could not be had, and
// what to do.
func portsFailure(o *options, err error) error {
	if o.sport != 0 {
		switch {
		case o.restricted && (errors.Is(err, rawsock.ErrPortsInUse) || errors.Is(err, os.ErrPermission)):
			// The guard drops the kernel's RSTs from this port: for
			// a caller other than root it must be one that no other
			// socket, listener or connection of this host uses.
			return usagef("--sport %d: synprobe cannot hold the port alone (another socket holds it, or it is below net.ipv4.ip_unprivileged_port_start); only ports synprobe holds: %s", o.sport, privilegeRule)
		case errors.Is(err, rawsock.ErrPortsInUse):
			return &failure{fmt.Errorf("--sport %d: another socket on this host holds the port (a listener, a connection, another synprobe run): choose another, or leave --sport out", o.sport)}
		case errors.Is(err, os.ErrPermission):
			return &failure{fmt.Errorf("--sport %d: holding a port below net.ipv4.ip_unprivileged_port_start needs CAP_NET_BIND_SERVICE: run as root, or choose a port above 1023", o.sport)}
		}
		return &failure{fmt.Errorf("--sport %d: %v", o.sport, err)}
	}
	if errors.Is(err, rawsock.ErrPortsInUse) {
		return &failure{fmt.Errorf("source ports: %v: other programs or synprobe runs hold the rest; wait for them to end, or leave more ports outside net.ipv4.ip_local_port_range", err)}
	}
	if errors.Is(err, rawsock.ErrNoProbePorts) {
		return &failure{fmt.Errorf("source ports: %v; or give one with --sport", err)}
	}
	return &failure{fmt.Errorf("source ports: %v", err)}
}

// openFailure says why a ping's client could not open what it holds,
// and what to do.
func openFailure(o *options, err error) error {
	var oe *probe.OpenError
	if !errors.As(err, &oe) {
		return err
	}
	switch {
	case oe.What == "source ports":
		return portsFailure(o, oe.Err)
	case errors.Is(err, os.ErrPermission) && oe.What == "raw sockets":
		return errors.New(privilegeFix("raw sockets need CAP_NET_RAW"))
	case errors.Is(err, os.ErrPermission) && oe.What == "RST guard":
		return errors.New(privilegeFix(fmt.Sprintf("--mode %v needs CAP_NET_ADMIN for its nftables rule", o.mode)))
	case oe.What == "RST guard":
		return fmt.Errorf("RST guard: %w", oe.Err)
	}
	return oe.Err
}

// portsReport describes a fin-mode run's source ports for the output.
type portsReport struct {
	held      int
	ranges    string
	needed    int
	rate      float64
	reused    uint64 // ports taken again while in TIME_WAIT (RFC 6191)
	exhausted uint64 // probes that found every port busy
}

func newPortsReport(ports []uint16, pl portPlan) *portsReport {
	return &portsReport{held: len(ports), ranges: rawsock.FormatRanges(rawsock.RangesOf(ports)), needed: pl.needed, rate: pl.rate}
}

// A full block gives every pass of a scan its own port.
const _ = uint(portBlockSize - scan.MaxRetries - 1)

// portsStart says how many ports a fin run of more than one round holds
// and what they serve.
func (p *textPrinter) portsStart(r *portsReport) {
	if p.quiet || r.rate == 0 {
		return
	}
	what := "each is taken for a close and its minute of TIME_WAIT"
	if r.held >= r.needed {
		fmt.Fprintf(p.w, "source ports: %d held (%s): %s, and %s probes/s need %d\n", r.held, r.ranges, what, rateString(r.rate), r.needed)
		return
	}
	fmt.Fprintf(p.w, "source ports: %d held (%s): %s, and %s probes/s need %d: a port in TIME_WAIT will be reused as RFC 6191 allows (timestamps on its last connection, a second after its close)\n",
		r.held, r.ranges, what, rateString(r.rate), r.needed)
}

// rateString prints a rate of probes per second to two decimals at most,
// or two significant digits below 1: -i 1.3 makes 0.77, not
// 0.7692307692307692.
func rateString(r float64) string {
	if r < 1 {
		return strconv.FormatFloat(r, 'g', 2, 64)
	}
	return strconv.FormatFloat(math.Round(r*100)/100, 'f', -1, 64)
}

// portsEnd says how often ports were reused or none could be had, if
// they were.
func (p *textPrinter) portsEnd(r *portsReport) {
	if r.reused == 0 && r.exhausted == 0 || p.quiet && r.exhausted == 0 {
		return
	}
	fmt.Fprintf(p.w, "source ports: %d held, %d reused from TIME_WAIT (RFC 6191)", r.held, r.reused)
	if r.exhausted > 0 {
		fmt.Fprintf(p.w, "; %d probes found every port busy (open, closed less than a second ago, or in TIME_WAIT without timestamps): probe less often", r.exhausted)
	}
	fmt.Fprintln(p.w)
}

func (p *jsonPrinter) portsStart(*portsReport) {}

func (p *jsonPrinter) portsEnd(r *portsReport) {
	if p.quiet && r.exhausted == 0 {
		return
	}
	p.write(&portsRecord{Type: "ports", Held: r.held, Ranges: r.ranges, Needed: r.needed, Reused: r.reused, Exhausted: r.exhausted})
}
