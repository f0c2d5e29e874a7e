package main

import (
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/synprobe/synprobe/internal/cli"
	"github.com/synprobe/synprobe/probe"
)

// Least privilege (docs/privileges.md). Whoever runs synprobe, the run
// keeps no capability once its sockets, packet ring and RST guard exist
// (cli.DropPrivileges), and a root run leaves uid 0 too. A caller other than
// root (decided from the real uid: a user running a setcap'd binary) gets
// only what is safe for any local user: checkCaller refuses the rest.

// minUserInterval is the shortest -i a caller other than root may ask
// for: iputils ping's limit for users ("cannot flood").
const minUserInterval = 2 * time.Millisecond

// privilegeRule ends every refusal of a caller other than root.
const privilegeRule = "a caller other than root gets only what is safe for any local user (docs/privileges.md)"

// checkCaller applies the rules for callers other than root, and plans
// what a root run becomes after set-up. Its errors are usageErrors: exit 2.
func checkCaller(o *options, sys network) error {
	if o.source.IsValid() && (o.source.IsUnspecified() || o.source.IsMulticast()) {
		return usagef("-S %v: not a unicast address", o.source)
	}
	if uid := sys.realUID(); uid != 0 {
		o.restricted = true
		switch {
		case o.mark != defaultMark:
			return usagef("--mark %#x: only synprobe's own mark %#x; %s", o.mark, uint32(defaultMark), privilegeRule)
		case o.intervalSet && o.interval < minUserInterval:
			return usagef("-i %v: no less than %v between rounds, as ping allows users; %s", o.interval, minUserInterval, privilegeRule)
		}
		if _, err := cli.PlanCaller(uid, o.user, o.keepRoot, sys.getenv, cli.LookupAccount); err != nil {
			return err
		}
		if o.source.IsValid() {
			addrs, err := sys.hostAddrs()
			if err != nil {
				return &failure{fmt.Errorf("-S %v: cannot list this host's addresses: %v", o.source, err)}
			}
			if !isHostAddr(o.source, addrs) {
				return usagef("-S %v: not an address of this host; only the host's own source addresses: %s", o.source, privilegeRule)
			}
		}
		o.source = o.source.WithZone("") // answers come to the address alone
		return nil
	}
	// Root may send from any address the kernel takes as local (a local
	// route such as AnyIP's, besides the interfaces' addresses); not
	// from others, whose answers would never reach synprobe: every probe
	// would be called filtered.
	if o.source.IsValid() && !sys.isLocal(o.source) {
		return usagef("-S %v: not an address of this host: its answers would never reach synprobe (ip address lists the host's addresses)", o.source)
	}
	// A link-local source's zone names its interface, which isLocal
	// checked; the answers come to the address alone.
	o.source = o.source.WithZone("")
	d, err := cli.PlanCaller(0, o.user, o.keepRoot, sys.getenv, cli.LookupAccount)
	if err != nil {
		return err
	}
	o.drop = d
	return nil
}

// isHostAddr reports whether a is one of addrs (the host's interface
// addresses), zones aside.
func isHostAddr(a netip.Addr, addrs []netip.Addr) bool {
	a = a.WithZone("").Unmap()
	for _, h := range addrs {
		if h.WithZone("").Unmap() == a {
			return true
		}
	}
	return false
}

// endSetup is called once everything that needs a privilege exists:
// sockets, packet ring and sender, RST guard and watch, held ports. in
// describes the client of a ping, with its RST guard if it has one.
//
// An owned guard table (Linux 5.12) goes when its netlink socket closes,
// which needs no privilege. An ordinary one, all that older kernels
// have, can only be deleted with CAP_NET_ADMIN: rather than leave its
// rule behind to drop other programs' RSTs, such a run keeps its
// privileges, and says so.
func endSetup(o *options, sys network, in *probe.ClientInfo, stderr io.Writer) error {
	if in != nil && in.GuardTable != "" && !in.GuardOwned {
		fmt.Fprintf(stderr, "synprobe: warning: this kernel has no owned nftables tables (Linux < 5.12): synprobe keeps its privileges to delete table inet %s at exit\n", in.GuardTable)
		return nil
	}
	if err := sys.dropPrivileges(o.drop); err != nil {
		return &failure{err}
	}
	return nil
}
