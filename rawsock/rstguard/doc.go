// Package rstguard keeps the kernel's own RSTs for a prober's source
// ports off the wire while the prober completes handshakes the kernel
// knows nothing of (Guard), counts those that escape anyway (Watch), and
// removes the tables of runs that died (CleanupTables). It is rawsock's
// companion: the ports it guards are a rawsock.PortBlock's ranges, and
// the mark that lets our own segments pass is rawsock.Config.Mark's.
// Linux only: elsewhere New and NewWatch fail.
//
// When a SYN-ACK answers a raw SYN, the kernel has no socket for it and
// replies with a RST of its own within microseconds; it does the same for
// every later segment of that connection. Modes that complete the
// handshake themselves need those RSTs kept off the wire, while the RSTs
// and ACKs synprobe sends pass.
//
// New installs an nftables table in the inet family, so one rule
// covers IPv4 and IPv6, named TablePrefix + "<pid>_<8 hex digits>", with a
// filter chain on the output hook and a rule per range of source ports
// (Config.Ranges, a rawsock.PortBlock's Ranges):
//
//	meta l4proto tcp tcp flags & rst == rst tcp sport PORTLO-PORTHI meta mark != MARK log group G queue-threshold 1 counter drop
//
// Our own segments carry MARK, set with SO_MARK on the send sockets
// (rawsock.Config.Mark), so only the kernel's RSTs from exactly this
// run's source ports are dropped, never those of the sockets that hold
// the ports between its ranges. Dropped counts the packets the rules log
// to G, an nfnetlink_log group bound to a socket of the guard's own,
// which needs no privilege to read; on kernels without the log
// expression it sums the rules' counters, which needs CAP_NET_ADMIN.
// The rule acts on output only: a drop on input would also hide replies
// from the raw receive sockets.
//
// The table is written as one nfnetlink batch, encoded with
// github.com/mdlayher/netlink's AttributeEncoder (google/nftables cannot
// set the owner flag): one transaction creates table, chain and rules,
// and every message is acknowledged and checked, errors naming the message
// the kernel refused. Every request waits at most 5 s for its answer,
// through the netlink client this package shares with rawsock. Errors
// are *net.OpError values of network "rawsock", as rawsock's are; without
// CAP_NET_ADMIN they wrap os.ErrPermission.
//
// On Linux 5.12 and later the table has the owner flag: it belongs to the
// guard's netlink socket, which stays open until Close (and is not
// inherited by child processes). The kernel deletes the table when that
// socket closes, however the process ends, SIGKILL included; meanwhile
// other processes cannot change or delete it, and `nft flush ruleset`
// leaves it alone. On older kernels, which refuse the flag, New
// falls back to an ordinary table (Owned reports false): Close deletes it,
// and CleanupTables (synprobe --cleanup) deletes those left behind by runs
// that no longer exist. By hand:
//
//	nft list tables | grep synprobe_
//	nft delete table inet synprobe_<pid>_<hex>
//
// The guard acts on the network namespace of the thread that created it.
//
// NewWatchPorts checks that it works: an AF_PACKET socket on every
// interface, loopback included, whose BPF filter accepts outgoing IPv4 and
// IPv6 TCP segments with the RST flag, a source port in one of the run's
// ranges and a packet mark other than ours. Packet sockets see outgoing packets
// after netfilter's output and postrouting hooks, so the RSTs the guard
// drops never reach it: Escaped counts the kernel's RSTs that left anyway,
// because there is no guard, or it is gone (its table deleted) or in
// another network namespace. RSTs that pass the filter while the socket's
// queue is full are counted from its statistics. Like any packet tap, the
// watch has the kernel clone every outgoing packet for it; on veth at
// 250k packets per second that cost nothing measurable. It also counts
// unmarked RSTs from those ports that the host forwards or that other
// local sockets send, one more reason to use ports outside
// net.ipv4.ip_local_port_range. The watch, too, acts on the network
// namespace of the thread that created it.
package rstguard
