package netlab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	forwarderQueue  = 10000   // frames held per direction; more are dropped
	forwarderBuffer = 1 << 18 // one read; GSO frames reach 64 KiB
	maxReadErrors   = 1000    // consecutive failed reads before giving up
)

// NewDelayLab is New with a third namespace, Router, in the middle: Prober
// and Target share one /24 and /64, and every frame between them, ARP and
// neighbour discovery included, is held for delay in each direction by a
// forwarder goroutine in the test process. A TCP handshake thus takes at
// least 2*delay. Router's kernel takes no part: it has no addresses, IPv6
// is disabled and ip_forward is 0.
func NewDelayLab(tb testing.TB, delay time.Duration) *Lab {
	tb.Helper()
	return NewLossyLab(tb, delay, Loss{})
}

// NewLossyLab is NewDelayLab whose forwarder also drops frames as loss
// says: at random in each direction, and those loss.Drop picks. It logs
// the seed of the random drops (replay a run with $NETLAB_LOSS_SEED) and,
// at cleanup, what it dropped; Lab.LossStats counts it meanwhile.
func NewLossyLab(tb testing.TB, delay time.Duration, loss Loss) *Lab {
	tb.Helper()
	d, err := newDropper(loss)
	if err != nil {
		tb.Fatal(err)
	}
	if loss.ToTarget > 0 || loss.ToProber > 0 {
		tb.Logf("netlab: dropping %g%% of frames to the target and %g%% to the prober, seed %d (replay: %s=%d)",
			100*loss.ToTarget, 100*loss.ToProber, d.seed, SeedEnv, d.seed)
	}
	l, x := prepare(tb, "p", "t", "r")
	l.ProberIf, l.TargetIf = l.Prober, l.Target
	macP, macT := mac(x, 1), mac(x, 2)
	l.sysctl(tb, l.Router, map[string]string{
		"net/ipv6/conf/all/disable_ipv6":     "1",
		"net/ipv6/conf/default/disable_ipv6": "1",
		"net/ipv4/ip_forward":                "0",
	})
	l.run(tb, "ip", "link", "add", l.ProberIf, "netns", l.Prober, "address", macP,
		"type", "veth", "peer", "name", "rA", "netns", l.Router)
	l.run(tb, "ip", "link", "add", l.TargetIf, "netns", l.Target, "address", macT,
		"type", "veth", "peer", "name", "rB", "netns", l.Router)
	l.batch(tb, l.Router, "link set lo up", "link set rA up promisc on", "link set rB up promisc on")

	fw, err := startForwarder(l.Router, "rA", "rB", delay, d)
	if err != nil {
		tb.Fatal(err)
	}
	l.lossStats = d.snapshot
	tb.Cleanup(func() {
		fw.stop()
		if s := d.snapshot(); s.Overflow > 0 || s.Dropped(ToTarget)+s.Dropped(ToProber) > 0 {
			tb.Logf("netlab: forwarder: %v", s)
		}
	})
	l.configureEnds(tb, macP, macT)
	return l
}

// forwarder copies Ethernet frames between two interfaces through AF_PACKET
// sockets, each frame held for a fixed delay. The sockets use
// PACKET_VNET_HDR, so checksum-offload and GSO metadata travel with each
// frame (veth hands over frames with checksums still to be filled in).
type forwarder struct {
	delay    time.Duration
	a, b     *os.File
	drop     *dropper
	done     chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
}

func startForwarder(ns, ifA, ifB string, delay time.Duration, d *dropper) (*forwarder, error) {
	f := &forwarder{delay: delay, drop: d, done: make(chan struct{})}
	err := inNS(ns, func() (err error) {
		if f.a, err = packetSocket(ifA); err != nil {
			return err
		}
		if f.b, err = packetSocket(ifB); err != nil {
			f.a.Close()
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: forwarder in %s: %w", ns, err)
	}
	f.pipe(f.a, f.b, ToTarget)
	f.pipe(f.b, f.a, ToProber)
	return f, nil
}

// packetSocket opens a non-blocking AF_PACKET socket bound to ifname that
// sees frames arriving on it, not those it sends.
func packetSocket(ifname string) (*os.File, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, err
	}
	// Protocol 0 receives nothing until bind, so no other interface's
	// frames get queued in between.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	for _, opt := range []int{unix.PACKET_IGNORE_OUTGOING, unix.PACKET_VNET_HDR} {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, opt, 1); err != nil {
			unix.Close(fd)
			return nil, os.NewSyscallError("setsockopt", err)
		}
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	return os.NewFile(uintptr(fd), "packet:"+ifname), nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

type frame struct {
	due time.Time
	b   []byte // virtio_net_hdr + Ethernet frame
}

// pipe starts a reader that queues frames from src with their due time and
// a writer that sends them to dst when due. The delay is constant, so the
// FIFO queue is also time-ordered. Frames the dropper picks are never
// queued.
func (f *forwarder) pipe(src, dst *os.File, dir Direction) {
	q := make(chan frame, forwarderQueue)
	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		defer close(q)
		buf := make([]byte, forwarderBuffer)
		for errs := 0; errs < maxReadErrors; {
			n, err := src.Read(buf)
			if errors.Is(err, os.ErrClosed) {
				return
			}
			if err != nil { // e.g. ENETDOWN once per link flap
				errs++
				continue
			}
			errs = 0
			due := time.Now().Add(f.delay)
			if f.drop.drop(dir, buf[:n]) {
				continue
			}
			select {
			case q <- frame{due: due, b: append([]byte(nil), buf[:n]...)}:
			default:
				f.drop.overflow()
			}
		}
	}()
	go func() {
		defer f.wg.Done()
		t := time.NewTimer(time.Hour)
		defer t.Stop()
		for fr := range q {
			if d := time.Until(fr.due); d > 0 {
				t.Reset(d)
				select {
				case <-t.C:
				case <-f.done:
					return
				}
			}
			if _, err := dst.Write(fr.b); errors.Is(err, os.ErrClosed) {
				return
			} else if err != nil {
				f.drop.overflow()
			}
		}
	}()
}

// stop ends the forwarder and closes its sockets.
func (f *forwarder) stop() {
	f.stopOnce.Do(func() {
		close(f.done)
		f.a.Close() // wakes the readers, which close the queues
		f.b.Close()
		f.wg.Wait()
	})
}
