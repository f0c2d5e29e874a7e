// Package netlab builds throw-away network labs out of Linux network
// namespaces for the integration tests (TestIntegration*) of synprobe.
//
// A test uses it like this:
//
//	func TestIntegrationConnect(t *testing.T) {
//		l := netlab.New(t) // skips unless root
//		ln := l.Listen(t, l.Target, "tcp", netip.AddrPortFrom(l.TargetV4, 80).String())
//		netlab.Serve(ln, func(c net.Conn) { c.Close() })
//		c := l.StartCapture(t, l.Prober, l.ProberIf, "tcp port 80")
//		// ... run the code under test inside l.Prober (l.Command, l.InNS) ...
//		pkts, err := c.Stop()
//		// ... inspect pkts ...
//	}
//
// # Topology
//
// [New] creates two namespaces, Prober and Target, joined by a veth pair:
//
//	Prober  ProberIf 198.18.X.1/24 2001:db8:X::1/64
//	Target  TargetIf 198.18.X.2/24 2001:db8:X::2/64
//
// [NewDelayLab] puts a third namespace, Router, between them. Router has no
// IP stack on its two interfaces (rA towards Prober, rB towards Target); a
// forwarder goroutine in the test process copies every Ethernet frame from
// one side to the other after a fixed delay, so Prober and Target share one
// segment whose round trip is twice the delay. This replaces netem, which
// the project's kernels lack.
//
// [NewChainLab] puts n Linux routers in a row between Prober and Target,
// each a namespace that forwards IPv4 and IPv6 with static routes
// (Lab.Routers), for TTL-stepped probes: every link is a /29 and a /64
// of the lab's prefixes.
//
// # Loss
//
// [NewLossyLab] is a delay lab whose forwarder also drops frames: at random
// with a probability per direction, from a seeded PRNG whose seed the lab
// logs (set $NETLAB_LOSS_SEED to replay it), and any frame a test's hook
// picks ("the target's first FIN"), so that a test can force exactly the
// loss it means. [Lab.LossStats] counts what was forwarded and dropped.
//
// Both ends get permanent neighbour entries for each other, so the first
// packet of a test is not held up by ARP or neighbour discovery. IPv6
// addresses are added with nodad and DAD is off in the namespaces.
//
// # Safety
//
// Only 198.18.0.0/15 and 2001:db8::/32 are used, and only inside namespaces
// the lab created. Every wait is bounded.
//
// # Privileges
//
// Creating namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN). Without
// them, or without iproute2, [New] skips the test with the fix in the
// message. [Lab.StartCapture] also needs tcpdump, [Lab.Nft] needs nft.
//
// # Cleanup
//
// Everything is removed by tb.Cleanup: listeners, captures and the forwarder
// first, then the namespaces, which takes the veth pairs with them.
// Namespaces are named sp<pid>x<n><role>; a run killed with SIGKILL leaves
// them behind, and the next [New] (or [Sweep]) deletes those whose pid is no
// longer alive.
//
// # Threads and namespaces
//
// [Lab.InNS] runs a function on a locked OS thread that has joined the
// namespace; sockets created there stay in that namespace for their whole
// life, so a listener or a dialled connection can be used from any
// goroutine afterwards. Goroutines started by the function run elsewhere.
package netlab
