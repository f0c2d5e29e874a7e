package probe

import (
	"errors"
	"fmt"
	"time"

	"github.com/synprobe/synprobe/rawsock/wire"
)

// settings are what one job's probes are sent and followed with: the
// per-probe part of Config (ProbeOptions for a Client).
type settings struct {
	mode         Mode
	timeout      time.Duration
	hold         time.Duration
	data         []byte
	closeTimeout time.Duration
	observe      time.Duration
	lateACK      time.Duration
	trace        bool
	ttl, tos     uint8
	window       uint16
	ecn          bool
	sport        uint16              // a Client's ProbeOptions.SourcePort
	packets      bool                // a Client's ProbeOptions.Packets
	options      [2]*wire.SYNOptions // for IPv4 and IPv6 targets; nil: none
	opts         [2]synOpts          // the same, encoded
}

// newSettings checks and completes the per-probe part of cfg.
func newSettings(cfg *Config) (settings, error) {
	if cfg.Timeout < 0 || cfg.Hold < 0 || cfg.CloseTimeout < 0 {
		return settings{}, errors.New("probe: negative duration")
	}
	if cfg.Observe < 0 || cfg.LateACK < 0 {
		return settings{}, errors.New("probe: negative duration")
	}
	if cfg.Mode > ModeBareACK {
		return settings{}, fmt.Errorf("probe: unknown mode %d", cfg.Mode)
	}
	s := settings{
		mode:         cfg.Mode,
		timeout:      cfg.Timeout,
		hold:         cfg.Hold,
		data:         cfg.Data,
		closeTimeout: cfg.CloseTimeout,
		observe:      cfg.Observe,
		lateACK:      cfg.LateACK,
		trace:        cfg.Trace,
		ttl:          cfg.TTL,
		tos:          cfg.TOS,
		window:       cfg.Window,
		ecn:          cfg.ECN,
		options:      [2]*wire.SYNOptions{cfg.Options, cfg.Options},
	}
	if cfg.Options6 != nil {
		s.options[1] = cfg.Options6
	}
	if s.timeout == 0 {
		s.timeout = time.Second
	}
	if s.observe == 0 {
		s.observe = DefaultObserve
	}
	if s.closeTimeout == 0 {
		s.closeTimeout = 3 * time.Second
	}
	if s.ttl == 0 {
		s.ttl = 64
	}
	if s.window == 0 {
		s.window = 64240
	}
	s.opts[0].encode(s.options[0])
	s.opts[1].encode(s.options[1])
	return s, nil
}

// family returns the index of addr's family in settings.options: 0 for
// IPv4, 1 for IPv6.
func family(t *Target) int {
	if t.Addr.Is6() {
		return 1
	}
	return 0
}

// job is one caller's work on the engine: targets probed in rounds with
// one set of settings. New's Config is one job; a Client makes one per
// Probe or Rounds call. A job's fields belong to the engine's thread,
// except those the queue's mutex guards (see Prober.submit).
type job struct {
	settings
	targets  []Target
	stats    []tally // per target; nil when the caller keeps none
	mtus     []int   // per target: path MTU, 0 not asked yet, -1 unknown
	count    int     // rounds; 0 until cancelled
	interval time.Duration
	round    int       // rounds sent
	sent     int       // probes of the current round sent
	next     time.Time // when the next round is due
	live     int       // its probes in the table whose result is still to come
	onResult func(*Result)
	// spread: a round's probes are spread over the interval (Rounds.Spread).
	spread bool
	// onSend, onSkip: Rounds.OnSend and OnSkip. inflight (with onSkip
	// or resolve) counts each target's probes whose result is still to
	// come.
	onSend, onSkip func(int)
	inflight       []int32
	announced      bool // onSend called for target sent, which waits for room
	// resolve, if set, checks and completes target i (its source: the
	// routes' choice, or the one asked for) before each of its probes
	// with none in flight: sources follow the routes, and a target that
	// cannot be probed (Rounds.KeepGoing) fails that probe.
	resolve func(int, *Target) error
	auto    []bool // per target: checked and completed by resolve before each probe
	// wait: a probe that finds the table full or every port busy waits
	// for room instead of failing (a Client's probes).
	wait bool

	scheduled bool // in Prober.sched
	settled   bool // in Prober.settled, or finished
	cancelled bool // by its caller: its probes were interrupted
	err       error
	done      chan struct{} // closed when the job has finished, if non-nil
	syn       []byte        // its SYN as sent (settings.packets: one probe)
	ended     func()        // called on the engine's thread then, if non-nil
}

// due says when j's next probe is due: its round's start, or with
// spread target i of n at i/n of the interval after it.
func (j *job) due() time.Time {
	if !j.spread || j.sent == 0 {
		return j.next
	}
	return j.next.Add(j.interval * time.Duration(j.sent) / time.Duration(len(j.targets)))
}

// unlive counts the end of a probe of target ti whose result was to come.
func (j *job) unlive(ti int32) {
	j.live--
	if j.inflight != nil {
		j.inflight[ti]--
	}
}

func (j *job) roundsLeft() bool { return j.count == 0 || j.round < j.count }

// over reports whether the job has nothing more to do.
func (j *job) over() bool { return j.live == 0 && (j.cancelled || !j.roundsLeft()) }
