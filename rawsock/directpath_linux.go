//go:build linux

package rawsock

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/rawsock/internal/nl"
)

// directPath is DirectPath on Linux.
func directPath(prefixes []netip.Prefix, ifindex int) (NextHop, error) {
	if len(prefixes) == 0 {
		return NextHop{}, errors.New("no destinations")
	}
	v6 := prefixes[0].Addr().Is6()
	for _, p := range prefixes {
		if p.Addr().Is6() != v6 {
			return NextHop{}, errors.New("destinations of both families")
		}
	}
	for _, check := range []func(bool) error{checkNetfilter, checkLSM, checkXfrm, checkCgroupEgress} {
		if err := check(v6); err != nil {
			return NextHop{}, err
		}
	}
	// One rtnetlink socket for the rules, the routes, the kernel's route
	// lookups and the neighbours.
	rt, err := nl.Dial(unix.NETLINK_ROUTE, &netlink.Config{Strict: true})
	if err != nil {
		return NextHop{}, fmt.Errorf("routes: %w", err)
	}
	defer rt.Close()
	if err := checkRules(rt, v6); err != nil {
		return NextHop{}, err
	}
	ifi, gw, err := uniformRoute(rt, prefixes, v6)
	if err != nil {
		return NextHop{}, err
	}
	if ifindex != 0 && ifindex != ifi {
		return NextHop{}, fmt.Errorf("the route leaves by interface %d, not the one asked for", ifi)
	}
	// The kernel's own decision, for the ends of the first and the last
	// block: it must agree with the reading of the tables.
	for _, p := range []netip.Prefix{prefixes[0], prefixes[len(prefixes)-1]} {
		for _, a := range []netip.Addr{p.Masked().Addr(), lastAddr(p)} {
			i, g, err := routeOn(rt, a)
			if err != nil {
				return NextHop{}, err
			}
			if i != ifi || g != gw {
				return NextHop{}, fmt.Errorf("the kernel routes %v by interface %d via %v, not as its tables read", a, i, g)
			}
		}
	}
	dev, err := net.InterfaceByIndex(ifi)
	if err != nil {
		return NextHop{}, err
	}
	if len(dev.HardwareAddr) != 6 {
		return NextHop{}, fmt.Errorf("%s has no Ethernet address", dev.Name)
	}
	mac, ok, err := neighborOn(rt, ifi, gw)
	if err != nil {
		return NextHop{}, err
	}
	if !ok {
		return NextHop{}, fmt.Errorf("the gateway %v on %s is not resolved", gw, dev.Name)
	}
	return NextHop{Ifindex: ifi, Gateway: gw, SrcMAC: dev.HardwareAddr, DstMAC: mac}, nil
}

// lastAddr returns the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	a := p.Addr().AsSlice()
	for i := p.Bits(); i < len(a)*8; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	l, _ := netip.AddrFromSlice(a)
	return l
}

// Netfilter's hook numbers and protocol families (linux/netfilter.h).
const (
	nfInetLocalOut    = 3
	nfInetPostRouting = 4
	nfprotoInet       = 1
	nfprotoIPv4       = 2
	nfprotoIPv6       = 10
)

// checkNetfilter looks for anything hooked into the family's output path.
func checkNetfilter(v6 bool) error {
	chains, err := nftOutputChains(v6)
	if err != nil {
		return err
	}
	for _, c := range chains {
		if !nl.GuardTableName.MatchString(c.table) { // synprobe's guards pass SYNs
			return fmt.Errorf("nftables chain %s %s %s hooks the output path", c.family, c.table, c.name)
		}
	}
	names := "/proc/net/ip_tables_names"
	if v6 {
		names = "/proc/net/ip6_tables_names"
	}
	if b, err := os.ReadFile(names); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return fmt.Errorf("iptables (legacy) tables %s are loaded", strings.Join(strings.Fields(string(b)), ", "))
	}
	if b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_count"); err == nil {
		if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n > 0 {
			return errors.New("connection tracking is active")
		}
	}
	if b, err := os.ReadFile("/proc/net/ip_vs"); err == nil && bytes.Count(b, []byte("\n")) > 3 {
		return errors.New("IPVS has virtual services")
	}
	return checkBPFNetfilter(v6)
}

type nftChain struct{ family, table, name string }

// nftOutputChains lists the nftables base chains on the family's output
// and postrouting hooks (families ip or ip6, and inet).
func nftOutputChains(v6 bool) ([]nftChain, error) {
	c, err := nl.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	defer c.Close()
	fam, famName := uint8(nfprotoIPv4), "ip"
	if v6 {
		fam, famName = nfprotoIPv6, "ip6"
	}
	var out []nftChain
	for _, f := range []struct {
		proto uint8
		name  string
	}{{fam, famName}, {nfprotoInet, "inet"}} {
		req, err := nl.NFMessage(nl.NFTType(unix.NFT_MSG_GETCHAIN), netlink.Request|netlink.Dump, f.proto, 0, nil)
		if err != nil {
			return nil, err
		}
		msgs, err := c.Execute(req)
		if err != nil {
			if errors.Is(err, unix.EPERM) {
				return nil, fmt.Errorf("nftables chains: %w", os.ErrPermission)
			}
			return nil, fmt.Errorf("nftables chains: %w", err)
		}
		for _, m := range msgs {
			ch, hook, err := decodeChain(m)
			if err != nil {
				return nil, err
			}
			if hook == nfInetLocalOut || hook == nfInetPostRouting {
				out = append(out, nftChain{f.name, ch.table, ch.name})
			}
		}
	}
	return out, nil
}

// decodeChain reads a chain's table, name and hook (-1: not a base chain).
func decodeChain(m netlink.Message) (nftChain, int, error) {
	var ch nftChain
	hook := -1
	ad, err := nl.NFDecoder(m)
	if err != nil {
		return ch, hook, err
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_CHAIN_TABLE:
			ch.table = ad.String()
		case unix.NFTA_CHAIN_NAME:
			ch.name = ad.String()
		case unix.NFTA_CHAIN_HOOK:
			ad.Nested(func(nd *netlink.AttributeDecoder) error {
				for nd.Next() {
					if nd.Type() == unix.NFTA_HOOK_HOOKNUM {
						hook = int(nd.Uint32())
					}
				}
				return nil
			})
		}
	}
	return ch, hook, ad.Err()
}

// checkBPFNetfilter looks for BPF programs linked to netfilter's output
// hooks. Listing BPF links takes CAP_SYS_ADMIN.
func checkBPFNetfilter(v6 bool) error {
	pf := uint32(nfprotoIPv4)
	if v6 {
		pf = nfprotoIPv6
	}
	var id uint32
	for {
		attr := [3]uint32{id}
		if _, _, e := unix.Syscall(unix.SYS_BPF, unix.BPF_LINK_GET_NEXT_ID, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr)); e != 0 {
			switch e {
			case unix.ENOENT:
				return nil // no more links
			case unix.EPERM:
				return fmt.Errorf("BPF netfilter programs cannot be listed without CAP_SYS_ADMIN: %w", os.ErrPermission)
			case unix.EINVAL, unix.ENOSYS:
				return nil // no BPF links on this kernel
			}
			return fmt.Errorf("BPF links: %w", e)
		}
		id = attr[1]
		get := [3]uint32{id}
		fd, _, e := unix.Syscall(unix.SYS_BPF, unix.BPF_LINK_GET_FD_BY_ID, uintptr(unsafe.Pointer(&get)), unsafe.Sizeof(get))
		if e == unix.ENOENT {
			continue // gone meanwhile
		}
		if e != 0 {
			return fmt.Errorf("BPF link %d: %w", id, e)
		}
		// struct bpf_link_info: type, id, prog_id, then (8-aligned) the
		// netfilter part: pf, hooknum, priority, flags.
		var info [64]byte
		req := struct {
			fd, len uint32
			info    uint64
		}{uint32(fd), uint32(len(info)), uint64(uintptr(unsafe.Pointer(&info[0])))}
		_, _, e = unix.Syscall(unix.SYS_BPF, unix.BPF_OBJ_GET_INFO_BY_FD, uintptr(unsafe.Pointer(&req)), unsafe.Sizeof(req))
		unix.Close(int(fd))
		if e != 0 {
			return fmt.Errorf("BPF link %d: %w", id, e)
		}
		ne := binary.NativeEndian
		if ne.Uint32(info[0:]) != unix.BPF_LINK_TYPE_NETFILTER {
			continue
		}
		if hook := ne.Uint32(info[20:]); ne.Uint32(info[16:]) == pf && (hook == nfInetLocalOut || hook == nfInetPostRouting) {
			return fmt.Errorf("BPF netfilter program (link %d) hooks the output path", id)
		}
	}
}

// checkLSM refuses SELinux, whose netfilter hooks may refuse raw IP
// packets that a packet socket's frames skip.
func checkLSM(bool) error {
	if b, err := os.ReadFile("/sys/fs/selinux/enforce"); err == nil && strings.TrimSpace(string(b)) == "1" {
		return errors.New("SELinux is enforcing")
	}
	return nil
}

// XFRM (IPsec) message types (linux/xfrm.h).
const xfrmMsgGetPolicy = 0x15

// checkXfrm refuses any IPsec policy: the IP path would apply it.
func checkXfrm(bool) error {
	c, err := nl.Dial(unix.NETLINK_XFRM, nil)
	if err != nil {
		return fmt.Errorf("IPsec policies: %w", err)
	}
	defer c.Close()
	msgs, err := c.Execute(netlink.Message{Header: netlink.Header{Type: xfrmMsgGetPolicy, Flags: netlink.Request | netlink.Dump}})
	if err != nil {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("IPsec policies: %w", os.ErrPermission)
		}
		return fmt.Errorf("IPsec policies: %w", err)
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%d IPsec policies are set", len(msgs))
	}
	return nil
}

// checkCgroupEgress refuses cgroup BPF egress programs in force for this
// process's cgroup (cgroup v2).
func checkCgroupEgress(bool) error {
	dir, err := cgroup2Dir()
	if err != nil || dir == "" {
		return err // "": no cgroup v2, so no such programs
	}
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cgroup: %w", err)
	}
	defer f.Close()
	attr := struct {
		targetFd, attachType, queryFlags, attachFlags uint32
		progIDs                                       uint64
		progCnt                                       uint32
		_                                             [28]byte
	}{targetFd: uint32(f.Fd()), attachType: unix.BPF_CGROUP_INET_EGRESS, queryFlags: unix.BPF_F_QUERY_EFFECTIVE}
	_, _, e := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_QUERY, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	switch {
	case e == unix.EPERM:
		return fmt.Errorf("cgroup BPF programs: %w", os.ErrPermission)
	case e == unix.EINVAL || e == unix.ENOSYS:
		return nil // the kernel has no cgroup BPF
	case e != 0:
		return fmt.Errorf("cgroup BPF programs: %w", e)
	case attr.progCnt > 0:
		return fmt.Errorf("%d cgroup BPF egress programs apply to this process", attr.progCnt)
	}
	return nil
}

// cgroup2Dir returns this process's cgroup v2 directory, "" without one.
func cgroup2Dir() (string, error) {
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", nil
	}
	var root string
	sc := bufio.NewScanner(bytes.NewReader(mounts))
	for sc.Scan() {
		// ... mount-point ... - fstype source options
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if f := strings.Fields(post); ok && len(f) > 0 && f[0] == "cgroup2" {
			if pf := strings.Fields(pre); len(pf) > 4 {
				root = pf[4]
				break
			}
		}
	}
	if root == "" {
		return "", nil
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", nil
	}
	for _, line := range strings.Split(string(cg), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return filepath.Join(root, filepath.Clean("/"+p)), nil
		}
	}
	return "", nil
}

// Routing rule and table values (linux/fib_rules.h, rtnetlink.h).
const (
	frActToTbl   = 1
	rtTableLocal = 255
	rtTableMain  = 254
	rtTableDef   = 253
)

// checkRules requires the kernel's default routing rules and no other.
func checkRules(c *netlink.Conn, v6 bool) error {
	_, err := readRules(c, v6)
	return err
}

// rulesSet reports whether rules other than the kernel's defaults are
// set (PolicyRules).
func rulesSet(c *netlink.Conn, v6 bool) (bool, error) {
	set, err := readRules(c, v6)
	if set {
		return true, nil
	}
	return false, err
}

// readRules reads the family's routing rules, and returns an error unless
// they are the kernel's defaults alone; set is true when others are set.
func readRules(c *netlink.Conn, v6 bool) (set bool, err error) {
	family := uint8(unix.AF_INET)
	want := [][2]uint32{{0, rtTableLocal}, {32766, rtTableMain}, {32767, rtTableDef}} // priority, table
	if v6 {
		family = unix.AF_INET6
		want = want[:2]
	}
	msgs, err := rtExecute(c, unix.RTM_GETRULE, netlink.Request|netlink.Dump, &rtnetlink.RuleMessage{Family: family})
	if err != nil {
		return false, fmt.Errorf("routing rules: %w", nl.Wrap("RTM_GETRULE", err))
	}
	var got [][2]uint32
	for _, m := range msgs {
		prio, table, err := decodeRule(m.Data)
		if err != nil {
			return true, err // a rule with a selector
		}
		got = append(got, [2]uint32{prio, table})
	}
	slices.SortFunc(got, func(a, b [2]uint32) int { return cmp.Compare(a[0], b[0]) })
	if !slices.Equal(got, want) {
		return true, errors.New("policy routing rules are set")
	}
	return false, nil
}

// ruleAttrs are the attributes of a rule that selects nothing: the
// kernel's default rules have these alone.
var ruleAttrs = []uint16{unix.FRA_TABLE, unix.FRA_PRIORITY, unix.FRA_PROTOCOL, unix.FRA_SUPPRESS_PREFIXLEN, unix.FRA_SUPPRESS_IFGROUP}

// decodeRule reads one rule of an RTM_GETRULE dump, a struct fib_rule_hdr
// and its attributes, and returns its priority and table, or an error if
// it is not a plain lookup in a table for every packet.
func decodeRule(b []byte) (prio, table uint32, err error) {
	// Every attribute first: rtnetlink's decoder refuses those it does
	// not know, which say no more than that the rule has a selector.
	if t, ok, err := otherAttr(b, 12, ruleAttrs); err != nil {
		return 0, 0, fmt.Errorf("routing rules: %w", err)
	} else if ok {
		return 0, 0, fmt.Errorf("a routing rule has a selector (attribute %d)", t)
	}
	var m rtnetlink.RuleMessage
	if err := m.UnmarshalBinary(b); err != nil {
		return 0, 0, fmt.Errorf("routing rules: %w", err)
	}
	if m.DstLength != 0 || m.SrcLength != 0 || m.TOS != 0 || m.Action != frActToTbl || m.Flags != 0 {
		return 0, 0, errors.New("policy routing rules with selectors are set")
	}
	table = uint32(m.Table)
	if a := m.Attributes; a != nil {
		switch {
		case a.SuppressPrefixLen != nil && *a.SuppressPrefixLen != ^uint32(0):
			return 0, 0, errors.New("a routing rule suppresses prefix lengths")
		case a.SuppressIFGroup != nil && *a.SuppressIFGroup != ^uint32(0):
			return 0, 0, errors.New("a routing rule suppresses interface groups")
		}
		if a.Table != nil {
			table = *a.Table
		}
		if a.Priority != nil {
			prio = *a.Priority
		}
	}
	return prio, table, nil
}

// otherAttr returns the type of the first attribute, after a header of
// size hdr, that known does not list. Decoders that skip the attributes
// they do not know (rtnetlink's, for routes) cannot tell that a message
// carries one.
func otherAttr(b []byte, hdr int, known []uint16) (uint16, bool, error) {
	if len(b) < hdr {
		return 0, false, errors.New("short message")
	}
	ad, err := netlink.NewAttributeDecoder(b[hdr:])
	if err != nil {
		return 0, false, err
	}
	for ad.Next() {
		if t := ad.Type(); !slices.Contains(known, t) {
			return t, true, nil
		}
	}
	return 0, false, ad.Err()
}

// route is a route of the local, main or default table.
type route struct {
	dst    netip.Prefix
	table  uint32
	typ    uint8
	oif    int
	gw     netip.Addr
	simple bool // unicast or local type aside, nothing this check does not model
}

// uniformRoute reads the routing tables and returns the interface and
// gateway every address of prefixes is routed by, or why there is none.
func uniformRoute(c *netlink.Conn, prefixes []netip.Prefix, v6 bool) (int, netip.Addr, error) {
	family := uint8(unix.AF_INET)
	if v6 {
		family = unix.AF_INET6
	}
	msgs, err := rtExecute(c, unix.RTM_GETROUTE, netlink.Request|netlink.Dump, &rtnetlink.RouteMessage{Family: family})
	if err != nil {
		return 0, netip.Addr{}, fmt.Errorf("routes: %w", nl.Wrap("RTM_GETROUTE", err))
	}
	var routes []route
	for _, m := range msgs {
		r, ok, err := decodeRoute(m.Data, v6)
		if err != nil {
			return 0, netip.Addr{}, err
		}
		if ok {
			routes = append(routes, r)
		}
	}
	// By table in lookup order, then the longest prefix first.
	order := map[uint32]int{rtTableLocal: 0, rtTableMain: 1, rtTableDef: 2}
	slices.SortFunc(routes, func(a, b route) int {
		return cmp.Or(cmp.Compare(order[a.table], order[b.table]), cmp.Compare(b.dst.Bits(), a.dst.Bits()))
	})
	byStart := slices.Clone(routes)
	slices.SortFunc(byStart, func(a, b route) int { return a.dst.Addr().Compare(b.dst.Addr()) })
	var ifi int
	var gw netip.Addr
	for i, p := range prefixes {
		p = p.Masked()
		// No route inside the block: its addresses would differ.
		k, _ := slices.BinarySearchFunc(byStart, p.Addr(), func(r route, a netip.Addr) int { return r.dst.Addr().Compare(a) })
		for ; k < len(byStart) && p.Contains(byStart[k].dst.Addr()); k++ {
			if byStart[k].dst.Bits() > p.Bits() {
				return 0, netip.Addr{}, fmt.Errorf("a route for %v lies inside %v", byStart[k].dst, p)
			}
		}
		var r *route
		for j := range routes {
			if routes[j].dst.Bits() <= p.Bits() && routes[j].dst.Contains(p.Addr()) {
				r = &routes[j]
				break
			}
		}
		switch {
		case r == nil:
			return 0, netip.Addr{}, fmt.Errorf("no route to %v", p)
		case r.typ != unix.RTN_UNICAST:
			return 0, netip.Addr{}, fmt.Errorf("the route for %v is not a unicast route", p)
		case !r.simple:
			return 0, netip.Addr{}, fmt.Errorf("the route for %v has features this check does not model (multipath, nexthop objects, encapsulation, TOS or source selectors)", p)
		case !r.gw.IsValid():
			return 0, netip.Addr{}, fmt.Errorf("%v is on the link: each address is its own next hop", p)
		}
		for j := range routes {
			if q := &routes[j]; q != r && q.table == r.table && q.dst == r.dst {
				return 0, netip.Addr{}, fmt.Errorf("more than one route for %v", r.dst)
			}
		}
		if i == 0 {
			ifi, gw = r.oif, r.gw
		} else if r.oif != ifi || r.gw != gw {
			return 0, netip.Addr{}, errors.New("the targets leave through more than one next hop")
		}
	}
	return ifi, gw, nil
}

// routeAttrs are the attributes of a route that this check models: with
// any other (RTA_MULTIPATH, RTA_NH_ID, RTA_ENCAP, RTA_VIA, RTA_FLOW, ...)
// a route is not simple.
var routeAttrs = []uint16{unix.RTA_TABLE, unix.RTA_DST, unix.RTA_OIF, unix.RTA_GATEWAY,
	// Nothing a probe of ours depends on.
	unix.RTA_PRIORITY, unix.RTA_PREFSRC, unix.RTA_METRICS, unix.RTA_CACHEINFO, unix.RTA_PREF, unix.RTA_EXPIRES}

// decodeRoute reads one route of an RTM_GETROUTE dump; ok is false for
// routes of other tables and cached clones.
func decodeRoute(b []byte, v6 bool) (route, bool, error) {
	var r route
	var m rtnetlink.RouteMessage
	if err := m.UnmarshalBinary(b); err != nil {
		return r, false, fmt.Errorf("routes: %w", err)
	}
	if m.Flags&unix.RTM_F_CLONED != 0 {
		return r, false, nil
	}
	_, other, err := otherAttr(b, unix.SizeofRtMsg, routeAttrs)
	if err != nil {
		return r, false, fmt.Errorf("routes: %w", err)
	}
	a := &m.Attributes
	r.typ, r.oif, r.table = m.Type, int(a.OutIface), uint32(m.Table)
	r.simple = !other && m.SrcLength == 0 && m.Tos == 0
	if a.Table != 0 {
		r.table = a.Table
	}
	if g, ok := netip.AddrFromSlice(a.Gateway); ok {
		r.gw = g.Unmap()
	}
	dst := netip.IPv4Unspecified()
	if v6 {
		dst = netip.IPv6Unspecified()
	}
	if d, ok := netip.AddrFromSlice(a.Dst); ok {
		dst = d.Unmap()
	}
	if r.table != rtTableLocal && r.table != rtTableMain && r.table != rtTableDef {
		return r, false, nil
	}
	r.dst = netip.PrefixFrom(dst, int(m.DstLength)).Masked()
	return r, r.dst.IsValid(), nil
}
