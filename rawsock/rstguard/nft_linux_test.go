//go:build linux

package rstguard

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/internal/nl"
	"github.com/synprobe/synprobe/rawsock/wire"
)

const (
	testMark           = 0x5350b0b0
	skipNeedsNetAdmin  = "needs CAP_NET_ADMIN: run as root (sudo go test ./rawsock/rstguard)"
	guardHelperEnv     = "SYNPROBE_GUARD_HELPER"
	guardTestPortLo    = 61000
	guardTestPortHi    = 61009
	ourRSTWindow       = 4242 // tells our own RSTs from the kernel's (window 0) in captures
	handshakeTimeout   = 5 * time.Second
	tableGoneTimeout   = 2 * time.Second
	helperReadyTimeout = 20 * time.Second
)

func littleEndian() bool { return binary.NativeEndian.Uint16([]byte{1, 0}) == 1 }

// marshalBatch frames msgs as the socket sends them, numbered from seq
// (the socket fills in its port id, which the kernel ignores; 0 here).
func marshalBatch(t *testing.T, seq uint32, msgs []netlink.Message) []byte {
	t.Helper()
	var b []byte
	for i, m := range msgs {
		m.Header.Sequence = seq + uint32(i)
		m.Header.Length = uint32(16+len(m.Data)+3) &^ 3
		mb, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, mb...)
	}
	return b
}

// TestEncodeBatchTable checks a whole batch holding one NEWTABLE message
// against bytes worked out by hand from netlink(7), linux/netfilter/
// nfnetlink.h and nf_tables.h.
func TestEncodeBatchTable(t *testing.T) {
	if !littleEndian() {
		t.Skip("the expected bytes are for a little-endian host")
	}
	msgs, err := batchMessages(unix.NFPROTO_INET, []nftMsg{newTableMsg("sp", nftTableFlagOwner, "")})
	if err != nil {
		t.Fatal(err)
	}
	got := marshalBatch(t, 7, msgs)
	want := []byte{
		// NFNL_MSG_BATCH_BEGIN: nlmsghdr len 20, type 0x10, flags REQUEST, seq 7, pid 0
		0x14, 0, 0, 0, 0x10, 0x00, 0x01, 0x00, 7, 0, 0, 0, 0, 0, 0, 0,
		// nfgenmsg: AF_UNSPEC, NFNETLINK_V0, res_id NFNL_SUBSYS_NFTABLES (big-endian)
		0, 0, 0x00, 0x0a,

		// NFT_MSG_NEWTABLE: len 36, type 0x0a00 (subsys 10 << 8 | 0),
		// flags REQUEST|ACK|EXCL|CREATE = 0x605, seq 8, pid 0
		0x24, 0, 0, 0, 0x00, 0x0a, 0x05, 0x06, 8, 0, 0, 0, 0, 0, 0, 0,
		// nfgenmsg: NFPROTO_INET, NFNETLINK_V0, res_id 0
		1, 0, 0, 0,
		// NFTA_TABLE_NAME "sp\0": nla_len 7, type 1, value, one byte of padding
		0x07, 0x00, 0x01, 0x00, 's', 'p', 0, 0,
		// NFTA_TABLE_FLAGS: nla_len 8, type 2, be32 NFT_TABLE_F_OWNER
		0x08, 0x00, 0x02, 0x00, 0, 0, 0, 2,

		// NFNL_MSG_BATCH_END: len 20, type 0x11, flags REQUEST, seq 9
		0x14, 0, 0, 0, 0x11, 0x00, 0x01, 0x00, 9, 0, 0, 0, 0, 0, 0, 0,
		0, 0, 0x00, 0x0a,
	}
	if !bytes.Equal(got, want) {
		t.Errorf("batch:\n got % x\nwant % x", got, want)
	}
}

// attr is a netlink attribute as a test expects it: a leaf with its
// value, or a nest (NLA_F_NESTED) with its members.
type attr struct {
	typ  uint16
	val  []byte
	kids []attr // non-nil for a nest
}

func (a attr) String() string {
	if a.kids == nil {
		return fmt.Sprintf("%d=% x", a.typ, a.val)
	}
	return fmt.Sprintf("%d%v", a.typ, a.kids)
}

// decodeAttrs decodes b with mdlayher/netlink's AttributeDecoder, not with
// anything of the encoder's: an attribute flagged as nested is decoded as
// a nest, any other is a leaf.
func decodeAttrs(b []byte) ([]attr, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, err
	}
	out := []attr{}
	for ad.Next() {
		a := attr{typ: ad.Type(), val: ad.Bytes()}
		if ad.TypeFlags()&netlink.Nested != 0 {
			if a.kids, err = decodeAttrs(a.val); err != nil {
				return nil, err
			}
			a.val = nil
		}
		out = append(out, a)
	}
	return out, ad.Err()
}

// Expected attributes, built from the kernel's ABI (nf_tables.h), not
// from the encoder: leaves, big-endian integers, strings, nests, one
// element of a rule's expression list and an nft_data value.
func leaf(typ uint16, v ...byte) attr { return attr{typ: typ, val: v} }
func be16(typ uint16, v uint16) attr  { return leaf(typ, byte(v>>8), byte(v)) }
func be32(typ uint16, v uint32) attr  { return leaf(typ, binary.BigEndian.AppendUint32(nil, v)...) }
func be64(typ uint16, v uint64) attr  { return leaf(typ, binary.BigEndian.AppendUint64(nil, v)...) }
func str(typ uint16, s string) attr   { return leaf(typ, append([]byte(s), 0)...) }
func nest(typ uint16, kids ...attr) attr {
	return attr{typ: typ, kids: append([]attr{}, kids...)}
}
func expr(name string, kids ...attr) attr {
	return nest(unix.NFTA_LIST_ELEM, str(unix.NFTA_EXPR_NAME, name), nest(unix.NFTA_EXPR_DATA, kids...))
}
func data(typ uint16, v ...byte) attr { return nest(typ, leaf(unix.NFTA_DATA_VALUE, v...)) }

// wantRule is the rule the guard should write for ports lo-hi, in
// register 1 (NFT_REG_1 = 1): meta l4proto tcp, tcp flags & rst == rst,
// tcp sport lo-hi, meta mark != mark, log group G queue-threshold 1 (if
// G is not 0), counter, drop.
func wantRule(table string, lo, hi uint16, mark uint32, group uint16) []attr {
	port := expr("cmp", be32(unix.NFTA_CMP_SREG, 1), be32(unix.NFTA_CMP_OP, 0 /* eq */), data(unix.NFTA_CMP_DATA, byte(lo>>8), byte(lo)))
	if lo != hi {
		port = expr("range", be32(unix.NFTA_RANGE_SREG, 1), be32(unix.NFTA_RANGE_OP, 0 /* eq */),
			data(unix.NFTA_RANGE_FROM_DATA, byte(lo>>8), byte(lo)), data(unix.NFTA_RANGE_TO_DATA, byte(hi>>8), byte(hi)))
	}
	exprs := []attr{
		expr("meta", be32(unix.NFTA_META_DREG, 1), be32(unix.NFTA_META_KEY, 16 /* NFT_META_L4PROTO */)),
		expr("cmp", be32(unix.NFTA_CMP_SREG, 1), be32(unix.NFTA_CMP_OP, 0), data(unix.NFTA_CMP_DATA, 6 /* TCP */)),
		expr("payload", be32(unix.NFTA_PAYLOAD_DREG, 1), be32(unix.NFTA_PAYLOAD_BASE, 2 /* transport header */),
			be32(unix.NFTA_PAYLOAD_OFFSET, 13), be32(unix.NFTA_PAYLOAD_LEN, 1)),
		expr("bitwise", be32(unix.NFTA_BITWISE_SREG, 1), be32(unix.NFTA_BITWISE_DREG, 1), be32(unix.NFTA_BITWISE_LEN, 1),
			data(unix.NFTA_BITWISE_MASK, 0x04), data(unix.NFTA_BITWISE_XOR, 0)),
		expr("cmp", be32(unix.NFTA_CMP_SREG, 1), be32(unix.NFTA_CMP_OP, 0), data(unix.NFTA_CMP_DATA, 0x04)),
		expr("payload", be32(unix.NFTA_PAYLOAD_DREG, 1), be32(unix.NFTA_PAYLOAD_BASE, 2), be32(unix.NFTA_PAYLOAD_OFFSET, 0), be32(unix.NFTA_PAYLOAD_LEN, 2)),
		port,
		expr("meta", be32(unix.NFTA_META_DREG, 1), be32(unix.NFTA_META_KEY, 3 /* NFT_META_MARK */)),
		// The mark register holds the mark in host byte order.
		expr("cmp", be32(unix.NFTA_CMP_SREG, 1), be32(unix.NFTA_CMP_OP, 1 /* neq */), data(unix.NFTA_CMP_DATA, binary.NativeEndian.AppendUint32(nil, mark)...)),
	}
	if group != 0 {
		exprs = append(exprs, expr("log", be16(unix.NFTA_LOG_GROUP, group), be16(unix.NFTA_LOG_QTHRESHOLD, 1)))
	}
	exprs = append(exprs,
		expr("counter", be64(unix.NFTA_COUNTER_BYTES, 0), be64(unix.NFTA_COUNTER_PACKETS, 0)),
		// Register 0 is the verdict register; NF_DROP is 0.
		expr("immediate", be32(unix.NFTA_IMMEDIATE_DREG, 0), nest(unix.NFTA_IMMEDIATE_DATA, nest(unix.NFTA_DATA_VERDICT, be32(unix.NFTA_VERDICT_CODE, 0)))),
	)
	return []attr{str(unix.NFTA_RULE_TABLE, table), str(unix.NFTA_RULE_CHAIN, "out"), nest(unix.NFTA_RULE_EXPRESSIONS, exprs...)}
}

// TestGuardRuleEncoding decodes the guard's batch with the library's
// decoder and compares every message, attribute and value with what the
// kernel's ABI says they should be. (TestIntegrationGuardRuleAsNftSees
// checks the same rules as the kernel took them, through nft.)
func TestGuardRuleEncoding(t *testing.T) {
	const table = "synprobe_1_00000000"
	for _, tt := range []struct {
		ranges []rawsock.PortRange
		group  uint16
	}{
		{[]rawsock.PortRange{{Lo: 61000, Hi: 61009}}, 0},
		{[]rawsock.PortRange{{Lo: 61000, Hi: 61009}, {Lo: 61011, Hi: 61011}, {Lo: 62000, Hi: 62100}}, 0x1234},
	} {
		cfg := Config{Ranges: tt.ranges, Mark: testMark}
		msgs, err := batchMessages(unix.NFPROTO_INET, guardMessages(table, cfg, true, tt.group))
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 4+len(tt.ranges) {
			t.Fatalf("%d messages, want batch begin, table, chain, %d rules, batch end", len(msgs), len(tt.ranges))
		}
		comment := fmt.Sprintf("synprobe pid %d: drops the kernel's TCP RSTs from ports %s", os.Getpid(), rawsock.FormatRanges(tt.ranges))
		type want struct {
			typ   uint16
			flags netlink.HeaderFlags
			attrs []attr
		}
		const request, ack, excl, create, appnd = 0x1, 0x4, 0x200, 0x400, 0x800 // NLM_F_*
		wants := []want{
			{0x10 /* NFNL_MSG_BATCH_BEGIN */, request, []attr{}},
			{0x0a00 /* NFT_MSG_NEWTABLE */, request | ack | excl | create, []attr{
				str(unix.NFTA_TABLE_NAME, table),
				be32(unix.NFTA_TABLE_FLAGS, 2 /* NFT_TABLE_F_OWNER */),
				// NFTA_TABLE_USERDATA: libnftnl's comment TLV (type 0, length, text with its NUL).
				leaf(6, append(append([]byte{0, byte(len(comment) + 1)}, comment...), 0)...),
			}},
			{0x0a03 /* NFT_MSG_NEWCHAIN */, request | ack | excl | create, []attr{
				str(unix.NFTA_CHAIN_TABLE, table),
				str(unix.NFTA_CHAIN_NAME, "out"),
				nest(unix.NFTA_CHAIN_HOOK, be32(unix.NFTA_HOOK_HOOKNUM, 3 /* NF_INET_LOCAL_OUT */), be32(unix.NFTA_HOOK_PRIORITY, 0xfffffe3e /* -450 */)),
				be32(unix.NFTA_CHAIN_POLICY, 1 /* NF_ACCEPT */),
				str(unix.NFTA_CHAIN_TYPE, "filter"),
			}},
		}
		for _, r := range tt.ranges {
			wants = append(wants, want{0x0a06 /* NFT_MSG_NEWRULE */, request | ack | create | appnd, wantRule(table, r.Lo, r.Hi, testMark, tt.group)})
		}
		wants = append(wants, want{0x11 /* NFNL_MSG_BATCH_END */, request, []attr{}})
		for i, m := range msgs {
			w := wants[i]
			if uint16(m.Header.Type) != w.typ || m.Header.Flags != w.flags {
				t.Errorf("message %d: type %#x flags %#x, want %#x %#x", i, m.Header.Type, m.Header.Flags, w.typ, w.flags)
			}
			// nfgenmsg: family (AF_UNSPEC for the batch's frame, else
			// inet), version 0, res_id (the nftables subsystem, 10, for
			// the frame), big-endian.
			hdr := []byte{unix.NFPROTO_INET, 0, 0, 0}
			if i == 0 || i == len(msgs)-1 {
				hdr = []byte{0, 0, 0, 10}
			}
			if len(m.Data) < 4 || !bytes.Equal(m.Data[:4], hdr) {
				t.Errorf("message %d: nfgenmsg % x, want % x", i, m.Data[:min(4, len(m.Data))], hdr)
				continue
			}
			got, err := decodeAttrs(m.Data[4:])
			if err != nil {
				t.Errorf("message %d: %v", i, err)
				continue
			}
			if !reflect.DeepEqual(got, w.attrs) {
				t.Errorf("message %d:\n got %v\nwant %v", i, got, w.attrs)
			}
		}
	}
}

// TestRuleCounter reads the packet count from a rule as the kernel dumps
// it (encoded here with the library's encoder), and only from our table's.
func TestRuleCounter(t *testing.T) {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.String(unix.NFTA_RULE_TABLE, "synprobe_1_00000000")
	ae.String(unix.NFTA_RULE_CHAIN, guardChain)
	ae.Nested(unix.NFTA_RULE_EXPRESSIONS, func(ae *netlink.AttributeEncoder) error {
		for _, e := range []struct {
			name string
			data func(ae *netlink.AttributeEncoder) error
		}{
			{"meta", func(ae *netlink.AttributeEncoder) error {
				ae.Uint32(unix.NFTA_META_KEY, unix.NFT_META_MARK)
				return nil
			}},
			{"counter", func(ae *netlink.AttributeEncoder) error {
				ae.Uint64(unix.NFTA_COUNTER_BYTES, 120)
				ae.Uint64(unix.NFTA_COUNTER_PACKETS, 3)
				return nil
			}},
		} {
			ae.Nested(unix.NFTA_LIST_ELEM, func(ae *netlink.AttributeEncoder) error {
				ae.String(unix.NFTA_EXPR_NAME, e.name)
				ae.Nested(unix.NFTA_EXPR_DATA, e.data)
				return nil
			})
		}
		return nil
	})
	ae.Uint64(unix.NFTA_RULE_HANDLE, 2)
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m := netlink.Message{Data: append([]byte{unix.NFPROTO_INET, 0, 0, 0}, b...)}
	if n, ok, err := ruleCounter(m, "synprobe_1_00000000"); n != 3 || !ok || err != nil {
		t.Errorf("ruleCounter = %d, %v, %v; want 3", n, ok, err)
	}
	if _, ok, _ := ruleCounter(m, "other"); ok {
		t.Error("ruleCounter matched another table's rule")
	}
	// A truncated message is an error, not a count.
	m.Data = m.Data[:len(m.Data)-3]
	if _, ok, err := ruleCounter(m, "synprobe_1_00000000"); ok || err == nil {
		t.Errorf("truncated rule: ok %v, err %v", ok, err)
	}
}

func TestNewRSTGuardConfig(t *testing.T) {
	for _, cfg := range []Config{
		{PortLo: 0, PortHi: 10, Mark: 1},
		{PortLo: 10, PortHi: 9, Mark: 1},
		{PortLo: 10, PortHi: 10, Mark: 0},
	} {
		if g, err := New(cfg); err == nil {
			g.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

// hasCapability reports whether the effective set holds capability c.
func hasCapability(c int) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return os.Geteuid() == 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<c) != 0
		}
	}
	return false
}

// TestRSTGuardWithoutPrivileges: without CAP_NET_ADMIN the errors say so,
// the way callers test for it. Nothing is changed, so it runs in the
// test's own namespace.
func TestRSTGuardWithoutPrivileges(t *testing.T) {
	if hasCapability(unix.CAP_NET_ADMIN) {
		t.Skip("has CAP_NET_ADMIN; run without it to test the error (capsh --drop=cap_net_admin -- -c 'go test ./rawsock')")
	}
	g, err := New(Config{PortLo: guardTestPortLo, PortHi: guardTestPortHi, Mark: testMark})
	if err == nil {
		g.Close()
		t.Fatal("New succeeded without CAP_NET_ADMIN")
	}
	if !errors.Is(err, os.ErrPermission) {
		t.Errorf("New: %v; want an error wrapping os.ErrPermission", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Net != "rawsock" {
		t.Errorf("New: %#v; want a *net.OpError", err)
	}
	t.Logf("New: %v", err)
	if _, err := CleanupTables(); !errors.Is(err, os.ErrPermission) {
		t.Errorf("CleanupTables: %v; want an error wrapping os.ErrPermission", err)
	}
}

func needNft(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not found: install nftables")
	}
}

// newGuardIn creates a guard inside namespace ns, closed at cleanup.
func newGuardIn(t *testing.T, lab *netlab.Lab, ns string, cfg Config) *Guard {
	t.Helper()
	var g *Guard
	err := lab.InNS(ns, func() (err error) {
		g, err = New(cfg)
		return err
	})
	if errors.Is(err, os.ErrPermission) {
		t.Skip(skipNeedsNetAdmin)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// tables lists the names of the inet tables in namespace ns.
func tables(t *testing.T, lab *netlab.Lab, ns string) []string {
	t.Helper()
	var names []string
	for line := range strings.Lines(lab.Run(t, ns, "nft", "list", "tables", "inet")) {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "table" {
			names = append(names, f[2])
		}
	}
	return names
}

// waitTableGone polls, bounded, until table has left namespace ns.
func waitTableGone(t *testing.T, lab *netlab.Lab, ns, table string) {
	t.Helper()
	deadline := time.Now().Add(tableGoneTimeout)
	for slices.Contains(tables(t, lab, ns), table) {
		if time.Now().After(deadline) {
			t.Fatalf("table %s still in %s after %v:\n%s", table, ns, tableGoneTimeout, lab.Run(t, ns, "nft", "list", "ruleset"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestIntegrationRSTGuardOwner(t *testing.T) {
	lab := netlab.New(t)
	needNft(t)
	g := newGuardIn(t, lab, lab.Prober, Config{PortLo: guardTestPortLo, PortHi: guardTestPortHi, Mark: testMark})
	if !g.Owned() {
		t.Fatal("the table has no owner flag on a kernel that should support it")
	}
	if !strings.HasPrefix(g.Table(), fmt.Sprintf("%s%d_", TablePrefix, os.Getpid())) {
		t.Errorf("table name %q", g.Table())
	}
	out := lab.Run(t, lab.Prober, "nft", "list", "ruleset")
	t.Logf("nft list ruleset:\n%s", out)
	for _, want := range []string{
		"table inet " + g.Table() + " {",
		"flags owner",
		"chain out {",
		"type filter hook output priority -450; policy accept;",
		"tcp sport 61000-61009",
		fmt.Sprintf("meta mark != 0x%08x", testMark),
		"counter packets 0 bytes 0 drop",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q", want)
		}
	}
	if n, err := g.Dropped(); n != 0 || err != nil {
		t.Errorf("Dropped = %d, %v before any traffic", n, err)
	}

	// Another socket may not delete an owned table.
	var err error
	if lerr := lab.InNS(lab.Prober, func() error {
		c, err2 := nl.DialNetfilter()
		if err2 != nil {
			return err2
		}
		defer c.Close()
		err = batch(c, unix.NFPROTO_INET, delTableMsg(g.Table()))
		return nil
	}); lerr != nil {
		t.Fatal(lerr)
	}
	if !errors.Is(err, os.ErrPermission) {
		t.Errorf("deleting the owned table from another socket: %v, want EPERM", err)
	} else {
		t.Logf("deleting from another socket: %v", err)
	}

	// Nor does nft flush ruleset.
	lab.Run(t, lab.Prober, "nft", "flush", "ruleset")
	if out := lab.Run(t, lab.Prober, "nft", "list", "ruleset"); !strings.Contains(out, "tcp sport 61000-61009") {
		t.Errorf("nft flush ruleset changed the owned table:\n%s", out)
	}

	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(tables(t, lab, lab.Prober), g.Table()) {
		t.Errorf("table %s still there after Close", g.Table())
	}
	if err := g.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := g.Dropped(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Dropped after Close: %v", err)
	}
}

// TestIntegrationGuardRuleAsNftSees checks the guard's rules as the kernel
// took them, against witnesses that share nothing with the encoder: the
// expressions nft --debug=netlink prints from the kernel's dump (libnftnl
// decodes it), and nft's JSON of a reference table that nft itself
// compiled from the rules' text.
func TestIntegrationGuardRuleAsNftSees(t *testing.T) {
	for _, noLog := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoLog=%v", noLog), func(t *testing.T) { testGuardRuleAsNftSees(t, noLog) })
	}
}

func testGuardRuleAsNftSees(t *testing.T, noLog bool) {
	lab := netlab.New(t)
	needNft(t)
	ranges := []rawsock.PortRange{{Lo: 61000, Hi: 61009}, {Lo: 61011, Hi: 61011}}
	g := newGuardIn(t, lab, lab.Prober, Config{Ranges: ranges, Mark: testMark, NoLog: noLog})
	var group uint16
	if g.log != nil {
		group = g.log.group
	}
	if noLog && g.log != nil {
		t.Fatal("NoLog: the guard has a drop log")
	}

	// libnftnl prints an nft_data value as 32-bit words read in host
	// byte order from the bytes, zero-padded.
	word := func(b ...byte) string {
		var w [4]byte
		copy(w[:], b)
		return fmt.Sprintf("0x%08x", binary.NativeEndian.Uint32(w[:]))
	}
	var want []string
	for _, r := range ranges {
		port := fmt.Sprintf("[ range eq reg 1 %s %s ]", word(byte(r.Lo>>8), byte(r.Lo)), word(byte(r.Hi>>8), byte(r.Hi)))
		if r.Lo == r.Hi {
			port = fmt.Sprintf("[ cmp eq reg 1 %s ]", word(byte(r.Lo>>8), byte(r.Lo)))
		}
		want = append(want,
			"[ meta load l4proto => reg 1 ]",
			"[ cmp eq reg 1 0x00000006 ]",
			"[ payload load 1b @ transport header + 13 => reg 1 ]",
			"[ bitwise reg 1 = ( reg 1 & 0x00000004 ) ^ 0x00000000 ]",
			"[ cmp eq reg 1 0x00000004 ]",
			"[ payload load 2b @ transport header + 0 => reg 1 ]",
			port,
			"[ meta load mark => reg 1 ]",
			fmt.Sprintf("[ cmp neq reg 1 0x%08x ]", uint32(testMark)),
		)
		if group != 0 {
			want = append(want, fmt.Sprintf("[ log group %d snaplen 0 qthreshold 1 ]", group))
		}
		want = append(want, "[ counter pkts 0 bytes 0 ]", "[ immediate reg 0 drop ]")
	}
	out := lab.Run(t, lab.Prober, "nft", "--debug=netlink", "list", "table", "inet", g.Table())
	var got []string
	for line := range strings.Lines(out) {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "[ ") {
			got = append(got, l)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("nft --debug=netlink:\n%s\nwant the expressions\n%s", out, strings.Join(want, "\n"))
	}

	// The same rules compiled by nft from their text, in a table of
	// nft's own: nft's JSON of both must agree, expression by expression.
	var text strings.Builder
	text.WriteString("table inet ref {\n chain out {\n type filter hook output priority -450; policy accept;\n")
	for _, r := range ranges {
		ports := strconv.Itoa(int(r.Lo))
		if r.Hi != r.Lo {
			ports += "-" + strconv.Itoa(int(r.Hi))
		}
		log := ""
		if group != 0 {
			log = fmt.Sprintf(" log group %d queue-threshold 1", group)
		}
		fmt.Fprintf(&text, " meta l4proto tcp tcp flags & rst == rst tcp sport %s meta mark != 0x%08x%s counter drop\n", ports, uint32(testMark), log)
	}
	text.WriteString(" }\n}\n")
	lab.Nft(t, lab.Prober, text.String())
	exprs := func(table string) (chain map[string]any, rules []any) {
		t.Helper()
		out, err := lab.Command(context.Background(), lab.Prober, "nft", "-j", "list", "table", "inet", table).Output()
		if err != nil {
			t.Skipf("nft -j: %v (nft without JSON support?)", err)
		}
		var doc struct {
			Nftables []map[string]map[string]any `json:"nftables"`
		}
		if err := json.Unmarshal(out, &doc); err != nil {
			t.Fatalf("nft -j: %v\n%s", err, out)
		}
		for _, o := range doc.Nftables {
			if c, ok := o["chain"]; ok {
				chain = map[string]any{"type": c["type"], "hook": c["hook"], "prio": c["prio"], "policy": c["policy"]}
			}
			if r, ok := o["rule"]; ok {
				rules = append(rules, r["expr"])
			}
		}
		return chain, rules
	}
	ourChain, ours := exprs(g.Table())
	refChain, ref := exprs("ref")
	if len(ours) != len(ranges) || !reflect.DeepEqual(ourChain, refChain) || !reflect.DeepEqual(ours, ref) {
		t.Errorf("nft -j: our chain %v with rules\n%v\nnft's own %v with\n%v", ourChain, ours, refChain, ref)
	}
	t.Logf("%d rules as nft compiles them: %v", len(ref), ref)
}

// TestHelperGuardProcess is the child of TestIntegrationRSTGuardSIGKILL:
// it creates a guard, says so and waits to be killed.
func TestHelperGuardProcess(t *testing.T) {
	if os.Getenv(guardHelperEnv) != "1" {
		t.Skip("helper process for TestIntegrationRSTGuardSIGKILL")
	}
	g, err := New(Config{PortLo: guardTestPortLo, PortHi: guardTestPortHi, Mark: testMark})
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("ready %s %v\n", g.Table(), g.Owned())
	time.Sleep(2 * helperReadyTimeout) // bounded; the parent kills us long before
	os.Exit(3)
}

func TestIntegrationRSTGuardSIGKILL(t *testing.T) {
	lab := netlab.New(t)
	needNft(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*helperReadyTimeout)
	defer cancel()
	cmd := lab.Command(ctx, lab.Prober, os.Args[0], "-test.run=^TestHelperGuardProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), guardHelperEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if f := sc.Text(); strings.HasPrefix(f, "ready ") || strings.HasPrefix(f, "error ") {
				lines <- f
				break
			}
		}
		close(lines)
		for sc.Scan() { // keep the pipe drained
		}
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(helperReadyTimeout):
		t.Fatalf("helper not ready after %v; stderr:\n%s", helperReadyTimeout, &stderr)
	}
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "ready" {
		if strings.Contains(line, "permitted") {
			t.Skip(skipNeedsNetAdmin)
		}
		t.Fatalf("helper said %q; stderr:\n%s", line, &stderr)
	}
	table := f[1]
	if f[2] != "true" {
		t.Fatalf("helper's table %s is not owned", table)
	}
	if !slices.Contains(tables(t, lab, lab.Prober), table) {
		t.Fatalf("helper's table %s not in %s", table, lab.Prober)
	}
	// ip netns exec execs the test binary, so the pid in the table name is
	// the child's.
	if want := fmt.Sprintf("%s%d_", TablePrefix, cmd.Process.Pid); !strings.HasPrefix(table, want) {
		t.Fatalf("table %s is not named after the child, pid %d", table, cmd.Process.Pid)
	}
	if err := cmd.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = cmd.Wait()
	waitTableGone(t, lab, lab.Prober, table)
	t.Logf("table %s gone %v after SIGKILL", table, time.Since(start).Round(time.Millisecond))
}

func TestIntegrationRSTGuardFallback(t *testing.T) {
	lab := netlab.New(t)
	needNft(t)
	g := newGuardIn(t, lab, lab.Prober, Config{PortLo: guardTestPortLo, PortHi: guardTestPortHi, Mark: testMark, NoOwner: true})
	if g.Owned() {
		t.Fatal("Owned with NoOwner")
	}
	out := lab.Run(t, lab.Prober, "nft", "list", "table", "inet", g.Table())
	if strings.Contains(out, "owner") || !strings.Contains(out, "tcp sport 61000-61009") {
		t.Errorf("table without owner flag:\n%s", out)
	}

	// A pid that has just ended and a live one.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("%s%d_deadbeef", TablePrefix, dead.Process.Pid)
	live := fmt.Sprintf("%s%d_cafef00d", TablePrefix, os.Getpid())
	others := []string{"synprobe_notapid", "synprobe_1_nothex00", "other"}
	for _, name := range append([]string{stale, live}, others...) {
		lab.Run(t, lab.Prober, "nft", "add", "table", "inet", name)
	}
	var removed []string
	err := lab.InNS(lab.Prober, func() (err error) {
		removed, err = CleanupTables()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{stale}) {
		t.Errorf("CleanupTables removed %q, want %q", removed, stale)
	}
	left := tables(t, lab, lab.Prober)
	for _, name := range append([]string{g.Table(), live}, others...) {
		if !slices.Contains(left, name) {
			t.Errorf("CleanupTables removed %s", name)
		}
	}
	if slices.Contains(left, stale) {
		t.Errorf("%s still there", stale)
	}

	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(tables(t, lab, lab.Prober), g.Table()) {
		t.Errorf("table %s still there after Close", g.Table())
	}
}

// TestIntegrationRSTGuardDroppedAtOnce: Dropped counts every RST dropped
// before the call, read at once after a burst (the log's reader is then
// far behind) and after a burst larger than the log socket's buffer holds
// (messages lost, their numbers not), as the rules' counters do. The RSTs
// come from a raw socket without our mark, to a lab address; the guard
// drops them on output, so none leaves.
func TestIntegrationRSTGuardDroppedAtOnce(t *testing.T) {
	lab := netlab.New(t)
	var conn *rawsock.Conn
	var g *Guard
	err := lab.InNS(lab.Prober, func() (err error) {
		if conn, err = rawsock.Listen(rawsock.Config{IPv4: true, PortLo: guardTestPortLo, PortHi: guardTestPortHi, SendOnly: true, NoTxStamps: true}); err != nil {
			return err
		}
		g, err = New(Config{PortLo: guardTestPortLo, PortHi: guardTestPortHi, Mark: testMark})
		return err
	})
	if conn != nil {
		t.Cleanup(func() { conn.Close() })
	}
	if g != nil {
		t.Cleanup(func() { g.Close() })
	}
	if errors.Is(err, os.ErrPermission) {
		t.Skip(skipNeedsNetAdmin)
	}
	if err != nil {
		t.Fatal(err)
	}
	if g.log == nil {
		t.Skip("the kernel cannot log to a group: Dropped reads the counters")
	}
	buf := make([]byte, 128)
	sent := 0
	for _, burst := range []int{1, 2000, 40000} {
		for i := range burst {
			n, err := (&wire.Segment{Src: lab.ProberV4, Dst: lab.TargetV4, TTL: 64, SrcPort: guardTestPortLo + uint16(i%10), DstPort: 9,
				Seq: uint32(i), Flags: wire.FlagRst}).Build(buf)
			if err != nil {
				t.Fatal(err)
			}
			// EPERM: the guard dropped it, as it should.
			if err := conn.Send(buf[:n], 0); err != nil && !errors.Is(err, unix.EPERM) {
				t.Fatal(err)
			}
		}
		sent += burst
		got, err := g.Dropped()
		g.mu.Lock()
		counters, cerr := g.counters()
		g.mu.Unlock()
		if err != nil || cerr != nil || got != uint64(sent) || counters != uint64(sent) {
			t.Errorf("after %d RSTs: Dropped = %d, %v; the rules' counters %d, %v", sent, got, err, counters, cerr)
		}
		g.log.mu.Lock()
		drops, _ := g.log.drops()
		t.Logf("after %d RSTs: Dropped = %d, counters %d; the log socket has dropped %d messages, %d answers of %d lost", sent, got, counters, drops, g.log.asked-g.log.answers, g.log.asked)
		g.log.mu.Unlock()
	}
}

// TestIntegrationRSTGuardDrops completes a handshake by hand from raw
// sockets and checks on the wire that the guard keeps the kernel's RST to
// the SYN-ACK off it while our own ACK and RST pass; without the guard the
// kernel's RST shows.
func TestIntegrationRSTGuardDrops(t *testing.T) {
	for _, fam := range []string{"ipv4", "ipv6"} {
		for _, guarded := range []bool{true, false} {
			name := fam + "/guard"
			if !guarded {
				name = fam + "/control"
			}
			t.Run(name, func(t *testing.T) { testGuardDrops(t, fam == "ipv6", guarded) })
		}
	}
}

func testGuardDrops(t *testing.T, v6, guarded bool) {
	lab := netlab.New(t)
	src, dst := lab.ProberV4, lab.TargetV4
	if v6 {
		src, dst = lab.ProberV6, lab.TargetV6
	}
	const dport = 8080
	lab.Listen(t, lab.Target, "tcp", netip.AddrPortFrom(dst, dport).String()) // never accepts: stays quiet

	var conn *rawsock.Conn
	var g *Guard
	err := lab.InNS(lab.Prober, func() (err error) {
		conn, err = rawsock.Listen(rawsock.Config{IPv4: true, IPv6: true, PortLo: guardTestPortLo, PortHi: guardTestPortHi, Mark: testMark})
		if err != nil || !guarded {
			return err
		}
		g, err = New(Config{PortLo: guardTestPortLo, PortHi: guardTestPortHi, Mark: testMark})
		return err
	})
	if conn != nil {
		t.Cleanup(func() { conn.Close() })
	}
	if g != nil {
		t.Cleanup(func() { g.Close() })
	}
	if errors.Is(err, os.ErrPermission) {
		t.Skip("needs CAP_NET_RAW and CAP_NET_ADMIN: run as root (sudo go test ./rawsock/rstguard)")
	}
	if err != nil {
		t.Fatal(err)
	}

	capture := lab.StartCapture(t, lab.Prober, lab.ProberIf, "tcp")
	const sport = guardTestPortLo + 3
	isn := rand.Uint32()
	buf := make([]byte, 256)
	send := func(id uint32, seq, ack uint32, flags wire.TCPFlags, window uint16) {
		t.Helper()
		n, err := (&wire.Segment{Src: src, Dst: dst, TTL: 64, DF: true, SrcPort: sport, DstPort: dport,
			Seq: seq, Ack: ack, Flags: flags, Window: window}).Build(buf)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.Send(buf[:n], id); err != nil {
			t.Fatal(err)
		}
	}
	send(1, isn, 0, wire.FlagSyn, 64240)

	// The SYN-ACK, read from the raw socket.
	timer := time.AfterFunc(handshakeTimeout, func() { conn.Close() })
	rb := make([]byte, 2048)
	var p wire.Packet
	for {
		n, _, err := conn.Recv(rb, time.Time{})
		if err != nil {
			t.Fatalf("no SYN-ACK within %v: %v", handshakeTimeout, err)
		}
		if wire.Parse(rb[:n], &p) == nil && p.Proto == wire.ProtocolTCP && p.SrcPort == dport && p.DstPort == sport &&
			p.Flags == wire.FlagSyn|wire.FlagAck && p.Ack == isn+1 {
			break
		}
	}
	if !timer.Stop() {
		t.Fatal("connection closed by the timeout")
	}
	theirISN := p.Seq
	send(2, isn+1, theirISN+1, wire.FlagAck, 502)
	send(3, isn+1, 0, wire.FlagRst, ourRSTWindow)
	time.Sleep(50 * time.Millisecond) // a late kernel RST would be on the wire by now

	pkts, err := capture.Stop()
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		from  string
		flags wire.TCPFlags
		seq   uint32
		win   uint16
	}
	var trace []seen
	var log strings.Builder
	for _, cp := range pkts {
		var q wire.Packet
		if wire.Parse(cp.Data, &q) != nil || q.Proto != wire.ProtocolTCP {
			continue
		}
		var s seen
		switch {
		case q.Src == src && q.SrcPort == sport && q.Dst == dst && q.DstPort == dport:
			s.from = "prober"
		case q.Src == dst && q.SrcPort == dport && q.Dst == src && q.DstPort == sport:
			s.from = "target"
		default:
			continue
		}
		s.flags, s.seq, s.win = q.Flags, q.Seq, q.Window
		trace = append(trace, s)
		fmt.Fprintf(&log, "  %s %-2v seq %d win %d\n", s.from, s.flags, s.seq-map[bool]uint32{true: isn, false: theirISN}[s.from == "prober"], s.win)
	}
	t.Logf("capture (relative sequence numbers):\n%s", log.String())

	want := []seen{
		{"prober", wire.FlagSyn, isn, 64240},
		{"target", wire.FlagSyn | wire.FlagAck, theirISN, 0},
		{"prober", wire.FlagAck, isn + 1, 502},
		{"prober", wire.FlagRst, isn + 1, ourRSTWindow},
	}
	// Ignore the target's window in the comparison.
	var got []seen
	kernelRSTs := 0
	for _, s := range trace {
		if s.from == "target" {
			s.win = 0
		}
		if s.from == "prober" && s.flags == wire.FlagRst && s.win != ourRSTWindow {
			kernelRSTs++
			if s.seq != isn+1 {
				t.Errorf("kernel RST with seq %d, want ISN+1", s.seq-isn)
			}
		}
		got = append(got, s)
	}
	if guarded {
		if !slices.Equal(got, want) {
			t.Errorf("capture:\n got %v\nwant %v", got, want)
		}
		n, err := g.Dropped()
		if err != nil || n < 1 {
			t.Errorf("Dropped = %d, %v; want at least 1", n, err)
		}
		// Dropped counts the packets logged to the guard's group; the
		// rules' own counters are the witness.
		g.mu.Lock()
		c, err := g.counters()
		g.mu.Unlock()
		if g.log == nil || err != nil || c != n {
			t.Errorf("Dropped = %d from the log (%v), the rules' counters say %d (%v)", n, g.log != nil, c, err)
		}
		t.Logf("Dropped = %d, counters %d", n, c)
		return
	}
	// Control: the kernel's RST is on the wire, besides everything we sent.
	if kernelRSTs == 0 {
		t.Errorf("no kernel RST without the guard: the test cannot tell")
	}
	for _, w := range want {
		if w.from == "prober" && !slices.Contains(got, w) {
			t.Errorf("our %v is missing from the capture", w.flags)
		}
	}
	if len(got) >= 3 && (got[2].flags != wire.FlagRst || got[2].win == ourRSTWindow) {
		t.Logf("note: the kernel's RST did not come right after the SYN-ACK")
	}
}
