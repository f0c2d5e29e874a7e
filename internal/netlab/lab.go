package netlab

import (
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
