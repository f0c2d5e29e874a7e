package scan_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"slices"
	"time"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/probetest"
	"github.com/synprobe/synprobe/probe/scan"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// A scan of 198.18.1.0/30 ports 22 and 80 on a client over an
// in-memory network on which only 198.18.1.1:22 listens and everything
// else answers RST. The client's engine reads the answers and hands them
// to the scan. Over raw sockets, probe.NewClient(nil) opens the client's
// own (CAP_NET_RAW): see Run's example.
func ExampleRun_memory() {
	conn := probetest.NewConn(func(p *wire.Packet, _ []byte, _ uint32) []probetest.Reply {
		if p.Flags != wire.FlagSyn {
			return nil
		}
		if p.Dst == netip.MustParseAddr("198.18.1.1") && p.DstPort == 22 {
			return []probetest.Reply{{Packet: probetest.SYNACK(p, wire.SYNOptions{MSS: 1460}), After: 80 * time.Microsecond}}
		}
		return []probetest.Reply{{Packet: probetest.RST(p), After: 80 * time.Microsecond}}
	})
	defer conn.Close()
	var ports []uint16
	for p := range uint16(64) {
		ports = append(ports, 61000+p)
	}
	c, err := probe.NewClient(&probe.ClientConfig{
		Conn: conn, SourcePorts: ports,
		Source: func(netip.Addr) (netip.Addr, error) { return netip.MustParseAddr("198.18.0.1"), nil },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	spec, err := scan.ParseSpec("198.18.1.0/30:22,80")
	if err != nil {
		log.Fatal(err)
	}
	set, err := scan.NewSet(scan.Block{Spec: &spec})
	if err != nil {
		log.Fatal(err)
	}
	var open []string
	sum, err := scan.Run(context.Background(), c, scan.Config{
		Set: set,
		OnResult: func(r *probe.ScanResult, _ scan.Origin) {
			if r.State == probe.StateOpen {
				open = append(open, r.AddrPort().String())
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	slices.Sort(open)
	fmt.Println(sum.Pairs, "pairs:", sum.Open, "open", sum.Closed, "closed; open:", open)
	// Output:
	// 8 pairs: 1 open 7 closed; open: [198.18.1.1:22]
}

// A scan on a client that other goroutines may probe through at the same
// time: its ports, key and routes serve both. It needs CAP_NET_RAW and a
// network whose 198.18.1.0/30 answers.
func ExampleRun() {
	c, err := probe.NewClient(nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	spec, err := scan.ParseSpec("198.18.1.0/30:22,80,443")
	if err != nil {
		log.Fatal(err)
	}
	set, err := scan.NewSet(scan.Block{Spec: &spec})
	if err != nil {
		log.Fatal(err)
	}
	sum, err := scan.Run(context.Background(), c, scan.Config{
		Set:     set,
		Rate:    10000,
		Retries: 1,
		OnResult: func(r *probe.ScanResult, _ scan.Origin) {
			fmt.Println(r.AddrPort(), r.State, r.Reason, r.RTT)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d open, %d closed, %d filtered; sent as %s\n", sum.Open, sum.Closed, sum.Filtered, sum.SendPath)
}
