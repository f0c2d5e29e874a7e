// Package probe is synprobe's probing engine: it sends crafted SYN segments,
// matches every reply to its probe, drives each probe's exchange to its end
// and reports a Result per probe, with Stats per target for rounds.
//
// # Use
//
// A Client holds raw sockets (both families by default), a block of
// source ports and a key for as long as a program wants; any number of
// goroutines probe through it at once (this snippet is ExampleNewClient's,
// which go test compiles):
//
//	c, err := probe.NewClient(nil)
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer c.Close()
//	r, err := c.Probe(context.Background(), netip.MustParseAddrPort("198.18.0.2:443"), nil)
//	if err != nil {
//		log.Fatal(err)
//	}
//	fmt.Println(r.State, r.Reason, r.RTT, r.KernelClock)
//
// Client.Start begins a probe and calls back from the engine when it
// ends, for programs that make thousands a second (no goroutine waits for
// each). Client.Counters counts the packets sent, refused, received and
// unmatched. Client.Rounds probes targets in rounds, as ping does, or
// spread over the interval with callbacks as each probe is sent and
// ends, for a long-running monitor (Rounds.Spread, OnSend, OnSkip,
// KeepGoing: synprobe serve's background probes). New and Prober.Run
// run one Config's rounds on a Conn the caller opened; a Client runs the
// same engine, one job per call.
//
// A Client probes one host at a time: it refuses a destination that is
// not unicast (the unspecified address, multicast, the limited broadcast)
// or is the broadcast address of one of this host's subnets with an
// *UnusableError, which wraps ErrNotUnicast (Unusable says why; programs
// check their targets with it first).
//
// # Matching
//
// Every SYN's ISN is a keyed hash of its 4-tuple and probe id (see
// wire.Cookie). A reply is taken for a probe only when it acknowledges
// that ISN (an ICMP error: quotes it) and its addresses and ports are the
// probe's; everything else is dropped without a trace.
//
// # Modes
//
// ModeRST (the default) answers the SYN-ACK with RST so that the server
// frees its half-open connection at once. ModeACK completes the handshake,
// then resets. ModeFIN completes it, holds the connection (sending
// Config.Data, acknowledging whatever the peer sends), closes with FIN and
// follows the peer's close to its end: Result.Close says how the peer
// closed (ClosePattern) and how fast. Both need the kernel's own RSTs kept
// off the wire (rstguard.Guard).
//
// # Source ports
//
// Each SYN takes its source port from Config.Ports, a PortAllocator; by
// default a PortPool of every port in PortLo..PortHi. In ModeFIN a port
// stays taken until its connection ends and, when that leaves a TIME_WAIT
// on either side, cools for a minute; PortPool reuses a cooling port only
// as RFC 6191 allows (timestamps, a newer TSval, a quiet second) and only
// when no other is free. synprobe gives the pool the ports it holds
// through the kernel (rawsock.ReservePorts).
//
// # Event loop
//
// The engine is one loop on a locked OS thread: replies, timers, rounds
// and the calls queued by a Client's goroutines. Its waits end at
// deadlines with nanosecond resolution (Conn.Recv), and it polls for
// 200 µs after each send rather than sleep (ClientConfig.Spin). It yields
// its thread to Go's scheduler every 5 ms or so, before a wait, so that
// Go's sysmon need not preempt it.
//
// # Timing
//
// RTTs are the kernel's receive stamp of the reply minus its transmit
// stamp of the SYN (Result.KernelClock), or the user-space clock's
// difference when the kernel gave no stamps.
//
// # Testing
//
// Package probetest provides an in-memory Conn that answers each SYN with
// scripted SYN-ACKs, RSTs, ICMP errors or silence, with exact timestamps.
package probe
