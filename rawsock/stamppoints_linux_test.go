//go:build linux

package rawsock

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// BenchmarkStampPoints measures where the kernel's stamps fall against a
// capture on the prober's interface, the witness the RTT tests use: the
// transmit stamps before (SCHED) and after (SND) the device's taps, and
// the receive stamp of the listener's SYN-ACK. It prints the
// distributions of tap-SCHED, SND-tap and rx-tap (docs/design.md,
// Timestamps and RTT).
//
//	go test -run '^$' -bench StampPoints -benchtime 1x ./rawsock/
func BenchmarkStampPoints(b *testing.B) {
	lab := netlab.New(b)
	ln := lab.Listen(b, lab.Target, "tcp", netip.AddrPortFrom(lab.TargetV4, 80).String())
	defer ln.Close()
	var conn *Conn
	if err := lab.InNS(lab.Prober, func() (err error) {
		conn, err = Listen(Config{IPv4: true, PortLo: ringPortLo, PortHi: ringPortHi})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	const n = 600
	type stamps struct{ sched, snd, rx time.Time }
	got := make([]stamps, n)
	capture := lab.StartCapture(b, lab.Prober, lab.ProberIf, "tcp port 80")
	pkt, buf := make([]byte, 128), make([]byte, 2048)
	var p wire.Packet
	b.ResetTimer()
	for i := range n {
		isn := uint32(i) << 8
		m, err := (&wire.Segment{Src: lab.ProberV4, Dst: lab.TargetV4, TTL: 64, DF: true,
			SrcPort: ringPortLo + uint16(i%int(ringPortHi-ringPortLo)), DstPort: 80,
			Seq: isn, Flags: wire.FlagSyn, Window: 64240}).Build(pkt)
		if err != nil {
			b.Fatal(err)
		}
		id := uint32(i + 1)
		if err := conn.Send(pkt[:m], id); err != nil {
			b.Fatal(err)
		}
		for deadline := time.Now().Add(time.Second); ; {
			k, ts, err := conn.Recv(buf, deadline)
			if err != nil {
				break
			}
			if wire.Parse(buf[:k], &p) == nil && p.Flags&wire.FlagSyn != 0 && p.Ack == isn+1 {
				got[i].rx = ts
				break
			}
		}
		s := conn.send4
		s.mu.Lock()
		s.drain()
		if st := s.stamps[id%stampSlots]; st.used && st.id == id {
			got[i].sched, got[i].snd = time.Unix(0, st.sched), time.Unix(0, st.snd)
		}
		s.mu.Unlock()
		time.Sleep(2 * time.Millisecond) // the kernel's RST and the listener settle
	}
	b.StopTimer()
	pkts, err := capture.Stop()
	if err != nil {
		b.Fatal(err)
	}
	var schedTap, sndTap, rxTap []time.Duration
	for _, c := range pkts {
		if wire.Parse(c.Data, &p) != nil {
			continue
		}
		switch {
		case p.Flags == wire.FlagSyn && int(p.Seq>>8) < n:
			if g := got[p.Seq>>8]; !g.sched.IsZero() {
				schedTap = append(schedTap, c.Time.Sub(g.sched))
				sndTap = append(sndTap, g.snd.Sub(c.Time))
			}
		case p.Flags&wire.FlagSyn != 0 && int((p.Ack-1)>>8) < n:
			if g := got[(p.Ack-1)>>8]; !g.rx.IsZero() {
				rxTap = append(rxTap, g.rx.Sub(c.Time))
			}
		}
	}
	for _, d := range []struct {
		name string
		v    []time.Duration
	}{{"tap-SCHED", schedTap}, {"SND-tap", sndTap}, {"rx-tap", rxTap}} {
		if len(d.v) == 0 {
			b.Fatalf("%s: nothing matched the capture", d.name)
		}
		slices.Sort(d.v)
		l := len(d.v)
		over := 0
		for _, x := range d.v {
			if x.Abs() > 100*time.Microsecond {
				over++
			}
		}
		b.Logf("%-9s n=%d min %v median %v p90 %v p99 %v max %v; %d beyond ±100µs", d.name, l, d.v[0], d.v[l/2], d.v[l*9/10], d.v[l*99/100], d.v[l-1], over)
		b.ReportMetric(float64(d.v[l/2])/1e3, fmt.Sprintf("%s-median-µs", d.name))
		b.ReportMetric(float64(d.v[l-1])/1e3, fmt.Sprintf("%s-max-µs", d.name))
	}
}
