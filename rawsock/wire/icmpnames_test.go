package wire_test

import (
	"testing"

	"github.com/synprobe/synprobe/rawsock/wire"
)

func TestICMPReason(t *testing.T) {
	for _, tc := range []struct {
		v6        bool
		typ, code uint8
		want      string
	}{
		// Same names in both families where nftables' icmpx maps them.
		{false, 3, 0, "icmp-net-unreachable"},
		{true, 1, 0, "icmp-net-unreachable"},
		{false, 3, 1, "icmp-host-unreachable"},
		{true, 1, 3, "icmp-host-unreachable"},
		{false, 3, 3, "icmp-port-unreachable"},
		{true, 1, 4, "icmp-port-unreachable"},
		{false, 3, 13, "icmp-admin-prohibited"},
		{true, 1, 1, "icmp-admin-prohibited"},
		// IPv4 destination unreachable.
		{false, 3, 2, "icmp-protocol-unreachable"},
		{false, 3, 4, "icmp-frag-needed"},
		{false, 3, 5, "icmp-source-route-failed"},
		{false, 3, 6, "icmp-net-unknown"},
		{false, 3, 7, "icmp-host-unknown"},
		{false, 3, 8, "icmp-host-isolated"},
		{false, 3, 9, "icmp-net-prohibited"},
		{false, 3, 10, "icmp-host-prohibited"},
		{false, 3, 11, "icmp-net-tos-unreachable"},
		{false, 3, 12, "icmp-host-tos-unreachable"},
		{false, 3, 14, "icmp-host-precedence-violation"},
		{false, 3, 15, "icmp-precedence-cutoff"},
		{false, 3, 16, "icmp-type-3-code-16"},
		// Time exceeded, parameter problem.
		{false, 11, 0, "icmp-ttl-exceeded"},
		{true, 3, 0, "icmp-ttl-exceeded"},
		{false, 11, 1, "icmp-reassembly-time-exceeded"},
		{true, 3, 1, "icmp-reassembly-time-exceeded"},
		{false, 11, 2, "icmp-type-11-code-2"},
		{true, 3, 2, "icmp6-type-3-code-2"},
		{false, 12, 0, "icmp-parameter-problem"},
		{false, 12, 2, "icmp-parameter-problem"},
		{true, 4, 0, "icmp-parameter-problem"},
		{true, 4, 3, "icmp-parameter-problem"},
		// IPv6 only.
		{true, 1, 2, "icmp-beyond-scope"},
		{true, 1, 5, "icmp-source-policy-failed"},
		{true, 1, 6, "icmp-reject-route"},
		{true, 1, 7, "icmp6-type-1-code-7"},
		{true, 2, 0, "icmp-packet-too-big"},
		{true, 2, 9, "icmp-packet-too-big"},
		// Anything else.
		{false, 0, 0, "icmp-type-0-code-0"},
		{false, 8, 0, "icmp-type-8-code-0"},
		{false, 255, 255, "icmp-type-255-code-255"},
		{false, 1, 0, "icmp-type-1-code-0"},
		{true, 128, 0, "icmp6-type-128-code-0"},
		{true, 0, 0, "icmp6-type-0-code-0"},
		{true, 11, 0, "icmp6-type-11-code-0"},
	} {
		if got := wire.ICMPReason(tc.v6, tc.typ, tc.code); got != tc.want {
			t.Errorf("ICMPReason(%v, %d, %d) = %q, want %q", tc.v6, tc.typ, tc.code, got, tc.want)
		}
	}
}

func TestICMPReasonAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() {
		for code := range uint8(16) {
			_ = wire.ICMPReason(false, 3, code)
		}
		for code := range uint8(7) {
			_ = wire.ICMPReason(true, 1, code)
		}
		_ = wire.ICMPReason(false, 11, 0)
		_ = wire.ICMPReason(true, 2, 0)
		_ = wire.ICMPReason(true, 4, 2)
	}); n != 0 {
		t.Errorf("allocs = %v, want 0", n)
	}
}
