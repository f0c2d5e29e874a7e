package netlab

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// Lab is a set of network namespaces built for one test by New or
// NewDelayLab, removed when the test ends.
type Lab struct {
	Prober, Target     string     // namespace names, sp<pid>x<n>p and sp<pid>x<n>t
	ProberIf, TargetIf string     // veth names inside each namespace
	ProberV4, TargetV4 netip.Addr // 198.18.X.1 and 198.18.X.2, on a /24
	ProberV6, TargetV6 netip.Addr // 2001:db8:X::1 and 2001:db8:X::2, on a /64

	// Router is the middle namespace of a lab made by NewDelayLab, empty
	// otherwise.
	Router string
	// Routers are the routers of a lab made by NewChainLab, from the
	// prober's side to the target's; nil otherwise.
	Routers []ChainRouter

	namespaces []string         // created so far, deleted at cleanup
	lossStats  func() LossStats // the forwarder's counts (delay labs)
}

// LossStats returns what the forwarder of a lab made by NewDelayLab or
// NewLossyLab has forwarded and dropped so far (zero for other labs).
func (l *Lab) LossStats() LossStats {
	if l.lossStats == nil {
		return LossStats{}
	}
	return l.lossStats()
}

// ChainRouter is one router of a lab made by NewChainLab: a namespace
// that forwards IPv4 and IPv6 between its two interfaces, In (towards
// the prober) and Out (towards the target).
type ChainRouter struct {
	NS                       string
	In, Out                  string     // interface names in NS: "in0" and "out0"
	InV4, InV6, OutV4, OutV6 netip.Addr // its addresses on each side
}

// CapturedPacket is one packet read back from a capture.
type CapturedPacket struct {
	Time time.Time // capture time stamp, as recorded by the kernel
	// Data is the IP packet (IPv4 or IPv6) as captured, link-layer header
	// removed. Captures keep whole frames (up to tcpdump's 262144 bytes);
	// if one was longer, its IP length field is trimmed to what was kept,
	// so that packet parsers accept the headers (not its checksum).
	Data []byte
	// Len is the IP packet's length on the wire.
	Len int
}

// Capture is a running tcpdump started by Lab.StartCapture.
type Capture struct {
	cmd    *exec.Cmd
	path   string
	stderr *syncBuffer
	done   chan struct{} // closed when the process has been waited for
	err    error         // from cmd.Wait, valid after done

	stopOnce sync.Once
}

// Serve accepts connections on ln in a new goroutine and runs handler on
// each in its own goroutine, until ln is closed (or fails). The handler owns
// the connection and must close it.
func Serve(ln net.Listener, handler func(net.Conn)) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed, or a failure the test will notice
			}
			go handler(c)
		}
	}()
}

// syncBuffer collects a child's stderr while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

// InProber runs a benchmark's body, fn, inside the lab's prober namespace
// and fails b with its error: for benchmarks of calls that act on the
// calling thread's namespace.
func (l *Lab) InProber(b *testing.B, fn func(b *testing.B) error) {
	b.Helper()
	if err := l.InNS(l.Prober, func() error { return fn(b) }); err != nil {
		b.Fatal(err)
	}
}

// The target's ports that VerdictPorts sets up, ten of each from these.
const (
	PortOpen     = 8000 // listeners
	PortClosed   = 8100 // nothing: the kernel answers RST
	PortDropped  = 8200 // the target's firewall drops the SYN
	PortRejected = 8300 // the firewall answers "administratively prohibited"
)

// VerdictPorts gives the target, on both families, ten ports of each
// verdict from PortOpen, PortClosed, PortDropped and PortRejected, and
// lifts its ICMP rate limits so that every rejected SYN is answered.
func (l *Lab) VerdictPorts(tb testing.TB) {
	tb.Helper()
	for _, a := range []netip.Addr{l.TargetV4, l.TargetV6} {
		for p := range 10 {
			ln := l.Listen(tb, l.Target, "tcp", netip.AddrPortFrom(a, uint16(PortOpen+p)).String())
			Serve(ln, func(c net.Conn) { c.Close() })
		}
	}
	l.Nft(tb, l.Target, fmt.Sprintf(`table inet lab {
	chain input {
		type filter hook input priority 0;
		tcp dport %d-%d drop
		meta nfproto ipv4 tcp dport %d-%d reject with icmp admin-prohibited
		meta nfproto ipv6 tcp dport %d-%d reject with icmpv6 admin-prohibited
	}
}`, PortDropped, PortDropped+9, PortRejected, PortRejected+9, PortRejected, PortRejected+9))
	l.Run(tb, l.Target, "sysctl", "-q", "-w", "net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0",
		"net.ipv4.icmp_msgs_per_sec=1000000", "net.ipv4.icmp_msgs_burst=1000000")
}
