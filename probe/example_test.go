package probe_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"sync"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// A client holds its sockets, ports and key for as long as the program
// wants; any goroutine may probe through it. NewClient needs CAP_NET_RAW
// (and ModeACK or ModeFIN CAP_NET_ADMIN, for the RST guard).
func ExampleNewClient() {
	c, err := probe.NewClient(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	r, err := c.Probe(context.Background(), netip.MustParseAddrPort("198.18.0.2:443"), nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.State, r.Reason, r.RTT, r.KernelClock)
}

// Start makes many probes at once without a goroutine each: done runs on
// the client's engine, must return soon, and must copy what it keeps of
// the Result.
func ExampleClient_Start() {
	c, err := probe.NewClient(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	rtts := map[netip.AddrPort]time.Duration{}
	for port := uint16(1); port <= 100; port++ {
		dst := netip.AddrPortFrom(netip.MustParseAddr("198.18.0.2"), port)
		wg.Add(1)
		_, err := c.Start(dst, nil, func(r *probe.Result, err error) {
			defer wg.Done()
			if err == nil && r.Answered() {
				mu.Lock()
				rtts[dst] = r.RTT
				mu.Unlock()
			}
		})
		if err != nil {
			wg.Done()
			log.Print(err)
		}
	}
	wg.Wait()
	fmt.Println(len(rtts), "answered")
}

// ModeFIN completes the handshake, sends data, closes and reports how the
// server closed.
func ExampleClient_Probe_fin() {
	c, err := probe.NewClient(&probe.ClientConfig{Guard: true})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Probe(ctx, netip.MustParseAddrPort("[2001:db8::2]:80"), &probe.ProbeOptions{
		Mode: probe.ModeFIN,
		Data: []byte("HEAD / HTTP/1.0\r\n\r\n"),
	})
	if err != nil {
		log.Fatal(err)
	}
	if r.Close != nil {
		fmt.Println(r.State, r.Close.Pattern, r.Close.FinTime)
	}
}

// A client over an in-memory network (package probetest) that answers
// port 443 with SYN-ACK and everything else with RST, 120 µs later by the
// fake kernel's clock.
func ExampleClient_Probe() {
	network := probetest.NewConn(func(p *wire.Packet, _ []byte, _ uint32) []probetest.Reply {
		if p.Flags != wire.FlagSyn {
			return nil
		}
		if p.DstPort == 443 {
			return []probetest.Reply{{Packet: probetest.SYNACK(p, wire.SYNOptions{MSS: 1460}), After: 120 * time.Microsecond}}
		}
		return []probetest.Reply{{Packet: probetest.RST(p), After: 120 * time.Microsecond}}
	})
	defer network.Close()
	c, err := probe.NewClient(&probe.ClientConfig{
		Conn:        network,
		SourcePorts: []uint16{61000, 61001, 61002, 61003},
		Source:      func(netip.Addr) (netip.Addr, error) { return netip.MustParseAddr("198.18.0.1"), nil },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	for _, dst := range []string{"198.18.0.2:443", "198.18.0.2:444"} {
		r, err := c.Probe(context.Background(), netip.MustParseAddrPort(dst), nil)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(dst, r.State, r.Reason, r.RTT, r.KernelClock)
	}
	// Output:
	// 198.18.0.2:443 open syn-ack 120µs true
	// 198.18.0.2:444 closed rst 120µs true
}

// Rounds probe targets as ping does, with statistics per target.
func ExampleClient_Rounds() {
	network := probetest.NewConn(func(p *wire.Packet, _ []byte, _ uint32) []probetest.Reply {
		if p.Flags != wire.FlagSyn {
			return nil
		}
		return []probetest.Reply{{Packet: probetest.SYNACK(p, wire.SYNOptions{MSS: 1460}), After: time.Duration(p.DstPort) * time.Microsecond}}
	})
	defer network.Close()
	c, err := probe.NewClient(&probe.ClientConfig{
		Conn:        network,
		SourcePorts: []uint16{61000, 61001, 61002, 61003},
		Source:      func(netip.Addr) (netip.Addr, error) { return netip.MustParseAddr("2001:db8::1"), nil },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	stats, err := c.Rounds(context.Background(), &probe.Rounds{
		Targets: []probe.Target{
			{Addr: netip.MustParseAddr("2001:db8::2"), Port: 80},
			{Addr: netip.MustParseAddr("2001:db8::3"), Port: 443},
		},
		Count:    5,
		Interval: time.Millisecond,
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range stats {
		fmt.Println(s.Sent, s.Open, s.RTT.Min)
	}
	// Output:
	// 5 5 80µs
	// 5 5 443µs
}
