// Package wire builds and parses the packets of TCP SYN probes over IPv4
// and IPv6: header views, checksums, TCP options, SYN cookies, ICMP
// reason names and the classic BPF programs that pick our replies out of
// a socket's traffic.
//
// It makes no system call of its own and is the same on every platform:
// it builds and tests everywhere, without privileges (TestLayout keeps it
// so). Package rawsock, beside it, puts these packets on the wire on
// Linux: raw sockets, the packet ring, kernel timestamps.
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
// exact: ParseChecksums takes what a packet socket's tp_status says,
// rawsock.Ring drops a partial-looking checksum the kernel did not mark
// TP_STATUS_CSUMNOTREADY unless it verifies in full (MaybePartial), and
// rawsock's IPv6 TCP receive socket asks the kernel to verify
// (IPV6_CHECKSUM). An IPv4 raw
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
// classic BPF programs (golang.org/x/net/bpf) for rawsock to attach to
// its raw receive sockets with SO_ATTACH_FILTER, so that the kernel only queues
// replies to our source ports: TCP segments whose destination port is in
// the probe range, and ICMP errors quoting a TCP segment whose source port
// is. The IPv4 programs see the packet from the IPv4 header and cope with
// IP options; the IPv6 programs see the TCP or ICMPv6 header, as AF_INET6
// raw sockets deliver no IP header. Accepted packets are kept whole. The
// programs are tested in the x/net/bpf virtual machine.
//
// ReplyFilter and SYNFilter are the parts of rawsock.Ring's program that
// look at the packet alone: replies to our addresses that the filters
// above accept, and our own SYNs as they leave. MaybePartial tells the
// ring which packets need their checksum verified in full.
package wire
