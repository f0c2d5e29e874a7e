// Package scan is synprobe's multi-target scan mode: target expressions,
// the space of (address, port) pairs they name, the keyed order in which a
// scan visits it, a token bucket for the probe rate, a bitmap of answered
// pairs, per-host retransmission timers, and Run, which scans on a
// probe.Client: it sends the probes at rate and judges every pair.
//
// # Network
//
// A scan runs on a probe.Client only: its ports, key, source addresses,
// interface, mark and namespace, and its engine's receive loop for the
// answers of a small scan. It matches answers, times them and resets
// half-open connections with the engine's own mechanisms (one matcher,
// one TSval clock, one RST), and the engine reads its answers, a big
// scan's packet ring included. Its raw IP packets leave through the
// client's own sockets, whose transmit stamps one reader sorts between
// the engine and the scan (rawsock.BulkStamp); but it still sends at rate
// and waits for each pass in a loop of its own. Prepare opens what else a
// scan of its size sends through (Ethernet frames for a big one when
// they go where the host's IP output would) and a big scan's ring, so
// that a program can give up its privileges before it scans.
//
// # Targets
//
// ParseSpec reads one target expression, ParseFile a file of them:
//
//	198.18.1.0/24:22,80,443,8000-8100   an IPv4 block (any size) and ports
//	host:80=open                        a name, with the expected verdict
//	[2001:db8::1]:443                   an IPv6 address
//	[2001:db8::/120]:80                 an IPv6 block, at most a /112
//
// # Pairs
//
// A Set numbers the pairs of a list of Blocks (a Spec's prefix, or a
// resolved name's addresses, with the Spec's ports) from 0 to Len()-1
// and computes the i-th pair on demand, so a /16 with 1000 ports costs a
// few hundred bytes, not 65 million entries.
//
// # Order
//
// A Perm is a keyed pseudo-random permutation of [0, Len()): a Feistel
// network with SipHash-2-4 rounds and cycle walking. Walking i = 0, 1, 2,
// ... and probing Set.Pair(Perm.At(i)) visits every pair once, with
// consecutive probes spread across hosts and ports, and the next position
// is a single counter, which makes pausing, sharding and resuming easy.
//
//	set := scan.NewSet(blocks...)
//	perm := scan.NewPerm(set.Len(), key)
//	for i := range set.Len() {
//		addr, port, spec := set.Pair(perm.At(i))
//		...
//	}
//
// # Rate
//
// A Limiter is a token bucket driven by the caller's clock: Reserve grants
// what is available now or says how long to wait, and SetRate supports an
// adaptive slow-down.
//
// # Memory
//
// Set and Perm take memory proportional to the number of blocks and port
// ranges. The only per-pair structure is the Bitmap of answered pairs, one
// bit each.
package scan
