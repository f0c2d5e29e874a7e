// Package rawsock crafts TCP SYN probes for raw IPv4 and IPv6 sockets and
// parses the replies: SYN-ACKs, RSTs and ICMP errors.
//
// The code in this package that does not open sockets is portable: header
// views, checksums, packet building and parsing, SYN cookies and BPF
// program builders build and test on every platform, without privileges.
// The rest works on Linux. Its API is declared once, in portable files,
// as in mdlayher/packet: only unexported functions differ per platform
// (*_linux.go, *_others.go), and off Linux they return an error saying
// "rawsock: not implemented on GOOS" (TestLayout keeps it so).
//
// # Packets
//
// IPv4, IPv6, TCP, ICMPv4 and ICMPv6 are views of a byte slice, in the
// style of gVisor's header package: accessors and setters read and write
// fields in place, and exported offset constants name the fields. The
// accessors trust the length of the slice; validation happens once, in
// Parse.
//
// Segment.Build writes a whole packet (IP header, TCP header, options and
// payload, with checksums) into a caller-owned buffer, and Parse reads a
// whole inbound IP packet into a reused Packet. Neither allocates, so a
// probe loop can run without garbage. Parse understands TCP segments and
// the ICMP and ICMPv6 errors a probe can cause (destination unreachable,
// time exceeded, parameter problem, packet too big), whose quoted header
// identifies the probe; it skips IPv6 extension headers, and it reports
// truncated, malformed and unsupported packets with ErrTruncated,
// ErrMalformed and ErrUnsupported. It never panics, whatever the input,
// and refuses what the receiving kernel would drop (ErrChecksum; see
// Checksums below).
//
// SYNOptions.Encode writes SYN options in the order and layout of a Linux
// client, so probes look like ordinary connection attempts, and
// ParseSYNOptions reads the options of a SYN-ACK, tolerating garbage.
// ICMPReason gives ICMP errors stable names, the same for IPv4 and IPv6
// where nftables' icmpx reject codes treat them as the same reason.
//
// # Checksums
//
// Checksum and PseudoHeaderChecksum return 16-bit ones'-complement sums,
// folded but not complemented, so they chain: the checksum of a TCP segment
// is
//
//	^Checksum(segment, PseudoHeaderChecksum(ProtocolTCP, src, dst, uint16(len(segment))))
//
// computed with the checksum field set to zero. Checksum adds 64 bits at a
// time.
//
// Parse verifies what the receiving kernel verifies: the IPv4 header
// checksum, the TCP checksum and the ICMP or ICMPv6 checksum, so that a
// corrupt segment is never taken for an answer. A sender on this host
// (over loopback or veth) leaves its TCP checksum to the device: the field
// holds the pseudo-header sum alone (CHECKSUM_PARTIAL), the kernel does not
// verify it, and Parse takes it too. Where the kernel tells, the check is
// exact: ParseChecksums takes what a packet socket's tp_status says, the
// Ring drops a partial-looking checksum the kernel did not mark
// TP_STATUS_CSUMNOTREADY unless it verifies in full, and the IPv6
// TCP receive socket asks the kernel to verify (IPV6_CHECKSUM). An IPv4 raw
// socket tells nothing, so there a forged segment whose checksum field
// equals its pseudo-header sum passes; a random corruption does so with the
// odds of a 16-bit checksum, 2^-16. Quoted packets are not verified: ICMP
// cuts them short. TestIntegrationChecksumPaths measures what each path
// delivers.
//
// # Cookies
//
// A probe's initial sequence number is a cookie: Cookie.ISN hashes the
// addresses, ports and a salt with SipHash-2-4 under a key chosen at random
// for each run (NewRandomCookie). A SYN-ACK must acknowledge ISN+1, a RST
// in reply to a SYN acknowledges ISN+1 too, and an ICMP error quotes the
// probe's sequence number (Quote.Seq, when Quote.HasSeq): recomputing the
// ISN checks that a reply answers one of our probes, without a table
// lookup, and rejects replies to an earlier run or forged by anyone who
// cannot see the probes.
//
// # BPF filters
//
// TCPFilterIPv4, TCPFilterIPv6, ICMPFilterIPv4 and ICMPFilterIPv6 build
// classic BPF programs (golang.org/x/net/bpf) to attach to the raw
// receive sockets with SO_ATTACH_FILTER, so that the kernel only queues
// replies to our source ports: TCP segments whose destination port is in
// the probe range, and ICMP errors quoting a TCP segment whose source port
// is. The IPv4 programs see the packet from the IPv4 header and cope with
// IP options; the IPv6 programs see the TCP or ICMPv6 header, as AF_INET6
// raw sockets deliver no IP header. Accepted packets are kept whole. The
// programs are tested in the x/net/bpf virtual machine.
//
// # Scans
//
// Scans send and receive at line rate, where the costs per packet count.
// PacketSender sends a Batch of probes as Ethernet frames straight to the
// next hop with one sendmmsg, skipping the host's IP output: only where
// DirectPath shows that sends exactly what the IP output would (one
// unicast route for every target, nothing hooked into the output path).
// Ring receives the answers through an AF_PACKET socket with a TPACKET_V3
// ring mapped into memory: the kernel writes packets into blocks and hands
// over a block at a time, so reading costs no system call, socket queue,
// lock or wake-up per packet, which on a raw socket make up most of the
// receiving. Its BPF filter is the Conn's filters behind a check of the
// destination address, since a tap sees every packet on the interface; it
// drops outgoing packets (PACKET_IGNORE_OUTGOING spares the kernel cloning
// our own probes for it), unless RingConfig.Outgoing asks for our probes
// as they leave: their times are the probes' transmit stamps, taken where
// a capture takes them, each ahead of the answers to it. Each packet
// carries the kernel's receive time.
//
// Without a ring, a scan's transmit stamps come from the send sockets'
// error queues, at no system call per probe: Batch.SetID gives each packet
// an id, SendBatch asks the kernel for that packet's scheduler stamp with
// its id (SCM_TS_OPT_ID, Linux 6.13), and ReadTxStamps reads the stamps
// back in bulk with one recvmmsg, to be matched by id, never by order.
// Ring.Pending tells how full the ring is, so a sender can wait for a
// reader that has fallen behind rather than lose answers, and
// Ring.Dropped counts those lost anyway. A Conn opened with SendOnly sends
// without receive sockets beside a Ring.
//
// Setting up the ring, and closing any packet socket, waits for an RCU
// grace period in the kernel: some 10 ms each, about 30 ms in all for a
// ring. Small scans are better off with the raw sockets.
//
// # Source ports
//
// ReservePorts takes a block of source ports through the kernel: one TCP
// socket per port, bound to the wildcard address, neither listening nor
// connected, without SO_REUSEADDR or SO_REUSEPORT. It is AF_INET6 with
// IPV6_V6ONLY off, which holds the port for IPv4 too (whatever
// net.ipv6.bindv6only and disable_ipv6 say), or AF_INET where the kernel
// has no IPv6. While the PortBlock is open the kernel refuses its ports to
// every other bind, whatever the address, family or socket options, to
// connect() from an explicit local port, to connect()'s own choice of an
// ephemeral port, and to other synprobe runs; it changes nothing on the
// wire, since no segment ever finds such a socket (the kernel still
// answers our SYN-ACKs with RST). Raw sockets are not held back: they send
// from any port. ReservePorts tries the candidates in turn from a random
// start and skips the ports other sockets hold, so a block may have holes:
// Ranges gives the runs of consecutive ports, which NewRSTGuard and
// NewRSTWatchPorts take. Each port costs a file descriptor; the block
// takes no more than RLIMIT_NOFILE leaves room for. ReservePort holds one
// given port. Ports below net.ipv4.ip_unprivileged_port_start need
// CAP_NET_BIND_SERVICE.
//
// # RST suppression
//
// When a SYN-ACK answers a raw SYN, the kernel has no socket for it and
// replies with a RST of its own within microseconds; it does the same for
// every later segment of that connection. Modes that complete the
// handshake themselves need those RSTs kept off the wire, while the RSTs
// and ACKs synprobe sends pass.
//
// NewRSTGuard installs an nftables table in the inet family, so one rule
// covers IPv4 and IPv6, named TablePrefix + "<pid>_<8 hex digits>", with a
// filter chain on the output hook and a rule per range of source ports
// (GuardConfig.Ranges, a PortBlock's Ranges):
//
//	meta l4proto tcp tcp flags & rst == rst tcp sport PORTLO-PORTHI meta mark != MARK log group G queue-threshold 1 counter drop
//
// Our own segments carry MARK, set with SO_MARK on the send sockets
// (Config.Mark), so only the kernel's RSTs from exactly this run's source
// ports are dropped, never those of the sockets that hold the ports
// between its ranges. Dropped counts the packets the rules log to G, an
// nfnetlink_log group bound to a socket of the guard's own, which needs
// no privilege to read; on kernels without the log expression it sums the
// rules' counters, which needs CAP_NET_ADMIN. The rule acts on output
// only: a drop on input would also hide replies from the raw receive
// sockets.
//
// The table is written as one nfnetlink batch, encoded with
// github.com/mdlayher/netlink's AttributeEncoder (google/nftables cannot
// set the owner flag): one transaction creates table, chain and rules,
// and every message is acknowledged and checked, errors naming the message
// the kernel refused. Every netlink request of the package, these and
// DirectPath's, RouteTo's, Neighbor's and LocalBroadcasts' (the last
// three through github.com/jsimonetti/rtnetlink/v2), waits at most 5 s
// for its answer. Errors are *net.OpError values; without CAP_NET_ADMIN
// they wrap os.ErrPermission.
//
// On Linux 5.12 and later the table has the owner flag: it belongs to the
// guard's netlink socket, which stays open until Close (and is not
// inherited by child processes). The kernel deletes the table when that
// socket closes, however the process ends, SIGKILL included; meanwhile
// other processes cannot change or delete it, and `nft flush ruleset`
// leaves it alone. On older kernels, which refuse the flag, NewRSTGuard
// falls back to an ordinary table (Owned reports false): Close deletes it,
// and CleanupTables (synprobe --cleanup) deletes those left behind by runs
// that no longer exist. By hand:
//
//	nft list tables | grep synprobe_
//	nft delete table inet synprobe_<pid>_<hex>
//
// The guard acts on the network namespace of the thread that created it.
//
// NewRSTWatchPorts checks that it works: an AF_PACKET socket on every
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
package rawsock
