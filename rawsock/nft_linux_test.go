//go:build linux

package rawsock

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
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

	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/internal/netlab"
)

const (
	testMark           = 0x5350b0b0
	skipNeedsNetAdmin  = "needs CAP_NET_ADMIN: run as root (sudo go test ./rawsock)"
	guardHelperEnv     = "SYNPROBE_GUARD_HELPER"
	guardTestPortLo    = 61000
	guardTestPortHi    = 61009
	ourRSTWindow       = 4242 // tells our own RSTs from the kernel's (window 0) in captures
	handshakeTimeout   = 5 * time.Second
	tableGoneTimeout   = 2 * time.Second
	helperReadyTimeout = 20 * time.Second
)

func littleEndian() bool { return binary.NativeEndian.Uint16([]byte{1, 0}) == 1 }

// TestEncodeBatchTable checks a whole batch holding one NEWTABLE message
// against bytes worked out by hand from netlink(7), linux/netfilter/
// nfnetlink.h and nf_tables.h.
func TestEncodeBatchTable(t *testing.T) {
	if !littleEndian() {
		t.Skip("the expected bytes are for a little-endian host")
	}
	got := encodeBatch(7, unix.NFPROTO_INET, []nftMsg{newTableMsg("sp", nftTableFlagOwner, "")})
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

// TestNlWriterNesting checks nested attributes: the length of a nest
// covers the padding of its last member, and the nested flag is set.
func TestNlWriterNesting(t *testing.T) {
	if !littleEndian() {
		t.Skip("the expected bytes are for a little-endian host")
	}
	var w nlWriter
	w.nest(unix.NFTA_CHAIN_HOOK)
	w.u32(unix.NFTA_HOOK_HOOKNUM, unix.NF_INET_LOCAL_OUT)
	w.u32(unix.NFTA_HOOK_PRIORITY, 0)
	w.end()
	w.data(unix.NFTA_CMP_DATA, []byte{6})
	want := []byte{
		// NFTA_CHAIN_HOOK|NLA_F_NESTED, len 4+8+8
		0x14, 0x00, 0x04, 0x80,
		0x08, 0x00, 0x01, 0x00, 0, 0, 0, 3, // NFTA_HOOK_HOOKNUM be32 NF_INET_LOCAL_OUT
		0x08, 0x00, 0x02, 0x00, 0, 0, 0, 0, // NFTA_HOOK_PRIORITY be32 0
		// NFTA_CMP_DATA|NLA_F_NESTED, len 4+8 (the inner attribute's padding counts)
		0x0c, 0x00, 0x03, 0x80,
		0x05, 0x00, 0x01, 0x00, 6, 0, 0, 0, // NFTA_DATA_VALUE, len 5, value 6, 3 bytes padding
	}
	if !bytes.Equal(w.b, want) {
		t.Errorf("attributes:\n got % x\nwant % x", w.b, want)
	}
}

type testAttr struct {
	typ  uint16
	data []byte
	kids []testAttr
}

func (a testAttr) write(w *nlWriter) {
	if a.kids == nil {
		w.attr(a.typ, a.data)
		return
	}
	w.nest(a.typ)
	for _, k := range a.kids {
		k.write(w)
	}
	w.end()
}

func readAttrs(b []byte, nested map[uint16]bool) ([]testAttr, error) {
	var out []testAttr
	err := walkAttrs(b, func(typ uint16, data []byte) error {
		a := testAttr{typ: typ, data: data}
		if nested[typ] {
			kids, err := readAttrs(data, nested)
			if err != nil {
				return err
			}
			a.data, a.kids = nil, append([]testAttr{}, kids...) // an empty nest is not a leaf
		}
		out = append(out, a)
		return nil
	})
	return out, err
}

// TestAttrRoundTrip writes trees of attributes of every length modulo 4
// and reads them back.
func TestAttrRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	leaf := func(typ uint16) testAttr {
		d := make([]byte, r.IntN(11))
		for i := range d {
			d[i] = byte(r.Uint32())
		}
		return testAttr{typ: typ, data: d}
	}
	for i := range 100 {
		// Types below 10 are leaves, 10 and up nests.
		tree := []testAttr{leaf(1), {typ: 10, kids: []testAttr{leaf(2), {typ: 11, kids: []testAttr{leaf(3), leaf(4)}}, leaf(5)}}, leaf(6)}
		if i%2 == 0 {
			tree = append(tree, testAttr{typ: 12, kids: []testAttr{}})
		}
		var w nlWriter
		for _, a := range tree {
			a.write(&w)
		}
		if len(w.b)%4 != 0 {
			t.Fatalf("encoding of %d bytes is not padded", len(w.b))
		}
		got, err := readAttrs(w.b, map[uint16]bool{10: true, 11: true, 12: true})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(tree)) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, tree)
		}
	}
}

// normalize makes empty and nil slices compare equal.
func normalize(as []testAttr) []testAttr {
	out := make([]testAttr, len(as))
	for i, a := range as {
		out[i] = testAttr{typ: a.typ, data: append([]byte{}, a.data...)}
		if a.kids != nil {
			out[i].kids = normalize(a.kids)
		}
	}
	return out
}

func TestWalkAttrsMalformed(t *testing.T) {
	for _, b := range [][]byte{
		{1, 0},                      // shorter than a header
		{3, 0, 1, 0},                // length below the header's
		{9, 0, 1, 0, 1, 2, 3, 4},    // length beyond the buffer
		{8, 0, 1, 0, 0, 0, 0, 0, 2}, // trailing garbage
	} {
		if !littleEndian() {
			t.Skip("little-endian inputs")
		}
		if err := walkAttrs(b, func(uint16, []byte) error { return nil }); !errors.Is(err, errNetlinkMalformed) {
			t.Errorf("walkAttrs(% x) = %v, want errNetlinkMalformed", b, err)
		}
	}
	// The last attribute may omit its padding.
	var n int
	if err := walkAttrs([]byte{5, 0, 1, 0, 7}, func(uint16, []byte) error { n++; return nil }); err != nil || n != 1 {
		t.Errorf("unpadded last attribute: %v, %d attributes", err, n)
	}
}

// TestParseAck reads a capped error acknowledgement with an extended-ack
// message, as the kernel sends it with NETLINK_CAP_ACK and NETLINK_EXT_ACK.
func TestParseAck(t *testing.T) {
	var w nlWriter
	code := -int32(unix.EOPNOTSUPP)
	w.b = binary.NativeEndian.AppendUint32(w.b, uint32(code))
	w.begin(nftType(unix.NFT_MSG_NEWTABLE), unix.NLM_F_REQUEST, 8, unix.NFPROTO_INET, 0)
	w.b = w.b[:unix.SizeofNlMsgerr] // the quoted header without its nfgenmsg
	w.str(unix.NLMSGERR_ATTR_MSG, "table flags not supported")
	h := unix.NlMsghdr{Type: unix.NLMSG_ERROR, Flags: unix.NLM_F_CAPPED | unix.NLM_F_ACK_TLVS}
	errno, text, err := parseAck(h, w.b)
	if err != nil || errno != unix.EOPNOTSUPP || text != "table flags not supported" {
		t.Errorf("parseAck = %v, %q, %v", errno, text, err)
	}
	h.Flags = 0
	if errno, text, err := parseAck(h, w.b[:unix.SizeofNlMsgerr]); err != nil || errno != unix.EOPNOTSUPP || text != "" {
		t.Errorf("parseAck without TLVs = %v, %q, %v", errno, text, err)
	}
	if _, _, err := parseAck(h, w.b[:8]); err == nil {
		t.Error("parseAck accepted a short message")
	}
}

// TestGuardRuleEncoding decodes the rule message and checks the
// expressions and their key values, and reads a counter back.
func TestGuardRuleEncoding(t *testing.T) {
	msgs := guardMessages("synprobe_1_00000000", GuardConfig{PortLo: 61000, PortHi: 61009, Mark: testMark}, true, 0)
	if len(msgs) != 3 || msgs[2].typ != unix.NFT_MSG_NEWRULE {
		t.Fatalf("messages %+v", msgs)
	}
	var w nlWriter
	msgs[2].attrs(&w)
	var names []string
	var rng, mark []byte
	var verdict uint32 = 99
	err := walkAttrs(w.b, func(typ uint16, d []byte) error {
		if typ != unix.NFTA_RULE_EXPRESSIONS {
			return nil
		}
		return walkAttrs(d, func(_ uint16, elem []byte) error {
			var name string
			return walkAttrs(elem, func(typ uint16, d []byte) error {
				if typ == unix.NFTA_EXPR_NAME {
					name = cString(d)
					names = append(names, name)
					return nil
				}
				return walkAttrs(d, func(typ uint16, d []byte) error {
					switch {
					case name == "range" && (typ == unix.NFTA_RANGE_FROM_DATA || typ == unix.NFTA_RANGE_TO_DATA):
						rng = append(rng, d[4:6]...)
					case name == "cmp" && typ == unix.NFTA_CMP_DATA && len(d) == 8:
						mark = d[4:8]
					case name == "immediate" && typ == unix.NFTA_IMMEDIATE_DATA:
						verdict = binary.BigEndian.Uint32(d[8:12]) // DATA_VERDICT { VERDICT_CODE }
					}
					return nil
				})
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	wantNames := []string{"meta", "cmp", "payload", "bitwise", "cmp", "payload", "range", "meta", "cmp", "counter", "immediate"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("expressions %v, want %v", names, wantNames)
	}
	// With a log group, the rule logs what it drops before counting it.
	var wl nlWriter
	guardMessages("synprobe_1_00000000", GuardConfig{PortLo: 61000, PortHi: 61009, Mark: testMark}, true, 0x1234)[2].attrs(&wl)
	var group []byte
	walkAttrs(wl.b, func(typ uint16, d []byte) error {
		if typ != unix.NFTA_RULE_EXPRESSIONS {
			return nil
		}
		return walkAttrs(d, func(_ uint16, elem []byte) error {
			var name string
			return walkAttrs(elem, func(typ uint16, d []byte) error {
				if typ == unix.NFTA_EXPR_NAME {
					name = cString(d)
				} else if name == "log" {
					walkAttrs(d, func(typ uint16, d []byte) error {
						if typ == unix.NFTA_LOG_GROUP {
							group = d
						}
						return nil
					})
				}
				return nil
			})
		})
	})
	if !bytes.Equal(group, []byte{0x12, 0x34}) {
		t.Errorf("log group % x, want 12 34", group)
	}
	if !bytes.Equal(rng, []byte{0xee, 0x48, 0xee, 0x51}) {
		t.Errorf("port range % x, want 61000 (ee48) to 61009 (ee51)", rng)
	}
	if binary.NativeEndian.Uint32(mark) != testMark {
		t.Errorf("mark % x", mark)
	}
	if verdict != nfDrop {
		t.Errorf("verdict %d", verdict)
	}

	// A rule as the kernel dumps it, with a counter that has counted.
	var r nlWriter
	r.str(unix.NFTA_RULE_TABLE, "synprobe_1_00000000")
	r.str(unix.NFTA_RULE_CHAIN, guardChain)
	r.nest(unix.NFTA_RULE_EXPRESSIONS)
	r.expr("meta", func() { r.u32(unix.NFTA_META_KEY, unix.NFT_META_MARK) })
	r.expr("counter", func() {
		r.u64(unix.NFTA_COUNTER_BYTES, 120)
		r.u64(unix.NFTA_COUNTER_PACKETS, 3)
	})
	r.end()
	r.u64(unix.NFTA_RULE_HANDLE, 2)
	if n, ok, err := ruleCounter(r.b, "synprobe_1_00000000"); n != 3 || !ok || err != nil {
		t.Errorf("ruleCounter = %d, %v, %v; want 3", n, ok, err)
	}
	if _, ok, _ := ruleCounter(r.b, "other"); ok {
		t.Error("ruleCounter matched another table's rule")
	}
}

func TestNewRSTGuardConfig(t *testing.T) {
	for _, cfg := range []GuardConfig{
		{PortLo: 0, PortHi: 10, Mark: 1},
		{PortLo: 10, PortHi: 9, Mark: 1},
		{PortLo: 10, PortHi: 10, Mark: 0},
	} {
		if g, err := NewRSTGuard(cfg); err == nil {
			g.Close()
			t.Errorf("NewRSTGuard(%+v) succeeded", cfg)
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
	g, err := NewRSTGuard(GuardConfig{PortLo: guardTestPortLo, PortHi: guardTestPortHi, Mark: testMark})
	if err == nil {
		g.Close()
		t.Fatal("NewRSTGuard succeeded without CAP_NET_ADMIN")
	}
	if !errors.Is(err, os.ErrPermission) {
		t.Errorf("NewRSTGuard: %v; want an error wrapping os.ErrPermission", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Net != "rawsock" {
		t.Errorf("NewRSTGuard: %#v; want a *net.OpError", err)
	}
	t.Logf("NewRSTGuard: %v", err)
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
func newGuardIn(t *testing.T, lab *netlab.Lab, ns string, cfg GuardConfig) *RSTGuard {
	t.Helper()
	var g *RSTGuard
	err := lab.InNS(ns, func() (err error) {
		g, err = NewRSTGuard(cfg)
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
	g := newGuardIn(t, lab, lab.Prober, GuardConfig{PortLo: guardTestPortLo, PortHi: guardTestPortHi, Mark: testMark})
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
		"type filter hook output priority filter; policy accept;",
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
		c, err2 := dialNetfilter()
		if err2 != nil {
			return err2
		}
		defer c.close()
		err = c.batch(unix.NFPROTO_INET, delTableMsg(g.Table()))
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

// TestHelperGuardProcess is the child of TestIntegrationRSTGuardSIGKILL:
// it creates a guard, says so and waits to be killed.
func TestHelperGuardProcess(t *testing.T) {
	if os.Getenv(guardHelperEnv) != "1" {
		t.Skip("helper process for TestIntegrationRSTGuardSIGKILL")
	}
	g, err := NewRSTGuard(GuardConfig{PortLo: guardTestPortLo, PortHi: guardTestPortHi, Mark: testMark})
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
	g := newGuardIn(t, lab, lab.Prober, GuardConfig{PortLo: guardTestPortLo, PortHi: guardTestPortHi, Mark: testMark, NoOwner: true})
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

	var conn *Conn
	var g *RSTGuard
	err := lab.InNS(lab.Prober, func() (err error) {
		conn, err = Listen(Config{IPv4: true, IPv6: true, PortLo: guardTestPortLo, PortHi: guardTestPortHi, Mark: testMark})
		if err != nil || !guarded {
			return err
		}
		g, err = NewRSTGuard(GuardConfig{PortLo: guardTestPortLo, PortHi: guardTestPortHi, Mark: testMark})
		return err
	})
	if conn != nil {
		t.Cleanup(func() { conn.Close() })
	}
	if g != nil {
		t.Cleanup(func() { g.Close() })
	}
	if errors.Is(err, os.ErrPermission) {
		t.Skip("needs CAP_NET_RAW and CAP_NET_ADMIN: run as root (sudo go test ./rawsock)")
	}
	if err != nil {
		t.Fatal(err)
	}

	capture := lab.StartCapture(t, lab.Prober, lab.ProberIf, "tcp")
	const sport = guardTestPortLo + 3
	isn := rand.Uint32()
	buf := make([]byte, 256)
	send := func(id uint32, seq, ack uint32, flags TCPFlags, window uint16) {
		t.Helper()
		n, err := (&Segment{Src: src, Dst: dst, TTL: 64, DF: true, SrcPort: sport, DstPort: dport,
			Seq: seq, Ack: ack, Flags: flags, Window: window}).Build(buf)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.Send(buf[:n], id); err != nil {
			t.Fatal(err)
		}
	}
	send(1, isn, 0, FlagSyn, 64240)

	// The SYN-ACK, read from the raw socket.
	timer := time.AfterFunc(handshakeTimeout, func() { conn.Close() })
	rb := make([]byte, 2048)
	var p Packet
	for {
		n, _, err := conn.Recv(rb, time.Time{})
		if err != nil {
			t.Fatalf("no SYN-ACK within %v: %v", handshakeTimeout, err)
		}
		if Parse(rb[:n], &p) == nil && p.Proto == ProtocolTCP && p.SrcPort == dport && p.DstPort == sport &&
			p.Flags == FlagSyn|FlagAck && p.Ack == isn+1 {
			break
		}
	}
	if !timer.Stop() {
		t.Fatal("connection closed by the timeout")
	}
	theirISN := p.Seq
	send(2, isn+1, theirISN+1, FlagAck, 502)
	send(3, isn+1, 0, FlagRst, ourRSTWindow)
	time.Sleep(50 * time.Millisecond) // a late kernel RST would be on the wire by now

	pkts, err := capture.Stop()
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		from  string
		flags TCPFlags
		seq   uint32
		win   uint16
	}
	var trace []seen
	var log strings.Builder
	for _, cp := range pkts {
		var q Packet
		if Parse(cp.Data, &q) != nil || q.Proto != ProtocolTCP {
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
		{"prober", FlagSyn, isn, 64240},
		{"target", FlagSyn | FlagAck, theirISN, 0},
		{"prober", FlagAck, isn + 1, 502},
		{"prober", FlagRst, isn + 1, ourRSTWindow},
	}
	// Ignore the target's window in the comparison.
	var got []seen
	kernelRSTs := 0
	for _, s := range trace {
		if s.from == "target" {
			s.win = 0
		}
		if s.from == "prober" && s.flags == FlagRst && s.win != ourRSTWindow {
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
	if len(got) >= 3 && (got[2].flags != FlagRst || got[2].win == ourRSTWindow) {
		t.Logf("note: the kernel's RST did not come right after the SYN-ACK")
	}
}
