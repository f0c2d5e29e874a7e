package wire

import "strconv"

// ICMPReason returns a stable name for an ICMP (v6 false) or ICMPv6 (v6
// true) error. Where nftables' icmpx reject codes map an IPv4 and an IPv6
// code to the same reason, both get the same name: "icmp-net-unreachable"
// (ICMPv6 no route), "icmp-host-unreachable" (address unreachable),
// "icmp-port-unreachable" and "icmp-admin-prohibited". Time exceeded is
// "icmp-ttl-exceeded" in both families.
//
// Other messages get "icmp-type-T-code-C" (IPv4) or "icmp6-type-T-code-C"
// (IPv6). Known names do not allocate.
func ICMPReason(v6 bool, typ, code uint8) string {
	if v6 {
		if s := icmp6Reason(typ, code); s != "" {
			return s
		}
		return "icmp6-type-" + strconv.Itoa(int(typ)) + "-code-" + strconv.Itoa(int(code))
	}
	if s := icmp4Reason(typ, code); s != "" {
		return s
	}
	return "icmp-type-" + strconv.Itoa(int(typ)) + "-code-" + strconv.Itoa(int(code))
}

var icmp4Unreachable = [...]string{
	0:  "icmp-net-unreachable",
	1:  "icmp-host-unreachable",
	2:  "icmp-protocol-unreachable",
	3:  "icmp-port-unreachable",
	4:  "icmp-frag-needed",
	5:  "icmp-source-route-failed",
	6:  "icmp-net-unknown",
	7:  "icmp-host-unknown",
	8:  "icmp-host-isolated",
	9:  "icmp-net-prohibited",
	10: "icmp-host-prohibited",
	11: "icmp-net-tos-unreachable",
	12: "icmp-host-tos-unreachable",
	13: "icmp-admin-prohibited",
	14: "icmp-host-precedence-violation",
	15: "icmp-precedence-cutoff",
}

func icmp4Reason(typ, code uint8) string {
	switch typ {
	case ICMPv4DestinationUnreachable:
		if int(code) < len(icmp4Unreachable) {
			return icmp4Unreachable[code]
		}
	case ICMPv4TimeExceeded:
		switch code {
		case 0:
			return "icmp-ttl-exceeded"
		case 1:
			return "icmp-reassembly-time-exceeded"
		}
	case ICMPv4ParameterProblem:
		return "icmp-parameter-problem"
	}
	return ""
}

var icmp6Unreachable = [...]string{
	0: "icmp-net-unreachable", // no route to destination
	1: "icmp-admin-prohibited",
	2: "icmp-beyond-scope",
	3: "icmp-host-unreachable", // address unreachable
	4: "icmp-port-unreachable",
	5: "icmp-source-policy-failed",
	6: "icmp-reject-route",
}

func icmp6Reason(typ, code uint8) string {
	switch typ {
	case ICMPv6DestinationUnreachable:
		if int(code) < len(icmp6Unreachable) {
			return icmp6Unreachable[code]
		}
	case ICMPv6PacketTooBig:
		return "icmp-packet-too-big"
	case ICMPv6TimeExceeded:
		switch code {
		case 0:
			return "icmp-ttl-exceeded"
		case 1:
			return "icmp-reassembly-time-exceeded"
		}
	case ICMPv6ParameterProblem:
		return "icmp-parameter-problem"
	}
	return ""
}
