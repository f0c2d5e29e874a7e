//go:build linux

package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// Data servers (fin mode --data).
const (
	portCount = 90 // reads to EOF, reports what it got, closes
	portSlow  = 91 // a 2 KiB receive buffer; reads nothing for 1 s, then to EOF
	portStuck = 92 // a 2 KiB receive buffer; never reads
)

// received is what a data server got on one connection.
type received struct {
	sport uint16
	n     int64
	sum   [32]byte
}

// dataServers starts the data servers on both of l's target addresses and
// returns the channel on which they report.
func dataServers(t *testing.T, l *netlab.Lab) <-chan received {
	got := make(chan received, 64)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	count := func(c net.Conn) {
		defer c.Close()
		h := sha256.New()
		n, _ := io.Copy(h, c)
		var r received
		r.sport, r.n = uint16(c.RemoteAddr().(*net.TCPAddr).Port), n
		copy(r.sum[:], h.Sum(nil))
		got <- r
	}
	tiny := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	for _, a := range []netip.Addr{l.TargetV4, l.TargetV6} {
		ln := l.Listen(t, l.Target, "tcp", netip.AddrPortFrom(a, portCount).String())
		netlab.Serve(ln, count)
		for port, h := range map[uint16]func(net.Conn){
			portSlow: func(c net.Conn) {
				select {
				case <-time.After(time.Second):
				case <-done:
				}
				count(c)
			},
			portStuck: func(c net.Conn) {
				<-done
				c.Close()
			},
		} {
			var ln net.Listener
			err := l.InNS(l.Target, func() (err error) {
				ln, err = tiny.Listen(context.Background(), "tcp", netip.AddrPortFrom(a, port).String())
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			netlab.Serve(ln, h)
		}
	}
	return got
}

// data64k is the --data of the tests: 64 KiB, every byte known.
var data64k = func() string {
	var b strings.Builder
	for b.Len() < 1<<16 {
		b.WriteString("0123456789abcdef")
	}
	return b.String()
}()

// TestIntegrationDataSizes sends 64 KiB in fin mode over IPv4 and IPv6 to
// real servers and checks, against the server's own count and checksum
// and a capture, that every byte arrived before our FIN, in segments that
// fit the path MTU and the peer's MSS less our options: a plain veth, an
// MTU of 1400, the server's MSS clamped by nftables to 100 and to 1, a
// server whose window closes for a second, and one whose window never
// opens.
func TestIntegrationDataSizes(t *testing.T) {
	sum := sha256.Sum256([]byte(data64k))
	for _, tt := range []struct {
		name     string
		port     uint16
		setup    func(t *testing.T, l *netlab.Lab)
		seg      [2]int // segment_size for IPv4, IPv6
		maxIP    int    // largest IP packet of ours, 0: no check
		pattern  string // "" any of 3-way and 4-way (the capture decides)
		zeroWin  bool   // the server advertised a zero window
		complete bool   // all data acknowledged
		extra    []string
	}{
		{"plain", portCount, nil, [2]int{1448, 1428}, 0, "", false, true, nil},
		{"MTU 1400", portCount, func(t *testing.T, l *netlab.Lab) {
			l.Run(t, l.Prober, "ip", "link", "set", "dev", l.ProberIf, "mtu", "1400")
		}, [2]int{1400 - 40 - 12, 1400 - 60 - 12}, 1400, "", false, true, nil},
		{"MSS clamped to 100", portCount, func(t *testing.T, l *netlab.Lab) { clampMSS(t, l, 100) }, [2]int{88, 88}, 0, "", false, true, nil},
		{"MSS clamped to 1", portCount, func(t *testing.T, l *netlab.Lab) { clampMSS(t, l, 1) }, [2]int{36, 36}, 0, "", false, true, nil},
		{"zero window for a second", portSlow, nil, [2]int{1448, 1428}, 0, "", true, true, []string{"--close-timeout", "5"}},
		{"zero window for good", portStuck, nil, [2]int{1448, 1428}, 0, "zero-window", true, false, []string{"--close-timeout", "1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := netlab.New(t)
			got := dataServers(t, l)
			if tt.setup != nil {
				tt.setup(t, l)
			}
			cp := l.StartCapture(t, l.Prober, l.ProberIf, "tcp")
			args := append([]string{"--json", "--mode", "fin", "-c", "1", "--data", data64k}, tt.extra...)
			r := runIn(t, l, l.Prober, append(args, hostPort(l.TargetV4, tt.port), hostPort(l.TargetV6, tt.port))...)
			pkts, err := cp.Stop()
			if err != nil {
				t.Fatal(err)
			}
			// Data the peer never acknowledged whole fails the run.
			if want := map[bool]int{true: exitOK, false: exitNotOpen}[tt.complete]; r.code != want {
				t.Fatalf("exit %d, want %d: %s", r.code, want, r.stderr)
			}
			onWire := wirePatterns(pkts, l.ProberV4, l.ProberV6)
			servers := map[uint16]received{}
			if tt.complete {
				for range 2 {
					select {
					case s := <-got:
						servers[s.sport] = s
					case <-time.After(5 * time.Second):
						t.Fatal("a server never reported")
					}
				}
			}
			probes := 0
			for _, m := range r.lines {
				if m["type"] != "probe" {
					continue
				}
				probes++
				sport := uint16(m["sport"].(float64))
				v6 := netip.MustParseAddr(m["addr"].(string)).Is6()
				cl := m["close"].(map[string]any)
				want := tt.pattern
				if want == "" {
					want = onWire[sport]
				}
				if cl["pattern"] != want || cl["data_bytes"] != float64(len(data64k)) || cl["send_errors"] != 0.0 ||
					cl["segment_size"] != float64(tt.seg[b2i(v6)]) {
					t.Errorf("%v: close %v, want %s in %d-byte segments", m["target"], cl, want, tt.seg[b2i(v6)])
				}
				if acked := cl["data_acked"]; tt.complete != (acked == float64(len(data64k))) {
					t.Errorf("%v: %v bytes acknowledged", m["target"], acked)
				}
				if probes, _ := cl["window_probes"].(float64); tt.zeroWin != (probes > 0) {
					t.Errorf("%v: %v window probes", m["target"], probes)
				}
				if tt.complete {
					if s := servers[sport]; s.n != int64(len(data64k)) || s.sum != sum {
						t.Errorf("%v: the server got %d bytes (checksum match %v)", m["target"], s.n, s.sum == sum)
					}
				}
				checkDataWire(t, pkts, sport, tt.maxIP, tt.seg[b2i(v6)], tt.complete, tt.zeroWin)
			}
			if probes != 2 {
				t.Errorf("%d probes", probes)
			}
			if bad := leftovers(t, l, nil); len(bad) > 0 {
				t.Errorf("the server keeps state:\n%s", strings.Join(bad, "\n"))
			}
		})
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// clampMSS makes the target's SYN-ACKs advertise MSS mss.
func clampMSS(t *testing.T, l *netlab.Lab, mss int) {
	l.Nft(t, l.Target, fmt.Sprintf(`table inet clamp {
	chain out {
		type filter hook output priority mangle; policy accept;
		tcp flags syn,ack tcp option maxseg size set %d
	}
}`, mss))
}

// checkDataWire checks our segments of connection sport on the wire: data
// in full segments of seg bytes (but the last, and those cut by the
// window), none above maxIP bytes, our FIN after every byte and never
// before, and window probes only against a zero window.
func checkDataWire(t *testing.T, pkts []netlab.CapturedPacket, sport uint16, maxIP, seg int, complete, zeroWin bool) {
	t.Helper()
	var p wire.Packet
	var isn uint32
	var finSeq uint32
	fin, zero, probes := false, false, 0
	var end uint32
	for _, cp := range pkts {
		if wire.Parse(cp.Data, &p) != nil || p.Proto != wire.ProtocolTCP {
			continue
		}
		if p.DstPort == sport && p.Flags&wire.FlagSyn == 0 && p.Window == 0 && p.Flags&wire.FlagRst == 0 {
			zero = true
		}
		if p.SrcPort != sport {
			continue
		}
		payload := cp.Len - (len(cp.Data) - p.PayloadLen)
		switch {
		case p.Flags == wire.FlagSyn:
			isn = p.Seq
		case maxIP > 0 && cp.Len > maxIP:
			t.Errorf("sport %d: a %d-byte packet on a path of MTU %d", sport, cp.Len, maxIP)
		case payload > seg:
			t.Errorf("sport %d: a %d-byte segment, want at most %d", sport, payload, seg)
		case payload > 0 && fin:
			t.Errorf("sport %d: data after our FIN", sport)
		case payload > 0:
			end = max(end, p.Seq+uint32(payload)-isn-1)
		case p.Flags&wire.FlagFin != 0:
			fin, finSeq = true, p.Seq-isn-1
		case p.Flags == wire.FlagAck && p.Seq-isn-1 == end-1 && end > 0:
			probes++ // a window probe: seq = snd.una - 1
		}
	}
	if complete && (!fin || finSeq != uint32(len(data64k)) || end != uint32(len(data64k))) {
		t.Errorf("sport %d: FIN %v at %d, data up to %d; want the FIN at %d after all of it", sport, fin, finSeq, end, len(data64k))
	}
	if !complete && fin {
		t.Errorf("sport %d: a FIN although the data never all went out", sport)
	}
	if zeroWin != zero || zeroWin != (probes > 0) {
		t.Errorf("sport %d: zero window on the wire %v, %d window probes", sport, zero, probes)
	}
}

// TestIntegrationDataRefused: fin mode whose --data this host refuses to
// send (an output rule drops our segments longer than 200 bytes, and
// nothing else): every refusal is counted and named, no byte reaches the
// wire (the capture) or the server (its own count), the connection is
// reset, and the run fails with status 3, the probe's that could not be
// sent, never 1, which would blame the peer.
func TestIntegrationDataRefused(t *testing.T) {
	l := netlab.New(t)
	got := dataServers(t, l)
	l.Nft(t, l.Prober, fmt.Sprintf(`table inet local {
	chain output {
		type filter hook output priority 0;
		tcp dport %d meta length > 200 drop
	}
}`, portCount))
	cp := l.StartCapture(t, l.Target, l.TargetIf, "tcp")
	r := runIn(t, l, l.Prober, "--json", "--mode", "fin", "-c", "1", "--close-timeout", "1", "--data", data64k[:2000],
		hostPort(l.TargetV4, portCount), hostPort(l.TargetV6, portCount))
	pkts, err := cp.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if r.code != exitFailure || r.stderr != "" {
		t.Errorf("exit %d, stderr %q; want %d", r.code, r.stderr, exitFailure)
	}
	probes := 0
	for _, m := range r.lines {
		switch m["type"] {
		case "probe":
			probes++
			cl, _ := m["close"].(map[string]any)
			if m["state"] != "open" || cl == nil {
				t.Errorf("%v: %v/%v, close %v", m["target"], m["state"], m["reason"], cl)
				continue
			}
			if n, _ := cl["send_errors"].(float64); n == 0 || cl["data_acked"] != 0.0 || !strings.Contains(fmt.Sprint(cl["send_error"]), "operation not permitted") {
				t.Errorf("%v: close %v; want send errors (EPERM) and nothing acknowledged", m["target"], cl)
			}
		case "summary":
			if cl, _ := m["close"].(map[string]any); cl == nil || cl["data_short"] != 1.0 || cl["send_errors"] == 0.0 {
				t.Errorf("summary %v", m)
			}
		}
	}
	if probes != 2 {
		t.Errorf("%d probes", probes)
	}
	var p wire.Packet
	for _, c := range pkts {
		if wire.Parse(c.Data, &p) == nil && p.DstPort == portCount && p.PayloadLen > 0 {
			t.Errorf("a data segment reached the target: %v > %v seq %d, %d bytes", p.Src, p.Dst, p.Seq, p.PayloadLen)
		}
	}
	// Each server saw its connection end (our RST) with nothing read.
	for range 2 {
		select {
		case s := <-got:
			if s.n != 0 {
				t.Errorf("the server on port %d got %d bytes", s.sport, s.n)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a server never reported")
		}
	}
	if bad := leftovers(t, l, nil); len(bad) > 0 {
		t.Errorf("the server keeps state:\n%s", strings.Join(bad, "\n"))
	}
}
