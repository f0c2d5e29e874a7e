//go:build linux

package rawsock

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// rtaNHID is RTA_NH_ID (linux/rtnetlink.h), which x/sys lacks.
const rtaNHID = 30

// withAttrs appends raw attributes to an encoded message: ones
// rtnetlink's encoder does not know (RTA_NH_ID, RTA_ENCAP, FRA_DSCP...).
func withAttrs(t *testing.T, b []byte, attrs ...uint16) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	for _, a := range attrs {
		ae.Uint32(a, 7)
	}
	extra, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append(b, extra...)
}

func marshal(t *testing.T, m interface{ MarshalBinary() ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDecodeRoute reads routes that rtnetlink's encoder wrote, the
// witness of what the kernel's dump holds.
func TestDecodeRoute(t *testing.T) {
	gw := net.ParseIP("198.18.0.1").To4()
	main := func() *rtnetlink.RouteMessage {
		return &rtnetlink.RouteMessage{Family: unix.AF_INET, DstLength: 15, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST,
			Attributes: rtnetlink.RouteAttributes{Dst: net.ParseIP("198.18.0.0").To4(), Gateway: gw, OutIface: 3, Priority: 100, Table: unix.RT_TABLE_MAIN}}
	}
	for _, tc := range []struct {
		name   string
		b      []byte
		v6     bool
		ok     bool
		want   route
		errHas string
	}{
		{name: "main", b: marshal(t, main()), ok: true,
			want: route{dst: netip.MustParsePrefix("198.18.0.0/15"), table: rtTableMain, typ: unix.RTN_UNICAST, oif: 3, gw: netip.MustParseAddr("198.18.0.1"), simple: true}},
		{name: "default route", ok: true, b: marshal(t, &rtnetlink.RouteMessage{Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST,
			Attributes: rtnetlink.RouteAttributes{Gateway: gw, OutIface: 2}}),
			want: route{dst: netip.MustParsePrefix("0.0.0.0/0"), table: rtTableMain, typ: unix.RTN_UNICAST, oif: 2, gw: netip.MustParseAddr("198.18.0.1"), simple: true}},
		{name: "IPv6 on the link", v6: true, ok: true, b: marshal(t, &rtnetlink.RouteMessage{Family: unix.AF_INET6, DstLength: 64, Table: unix.RT_TABLE_MAIN, Type: unix.RTN_UNICAST,
			Attributes: rtnetlink.RouteAttributes{Dst: net.ParseIP("2001:db8::"), OutIface: 4}}),
			want: route{dst: netip.MustParsePrefix("2001:db8::/64"), table: rtTableMain, typ: unix.RTN_UNICAST, oif: 4, simple: true}},
		{name: "table in the attribute", ok: true, b: func() []byte {
			m := main()
			m.Table, m.Attributes.Table = unix.RT_TABLE_COMPAT, unix.RT_TABLE_LOCAL
			return marshal(t, m)
		}(), want: route{dst: netip.MustParsePrefix("198.18.0.0/15"), table: rtTableLocal, typ: unix.RTN_UNICAST, oif: 3, gw: netip.MustParseAddr("198.18.0.1"), simple: true}},
		{name: "nexthop object", ok: true, b: withAttrs(t, marshal(t, main()), rtaNHID),
			want: route{dst: netip.MustParsePrefix("198.18.0.0/15"), table: rtTableMain, typ: unix.RTN_UNICAST, oif: 3, gw: netip.MustParseAddr("198.18.0.1")}},
		{name: "source selector", ok: true, b: func() []byte {
			m := main()
			m.SrcLength = 24
			return marshal(t, m)
		}(), want: route{dst: netip.MustParsePrefix("198.18.0.0/15"), table: rtTableMain, typ: unix.RTN_UNICAST, oif: 3, gw: netip.MustParseAddr("198.18.0.1")}},
		{name: "multipath", ok: true, b: func() []byte {
			m := main()
			m.Attributes.Gateway = nil
			m.Attributes.Multipath = []rtnetlink.NextHop{{Hop: rtnetlink.RTNextHop{IfIndex: 3}, Gateway: gw}, {Hop: rtnetlink.RTNextHop{IfIndex: 4}, Gateway: net.ParseIP("198.18.0.9").To4()}}
			return marshal(t, m)
		}(), want: route{dst: netip.MustParsePrefix("198.18.0.0/15"), table: rtTableMain, typ: unix.RTN_UNICAST, oif: 3}},
		{name: "cached clone", b: func() []byte {
			m := main()
			m.Flags = unix.RTM_F_CLONED
			return marshal(t, m)
		}()},
		{name: "other table", b: func() []byte {
			m := main()
			m.Table, m.Attributes.Table = 100, 100
			return marshal(t, m)
		}()},
		{name: "short", b: make([]byte, unix.SizeofRtMsg-1), errHas: "routes"},
		{name: "truncated attribute", b: marshal(t, main())[:unix.SizeofRtMsg+6], errHas: "routes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, ok, err := decodeRoute(tc.b, tc.v6)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err %v, want one saying %q", err, tc.errHas)
				}
				return
			}
			if err != nil || ok != tc.ok {
				t.Fatalf("ok %v, err %v; want ok %v", ok, err, tc.ok)
			}
			if ok && r != tc.want {
				t.Fatalf("got %+v\nwant %+v", r, tc.want)
			}
		})
	}
}

func TestDecodeRule(t *testing.T) {
	u32 := func(v uint32) *uint32 { return &v }
	u8 := func(v uint8) *uint8 { return &v }
	rule := func(prio, table uint32) *rtnetlink.RuleMessage {
		return &rtnetlink.RuleMessage{Family: unix.AF_INET, Table: uint8(min(table, 252)), Action: frActToTbl,
			Attributes: &rtnetlink.RuleAttributes{Priority: u32(prio), Table: u32(table), Protocol: u8(unix.RTPROT_KERNEL)}}
	}
	mark := rule(100, 254)
	mark.Attributes.FwMark = u32(1)
	suppress := rule(32765, 254)
	suppress.Attributes.SuppressPrefixLen = u32(0)
	unsuppressed := rule(32766, 254)
	unsuppressed.Attributes.SuppressPrefixLen = u32(^uint32(0))
	from := rule(100, 254)
	from.SrcLength = 24
	blackhole := rule(100, 254)
	blackhole.Action = unix.FR_ACT_BLACKHOLE
	for _, tc := range []struct {
		name        string
		b           []byte
		prio, table uint32
		errHas      string
	}{
		{name: "local", b: marshal(t, rule(0, 255)), prio: 0, table: 255},
		{name: "main", b: marshal(t, rule(32766, 254)), prio: 32766, table: 254},
		{name: "suppress none", b: marshal(t, unsuppressed), prio: 32766, table: 254},
		{name: "no attributes", b: marshal(t, &rtnetlink.RuleMessage{Family: unix.AF_INET, Table: 253, Action: frActToTbl}), table: 253},
		{name: "fwmark", b: marshal(t, mark), errHas: "selector (attribute 10)"},
		{name: "unknown to rtnetlink", b: withAttrs(t, marshal(t, rule(100, 254)), 23), errHas: "selector (attribute 23)"},
		{name: "suppress prefix", b: marshal(t, suppress), errHas: "suppresses prefix lengths"},
		{name: "from", b: marshal(t, from), errHas: "selectors are set"},
		{name: "blackhole", b: marshal(t, blackhole), errHas: "selectors are set"},
		{name: "short", b: make([]byte, 11), errHas: "routing rules"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prio, table, err := decodeRule(tc.b)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err %v, want one saying %q", err, tc.errHas)
				}
				return
			}
			if err != nil || prio != tc.prio || table != tc.table {
				t.Fatalf("got %d, %d, %v; want %d, %d", prio, table, err, tc.prio, tc.table)
			}
		})
	}
}
