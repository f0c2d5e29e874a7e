package listener_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"

	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/probe/listener"
)

// Check a listener: the SYN-ACK's retransmissions, SYN cookies and the
// accept queue. It needs CAP_NET_RAW and CAP_NET_ADMIN (the RST guard),
// and takes about twice Config.Observe.
func ExampleCheck() {
	c, err := probe.NewClient(&probe.ClientConfig{Guard: true})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	r, err := listener.Check(context.Background(), c, netip.MustParseAddrPort("198.18.0.2:443"), nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(r.SYN.State, r.Retransmits, r.AcceptQueue, r.SynCookies != nil && *r.SynCookies)
	for _, f := range r.Findings {
		fmt.Println(f)
	}
}
