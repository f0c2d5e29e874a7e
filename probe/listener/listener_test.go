package listener

import (
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/rawsock/wire"
)

var t0 = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// synack is an open result: our ISN, the server's, its TSval and options.
func synack(sport uint16, isn, peer, tsval uint32, at time.Duration, sack bool, ws int) *probe.Result {
	return &probe.Result{State: probe.StateOpen, Reason: probe.ReasonSYNACK, SrcPort: sport, ISN: isn, PeerSeq: peer, Sent: t0.Add(at),
		Options: wire.SYNOptions{MSS: 1460, SACKPermitted: sack, WScale: ws, Timestamps: tsval != 0, TSVal: tsval}}
}

func TestISN(t *testing.T) {
	const gap = 10 * time.Millisecond
	for _, tc := range []struct {
		name string
		a, b *probe.Result
		want Vote
	}{
		{"cookie: moved by exactly our change", synack(40000, 1000, 77000, 0, 0, true, 7), synack(40000, 1000+123456789, 77000+123456789, 0, gap, true, 7), Cookie},
		{"cookie across wrap-around", synack(40000, 0xfffffff0, 5, 0, 0, true, 7), synack(40000, 0x10, 5+0x20, 0, gap, true, 7), Cookie},
		{"stateful: Linux's 64 ns clock", synack(40000, 1000, 77000, 0, 0, true, 7), synack(40000, 999999, 77000+uint32(gap/64), 0, gap, true, 7), Stateful},
		{"neither", synack(40000, 1000, 77000, 0, 0, true, 7), synack(40000, 999999, 77000+0x7000000, 0, gap, true, 7), Undecided},
		{"backwards", synack(40000, 1000, 77000, 0, 0, true, 7), synack(40000, 999999, 76000, 0, gap, true, 7), Undecided},
		{"other ports", synack(40000, 1000, 77000, 0, 0, true, 7), synack(40001, 2000, 78000, 0, gap, true, 7), Undecided},
		{"no answer", synack(40000, 1000, 77000, 0, 0, true, 7), &probe.Result{State: probe.StateFiltered, Reason: probe.ReasonTimeout}, Undecided},
	} {
		if got := isnTest(tc.a, tc.b); got.Vote != tc.want || got.Evidence == "" {
			t.Errorf("%s: %v (%s), want %v", tc.name, got.Vote, got.Evidence, tc.want)
		}
	}
}

func TestTSval(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ta, tb uint32
		apart  time.Duration
		want   Vote
	}{
		// A cookie's TSval moves in steps of 64 and keeps its low bits.
		{"cookie, same value", 0x40015, 0x40015, 10 * time.Millisecond, Cookie},
		{"cookie, next step", 0x40015, 0x40055, 10 * time.Millisecond, Cookie},
		{"stateful", 5000, 5011, 11 * time.Millisecond, Stateful},
		{"stateful across 64", 5050, 5061, 11 * time.Millisecond, Stateful},
		{"too close", 5000, 5000, time.Millisecond, Undecided},
		{"near 64", 5000, 5064, 64 * time.Millisecond, Undecided},
		{"near 128", 5000, 5127, 127 * time.Millisecond, Undecided},
		{"stateful, 100 ms", 5000, 5100, 100 * time.Millisecond, Stateful},
		{"cookie, 100 ms", 0x40015, 0x40055, 100 * time.Millisecond, Cookie},
	} {
		a, b := synack(40000, 1, 2, tc.ta, 0, true, 7), synack(40000, 3, 4, tc.tb, tc.apart, true, 7)
		if got := tsvalTest(a, b); got.Vote != tc.want {
			t.Errorf("%s: %v (%s), want %v", tc.name, got.Vote, got.Evidence, tc.want)
		}
	}
	if got := tsvalTest(synack(40000, 1, 2, 0, 0, true, 7), synack(40000, 3, 4, 0, 10*time.Millisecond, true, 7)); got.Vote != Undecided {
		t.Errorf("no timestamps: %v", got.Vote)
	}
	if got := tsvalTest(synack(40000, 1, 2, 7, 0, true, 7), synack(40001, 3, 4, 7, 10*time.Millisecond, true, 7)); got.Vote != Undecided {
		t.Errorf("two ports: %v", got.Vote)
	}
}

func TestOptions(t *testing.T) {
	full, mssOnly, sackOnly := synack(1, 1, 1, 9, 0, true, 7), synack(1, 1, 1, 0, 0, false, -1), synack(1, 1, 1, 0, 0, true, -1)
	for _, tc := range []struct {
		name             string
		control, withNoT *probe.Result
		want             Vote
	}{
		{"cookie: MSS only", full, mssOnly, Cookie},
		{"stateful: SACK kept", full, sackOnly, Stateful},
		{"stateful: all kept", full, full, Stateful},
		{"server offers none", mssOnly, mssOnly, Undecided},
		{"no answer", full, &probe.Result{State: probe.StateFiltered}, Undecided},
	} {
		if got := optionsTest(tc.control, tc.withNoT); got.Vote != tc.want {
			t.Errorf("%s: %v (%s), want %v", tc.name, got.Vote, got.Evidence, tc.want)
		}
	}
}

func TestDecide(t *testing.T) {
	c, s, u := Test{Vote: Cookie}, Test{Vote: Stateful}, Test{Vote: Undecided}
	yes, no := true, false
	for _, tc := range []struct {
		tests []Test
		want  *bool
	}{
		{[]Test{c, c, u}, &yes},
		{[]Test{s, u, s, s}, &no},
		{[]Test{c, s}, nil},
		{[]Test{u, u}, nil},
		{nil, nil},
	} {
		got := decide(tc.tests)
		if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
			t.Errorf("decide(%v) = %v, want %v", tc.tests, got, tc.want)
		}
	}
}

func TestScheduleFinding(t *testing.T) {
	s := scheduleFinding([]time.Duration{1040 * time.Millisecond, 3030 * time.Millisecond, 7260 * time.Millisecond}, 8500*time.Millisecond)
	if s != "the SYN-ACK came again 3 times within 8.5s: initial RTO about 1.0 s, doubling as Linux does" {
		t.Errorf("%q", s)
	}
	if s := scheduleFinding([]time.Duration{time.Second}, 2*time.Second); s != "the SYN-ACK came again once within 2s: initial RTO about 1.0 s" {
		t.Errorf("%q", s)
	}
	s = scheduleFinding([]time.Duration{time.Second, 2 * time.Second}, 3*time.Second)
	if s != "the SYN-ACK came again 2 times within 3s: initial RTO about 1.0 s" {
		t.Errorf("%q", s)
	}
}
