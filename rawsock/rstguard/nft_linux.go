//go:build linux

package rstguard

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/internal/nl"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// Netfilter values that golang.org/x/sys/unix does not (yet) define.
const (
	nftTableFlagOwner = 0x2 // NFT_TABLE_F_OWNER, Linux 5.12
	nftaTableUserdata = 0x6 // NFTA_TABLE_USERDATA, Linux 5.10
	nfDrop            = 0   // NF_DROP
	nfAccept          = 1   // NF_ACCEPT
	udataComment      = 0   // NFTNL_UDATA_TABLE_COMMENT: libnftnl's TLV for a table comment
)

const guardChain = "out" // the guard table's only chain

// guardPriority is the guard chain's place on the output hook: before
// every chain of the standard priorities (raw -300, conntrack -200,
// mangle -150, filter 0), so that it sees the marks the sockets set. A
// rule that rewrites marks on output (a connmark restore at mangle, say)
// would otherwise take our mark off our own RSTs before the guard saw
// them, and the guard would drop them: ack probes would leave their
// connections open on the servers.
const guardPriority = -450

// guardSys is a Guard's Linux part: its netlink sockets.
type guardSys struct {
	c   *nl.NFConn // nil after Close
	log *dropLog   // nil: Dropped reads the rules' counters
}

// newGuard is New on Linux; cfg is checked, its Ranges set.
func newGuard(cfg Config) (*Guard, error) {
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("rawsock: %w", err)
	}
	name := fmt.Sprintf("%s%d_%08x", TablePrefix, os.Getpid(), binary.BigEndian.Uint32(rnd[:]))

	c, err := nl.DialNetfilter()
	if err != nil {
		return nil, err
	}
	// The rules log what they drop to a group of our own, so that
	// Dropped needs no privilege; without nfnetlink_log, Dropped reads
	// the counters, which needs CAP_NET_ADMIN.
	var (
		group uint16
		log   *dropLog
	)
	if !cfg.NoLog {
		if l, err := newDropLog(); err == nil {
			log, group = l, l.group
		}
	}
	owned := !cfg.NoOwner
	err = batch(c, unix.NFPROTO_INET, guardMessages(name, cfg, owned, group)...)
	var ne *nl.MsgError
	if owned && errors.As(err, &ne) && ne.MsgType == nl.NFTType(unix.NFT_MSG_NEWTABLE) &&
		(ne.Errno == unix.EOPNOTSUPP || ne.Errno == unix.EINVAL) {
		// Before Linux 5.12 the only table flag was "dormant".
		owned = false
		err = batch(c, unix.NFPROTO_INET, guardMessages(name, cfg, false, group)...)
	}
	if err != nil && log != nil && errors.As(err, &ne) && ne.MsgType == nl.NFTType(unix.NFT_MSG_NEWRULE) {
		// The kernel has no "log" expression or logger for it: count
		// with the counters alone.
		log.Close()
		log, group = nil, 0
		err = batch(c, unix.NFPROTO_INET, guardMessages(name, cfg, owned, 0)...)
	}
	if err != nil {
		c.Close()
		if log != nil {
			log.Close()
		}
		return nil, err
	}
	return &Guard{name: name, owned: owned, guardSys: guardSys{c: c, log: log}}, nil
}

func (g *Guard) dropped() (packets uint64, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.c == nil {
		return 0, &net.OpError{Op: "nftables", Net: "rawsock", Err: net.ErrClosed}
	}
	if g.log != nil {
		return g.log.Count(), nil
	}
	return g.counters()
}

// counters returns the sum of the rules' packet counters. g.mu is held.
func (g *Guard) counters() (packets uint64, err error) {
	found := false
	req, err := nl.NFMessage(nl.NFTType(unix.NFT_MSG_GETRULE), 0, unix.NFPROTO_INET, 0, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_RULE_TABLE, g.name)
		ae.String(unix.NFTA_RULE_CHAIN, guardChain)
	})
	if err != nil {
		return 0, err
	}
	err = g.c.Dump(req, func(m netlink.Message) error {
		if m.Header.Type != netlink.HeaderType(nl.NFTType(unix.NFT_MSG_NEWRULE)) {
			return nil
		}
		n, ok, err := ruleCounter(m, g.name)
		if ok {
			packets += n
			found = true
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("rawsock: nftables table %s has no counter rule", g.name)
	}
	return packets, nil
}

func (g *Guard) close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.c == nil {
		return nil
	}
	var err error
	if !g.owned {
		err = batch(g.c, unix.NFPROTO_INET, delTableMsg(g.name))
		if errors.Is(err, unix.ENOENT) {
			err = nil // somebody deleted it already (nft flush ruleset)
		}
	}
	g.c.Close()
	g.c = nil
	if g.log != nil {
		g.log.Close()
	}
	return err
}

// cleanupTables is CleanupTables on Linux.
func cleanupTables() (removed []string, err error) {
	c, err := nl.DialNetfilter()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var stale []string
	req, err := nl.NFMessage(nl.NFTType(unix.NFT_MSG_GETTABLE), 0, unix.NFPROTO_INET, 0, nil)
	if err != nil {
		return nil, err
	}
	err = c.Dump(req, func(m netlink.Message) error {
		if m.Header.Type != netlink.HeaderType(nl.NFTType(unix.NFT_MSG_NEWTABLE)) {
			return nil
		}
		name, flags, err := tableInfo(m)
		if err != nil || flags&nftTableFlagOwner != 0 {
			return err
		}
		sm := nl.GuardTableName.FindStringSubmatch(name)
		if sm == nil {
			return nil
		}
		pid, err := strconv.Atoi(sm[1])
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			return nil
		}
		stale = append(stale, name)
		return nil
	})
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, name := range stale {
		err := batch(c, unix.NFPROTO_INET, delTableMsg(name))
		switch {
		case err == nil:
			removed = append(removed, name)
		case errors.Is(err, unix.ENOENT): // a concurrent cleanup was faster
		default:
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

// processAlive reports whether pid runs; a zombie does not count.
func processAlive(pid int) bool {
	if err := unix.Kill(pid, 0); err != nil && err != unix.EPERM {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// "pid (comm) state ..."; comm may itself contain ") ".
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z' && stat[i+2] != 'X'
	}
	return true
}

// guardMessages returns the batch that creates the guard's table, chain
// and rules; a non-zero group has the rules log what they drop to it.
func guardMessages(name string, cfg Config, owner bool, group uint16) []nftMsg {
	var flags uint32
	if owner {
		flags = nftTableFlagOwner
	}
	ranges := cfg.Ranges
	if len(ranges) == 0 {
		ranges = []rawsock.PortRange{{Lo: cfg.PortLo, Hi: cfg.PortHi}}
	}
	comment := fmt.Sprintf("synprobe pid %d: drops the kernel's TCP RSTs from ports %s", os.Getpid(), rawsock.FormatRanges(ranges))
	msgs := []nftMsg{
		newTableMsg(name, flags, comment),
		{typ: unix.NFT_MSG_NEWCHAIN, flags: netlink.Create | netlink.Excl, attrs: func(ae *netlink.AttributeEncoder) {
			ae.String(unix.NFTA_CHAIN_TABLE, name)
			ae.String(unix.NFTA_CHAIN_NAME, guardChain)
			ae.Nested(unix.NFTA_CHAIN_HOOK, func(ae *netlink.AttributeEncoder) error {
				ae.Uint32(unix.NFTA_HOOK_HOOKNUM, unix.NF_INET_LOCAL_OUT)
				prio := int32(guardPriority)
				ae.Uint32(unix.NFTA_HOOK_PRIORITY, uint32(prio))
				return nil
			})
			ae.Uint32(unix.NFTA_CHAIN_POLICY, nfAccept)
			ae.String(unix.NFTA_CHAIN_TYPE, "filter")
		}},
	}
	for _, r := range ranges {
		msgs = append(msgs, nftMsg{typ: unix.NFT_MSG_NEWRULE, flags: netlink.Create | netlink.Append, attrs: func(ae *netlink.AttributeEncoder) {
			ae.String(unix.NFTA_RULE_TABLE, name)
			ae.String(unix.NFTA_RULE_CHAIN, guardChain)
			ae.Nested(unix.NFTA_RULE_EXPRESSIONS, func(ae *netlink.AttributeEncoder) error {
				guardRule(ae, r.Lo, r.Hi, cfg.Mark, group)
				return nil
			})
		}})
	}
	return msgs
}

// newTableMsg creates table name in the batch's family; comment, if not
// empty, is stored as nft's table comment.
func newTableMsg(name string, flags uint32, comment string) nftMsg {
	return nftMsg{typ: unix.NFT_MSG_NEWTABLE, flags: netlink.Create | netlink.Excl, attrs: func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_TABLE_NAME, name)
		ae.Uint32(unix.NFTA_TABLE_FLAGS, flags)
		if comment != "" {
			if len(comment) > 127 {
				comment = comment[:127]
			}
			// libnftnl's user data: one TLV (type, length, value), the
			// value NUL-terminated.
			ud := append([]byte{udataComment, byte(len(comment) + 1)}, comment...)
			ae.Bytes(nftaTableUserdata, append(ud, 0))
		}
	}}
}

func delTableMsg(name string) nftMsg {
	return nftMsg{typ: unix.NFT_MSG_DELTABLE, attrs: func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_TABLE_NAME, name)
	}}
}

// guardRule encodes the rule's expressions: each loads a value into
// register 1 or tests it; a failed test ends the rule for the packet.
//
//	meta l4proto tcp         meta load l4proto; cmp eq 6
//	tcp flags & rst == rst   payload load 1 byte at transport+13; bitwise & 0x04 ^ 0; cmp eq 0x04
//	tcp sport lo-hi          payload load 2 bytes at transport+0; range eq lo hi (big-endian)
//	meta mark != mark        meta load mark; cmp neq mark (host byte order)
//	log group G              log to nfnetlink_log group G, one message a packet (if group != 0)
//	counter drop             counter; immediate verdict NF_DROP
func guardRule(ae *netlink.AttributeEncoder, lo, hi uint16, mark uint32, group uint16) {
	const reg = unix.NFT_REG_1
	// expr encodes one element of the expression list.
	expr := func(name string, body func(ae *netlink.AttributeEncoder)) {
		ae.Nested(unix.NFTA_LIST_ELEM, func(ae *netlink.AttributeEncoder) error {
			ae.String(unix.NFTA_EXPR_NAME, name)
			ae.Nested(unix.NFTA_EXPR_DATA, func(ae *netlink.AttributeEncoder) error {
				body(ae)
				return nil
			})
			return nil
		})
	}
	// data encodes an nft_data value: typ { NFTA_DATA_VALUE { v } }.
	data := func(ae *netlink.AttributeEncoder, typ uint16, v []byte) {
		ae.Nested(typ, func(ae *netlink.AttributeEncoder) error {
			ae.Bytes(unix.NFTA_DATA_VALUE, v)
			return nil
		})
	}
	expr("meta", func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NFTA_META_DREG, reg)
		ae.Uint32(unix.NFTA_META_KEY, unix.NFT_META_L4PROTO)
	})
	expr("cmp", func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NFTA_CMP_SREG, reg)
		ae.Uint32(unix.NFTA_CMP_OP, unix.NFT_CMP_EQ)
		data(ae, unix.NFTA_CMP_DATA, []byte{unix.IPPROTO_TCP})
	})
	expr("payload", func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NFTA_PAYLOAD_DREG, reg)
		ae.Uint32(unix.NFTA_PAYLOAD_BASE, unix.NFT_PAYLOAD_TRANSPORT_HEADER)
		ae.Uint32(unix.NFTA_PAYLOAD_OFFSET, wire.TCPFlagsOffset)
		ae.Uint32(unix.NFTA_PAYLOAD_LEN, 1)
	})
	expr("bitwise", func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NFTA_BITWISE_SREG, reg)
		ae.Uint32(unix.NFTA_BITWISE_DREG, reg)
		ae.Uint32(unix.NFTA_BITWISE_LEN, 1)
		data(ae, unix.NFTA_BITWISE_MASK, []byte{byte(wire.FlagRst)})
		data(ae, unix.NFTA_BITWISE_XOR, []byte{0})
	})
	expr("cmp", func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NFTA_CMP_SREG, reg)
		ae.Uint32(unix.NFTA_CMP_OP, unix.NFT_CMP_EQ)
		data(ae, unix.NFTA_CMP_DATA, []byte{byte(wire.FlagRst)})
	})
	expr("payload", func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NFTA_PAYLOAD_DREG, reg)
		ae.Uint32(unix.NFTA_PAYLOAD_BASE, unix.NFT_PAYLOAD_TRANSPORT_HEADER)
		ae.Uint32(unix.NFTA_PAYLOAD_OFFSET, wire.TCPSrcPortOffset)
		ae.Uint32(unix.NFTA_PAYLOAD_LEN, 2)
	})
	if lo == hi {
		expr("cmp", func(ae *netlink.AttributeEncoder) {
			ae.Uint32(unix.NFTA_CMP_SREG, reg)
			ae.Uint32(unix.NFTA_CMP_OP, unix.NFT_CMP_EQ)
			data(ae, unix.NFTA_CMP_DATA, binary.BigEndian.AppendUint16(nil, lo))
		})
	} else {
		expr("range", func(ae *netlink.AttributeEncoder) {
			ae.Uint32(unix.NFTA_RANGE_SREG, reg)
			ae.Uint32(unix.NFTA_RANGE_OP, unix.NFT_RANGE_EQ)
			data(ae, unix.NFTA_RANGE_FROM_DATA, binary.BigEndian.AppendUint16(nil, lo))
			data(ae, unix.NFTA_RANGE_TO_DATA, binary.BigEndian.AppendUint16(nil, hi))
		})
	}
	expr("meta", func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NFTA_META_DREG, reg)
		ae.Uint32(unix.NFTA_META_KEY, unix.NFT_META_MARK)
	})
	expr("cmp", func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NFTA_CMP_SREG, reg)
		ae.Uint32(unix.NFTA_CMP_OP, unix.NFT_CMP_NEQ)
		data(ae, unix.NFTA_CMP_DATA, binary.NativeEndian.AppendUint32(nil, mark)) // the mark register is in host order
	})
	if group != 0 {
		expr("log", func(ae *netlink.AttributeEncoder) {
			ae.Uint16(unix.NFTA_LOG_GROUP, group)
			ae.Uint16(unix.NFTA_LOG_QTHRESHOLD, 1)
		})
	}
	expr("counter", func(ae *netlink.AttributeEncoder) {
		ae.Uint64(unix.NFTA_COUNTER_BYTES, 0)
		ae.Uint64(unix.NFTA_COUNTER_PACKETS, 0)
	})
	expr("immediate", func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NFTA_IMMEDIATE_DREG, unix.NFT_REG_VERDICT)
		ae.Nested(unix.NFTA_IMMEDIATE_DATA, func(ae *netlink.AttributeEncoder) error {
			ae.Nested(unix.NFTA_DATA_VERDICT, func(ae *netlink.AttributeEncoder) error {
				ae.Uint32(unix.NFTA_VERDICT_CODE, nfDrop)
				return nil
			})
			return nil
		})
	})
}

// tableInfo reads the name and flags of a table message.
func tableInfo(m netlink.Message) (name string, flags uint32, err error) {
	ad, err := nl.NFDecoder(m)
	if err != nil {
		return "", 0, err
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_TABLE_NAME:
			name = ad.String()
		case unix.NFTA_TABLE_FLAGS:
			flags = ad.Uint32()
		}
	}
	return name, flags, ad.Err()
}

// ruleCounter finds the packet count of the counter expression in a rule
// message of table; ok is false if the rule has none or is another
// table's.
func ruleCounter(m netlink.Message, table string) (packets uint64, ok bool, err error) {
	ad, err := nl.NFDecoder(m)
	if err != nil {
		return 0, false, err
	}
	var tbl string
	var exprs []byte
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_RULE_TABLE:
			tbl = ad.String()
		case unix.NFTA_RULE_EXPRESSIONS:
			exprs = ad.Bytes()
		}
	}
	if err := ad.Err(); err != nil || tbl != table {
		return 0, false, err
	}
	ad, err = netlink.NewAttributeDecoder(exprs)
	if err != nil {
		return 0, false, err
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() != unix.NFTA_LIST_ELEM {
			continue
		}
		ad.Nested(func(ed *netlink.AttributeDecoder) error {
			var name string
			for ed.Next() {
				switch ed.Type() {
				case unix.NFTA_EXPR_NAME:
					name = ed.String()
				case unix.NFTA_EXPR_DATA:
					if name != "counter" { // the name comes first
						continue
					}
					ed.Nested(func(cd *netlink.AttributeDecoder) error {
						for cd.Next() {
							if cd.Type() == unix.NFTA_COUNTER_PACKETS {
								packets, ok = cd.Uint64(), true
							}
						}
						return nil
					})
				}
			}
			return nil
		})
	}
	return packets, ok, ad.Err()
}

// nftMsg is one nftables request of a batch.
type nftMsg struct {
	typ   uint16              // NFT_MSG_*
	flags netlink.HeaderFlags // besides Request and Acknowledge
	attrs func(ae *netlink.AttributeEncoder)
}

// batchMessages frames msgs between a batch begin and a batch end for the
// nftables subsystem. Each message asks for an acknowledgement.
func batchMessages(family uint8, msgs []nftMsg) ([]netlink.Message, error) {
	out := make([]netlink.Message, 0, len(msgs)+2)
	m, err := nl.NFMessage(unix.NFNL_MSG_BATCH_BEGIN, netlink.Request, unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES, nil)
	if err != nil {
		return nil, err
	}
	out = append(out, m)
	for _, nm := range msgs {
		m, err := nl.NFMessage(nl.NFTType(nm.typ), netlink.Request|netlink.Acknowledge|nm.flags, family, 0, nm.attrs)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	m, err = nl.NFMessage(unix.NFNL_MSG_BATCH_END, netlink.Request, unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES, nil)
	if err != nil {
		return nil, err
	}
	return append(out, m), nil
}

// batch sends msgs as one transaction and waits for every
// acknowledgement. The first failure is returned, naming its message.
func batch(c *nl.NFConn, family uint8, msgs ...nftMsg) error {
	nms, err := batchMessages(family, msgs)
	if err != nil {
		return err
	}
	seq := c.NextSeq(len(nms))
	if err := c.Send(seq, nms...); err != nil {
		return err
	}
	last := seq + uint32(len(nms)) - 1
	var first error
	acked := 0
	err = c.Receive(seq, last, func(a nl.Answer) (bool, error) {
		if a.M.Header.Type != netlink.Error {
			return false, nil
		}
		if a.Errno != 0 && first == nil {
			first = nl.KernelError(uint16(nms[a.M.Header.Sequence-seq].Header.Type), a.Errno, a.Text)
		}
		if a.M.Header.Sequence == seq || a.M.Header.Sequence == last {
			// The batch as a whole was refused (no CAP_NET_ADMIN,
			// commit failure): no per-message answers follow.
			return true, nil
		}
		acked++
		return acked == len(msgs), nil
	})
	if first != nil {
		return first
	}
	return err
}
