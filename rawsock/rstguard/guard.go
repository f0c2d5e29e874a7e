package rstguard

import (
	"errors"
	"sync"

	"github.com/synprobe/synprobe/rawsock"
	"github.com/synprobe/synprobe/rawsock/internal/nl"
)

// TablePrefix starts the name of every nftables table synprobe creates:
// TablePrefix + "<pid>_<8 hex digits>".
const TablePrefix = nl.TablePrefix

// Config describes what a Guard drops.
type Config struct {
	// PortLo and PortHi are this run's source ports, both included: the
	// guard drops TCP RSTs from these ports...
	PortLo, PortHi uint16
	// ...or, if set, from the ports of these ranges (a rawsock.PortBlock's
	// Ranges), one rule each: never from the ports between them, which
	// other sockets hold...
	Ranges []rawsock.PortRange
	// ...unless they carry this packet mark, which rawsock.Config.Mark
	// sets on our own send sockets. It must not be zero.
	Mark uint32
	// NoOwner skips the owner flag and creates the ordinary table that
	// kernels older than 5.12 get. For tests.
	NoOwner bool
	// NoLog leaves the log expression out of the rules: Dropped then
	// reads their counters, which needs CAP_NET_ADMIN. For a guard whose
	// drops nobody counts (a probe.Client's): the log is a message per
	// RST dropped, which a goroutine reads (at 500 SYN-ACKs a second,
	// some 1.5% of a core).
	NoLog bool
}

// Guard keeps the kernel's automatic RSTs for our source ports off the
// wire. It is an nftables table in the inet family (IPv4 and IPv6) with an
// output-hook chain and one rule per port range:
//
//	meta l4proto tcp tcp flags & rst == rst tcp sport PORTLO-PORTHI meta mark != MARK log group G queue-threshold 1 counter drop
//
// (without the log expression where the kernel has none, or with NoLog).
//
// The netlink socket that created the table stays open until Close. Where
// the kernel supports it (Linux 5.12) the table has the owner flag: the
// kernel deletes it when that socket closes, however the process ends,
// and no other process can change or delete it meanwhile.
//
// The methods may be called from any goroutine.
type Guard struct {
	mu       sync.Mutex
	name     string
	owned    bool
	guardSys // the platform's part
}

// New creates the table in the calling thread's network namespace.
// It needs CAP_NET_ADMIN; without it the error wraps os.ErrPermission. If
// the kernel refuses the owner flag it creates an ordinary table instead
// (Owned reports which), which only Close or CleanupTables removes.
func New(cfg Config) (*Guard, error) {
	if len(cfg.Ranges) == 0 {
		cfg.Ranges = []rawsock.PortRange{{Lo: cfg.PortLo, Hi: cfg.PortHi}}
	}
	if err := rawsock.CheckRanges(cfg.Ranges); err != nil {
		return nil, err
	}
	if cfg.Mark == 0 {
		return nil, errors.New("rawsock: the RST guard needs a non-zero packet mark")
	}
	return newGuard(cfg)
}

// Owned reports whether the table has the owner flag, so that the kernel
// deletes it when the guard's socket closes, SIGKILL included.
func (g *Guard) Owned() bool { return g.owned }

// Table returns the table's name; its family is inet.
func (g *Guard) Table() string { return g.name }

// Dropped returns how many of the kernel's RSTs the guard has kept off
// the wire so far: the packets its rules logged to the guard's own
// nfnetlink_log group, which needs no privilege to read (the process may
// have dropped them all since New). Where the kernel cannot log
// to a group it is the sum of the rules' counters, and reading them
// needs CAP_NET_ADMIN.
func (g *Guard) Dropped() (packets uint64, err error) { return g.dropped() }

// Close deletes the table and closes the netlink sockets. An owned table
// goes with its socket, which the kernel deletes as the socket closes,
// without any privilege (the process may have dropped them all since
// New); an ordinary one is deleted by a request, which needs
// CAP_NET_ADMIN. Further calls do nothing.
func (g *Guard) Close() error { return g.close() }

// CleanupTables deletes the tables that New created without the
// owner flag in runs that have ended without Close (killed, or crashed),
// in the calling thread's network namespace, and returns their names. A
// table counts as left over when the process whose pid its name carries
// no longer runs; owned tables are skipped, since the kernel removes those
// itself. It needs CAP_NET_ADMIN.
//
// The pid is the one of the creating process's pid namespace: a run in
// another pid namespace that shares this network namespace may look dead.
func CleanupTables() (removed []string, err error) { return cleanupTables() }
