// Package rawsock sends TCP SYN probes on raw IPv4 and IPv6 sockets and
// receives the replies, on Linux: the raw-socket Conn with kernel
// timestamps, the AF_PACKET ring and sender, the source ports held through
// the kernel, and the routes, neighbours and MTU they need. The RST guard
// and watch are package rawsock/rstguard's.
//
// The packets themselves (header views, Segment.Build and Parse,
// checksums, SYN options and cookies, BPF programs) are package
// rawsock/wire's, which is portable; rawsock imports it. The API of
// rawsock is declared once, in portable files, as in mdlayher/packet: only
// unexported functions differ per platform (*_linux.go, *_others.go), and
// off Linux they return an error saying "rawsock: not implemented on
// GOOS" (TestLayout keeps it so).
//
// # Receiving
//
// Conn's receive sockets carry wire's BPF filters (wire.TCPFilterIPv4,
// wire.ICMPFilterIPv4 and their IPv6 forms), so that the kernel only
// queues replies to our source ports. What the checksums of a received
// packet prove depends on the path (see Checksums in package wire): the
// Ring passes wire.ParseChecksums what the kernel's tp_status says, and
// the IPv6 TCP receive socket asks the kernel to verify (IPV6_CHECKSUM).
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
// Ranges gives the runs of consecutive ports, which rstguard.New and
// rstguard.NewWatchPorts take. Each port costs a file descriptor; the block
// takes no more than RLIMIT_NOFILE leaves room for. ReservePort holds one
// given port. Ports below net.ipv4.ip_unprivileged_port_start need
// CAP_NET_BIND_SERVICE.
//
// # RST suppression
//
// Package rawsock/rstguard keeps the kernel's own RSTs for our ports off
// the wire (an nftables table) and counts those that escape. Every
// netlink request of the two packages goes through one internal client
// (rawsock/internal/nl) and waits at most 5 s for its answer. DirectPath,
// RouteTo, Neighbor and LocalBroadcasts encode and decode their messages
// with github.com/jsimonetti/rtnetlink/v2. (A RouteWatch's socket asks
// nothing: it listens to the link, address, route and rule notifications
// for as long as it is open, and a SourceFinder with a Watch keeps the
// sources it found until one comes.) Errors are *net.OpError values of
// network "rawsock"; those of a request that needs a privilege the
// process lacks wrap os.ErrPermission.
package rawsock
