//go:build linux

package rawsock

import (
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/synprobe/synprobe/internal/netlab"
	"github.com/synprobe/synprobe/rawsock/internal/wiretest"
	"github.com/synprobe/synprobe/rawsock/wire"
)

// batchSender is what TestIntegrationBatchTxStamps drives: a Conn or a
// PacketSender.
type batchSender interface {
	SendBatch(b *Batch) (int, error)
	ReadTxStamps(s *TxStamps) error
}

// TestIntegrationBatchTxStamps: every packet of a stamped batch, sent on
// the raw IP socket or as Ethernet frames, gets one transmit stamp with
// the id it was given, whatever the order of the ids; the stamps agree
// with a capture of the same packets on the interface; an unstamped
// batch gets none.
func TestIntegrationBatchTxStamps(t *testing.T) {
	if !tsOptID() {
		t.Skip("the kernel takes no id per packet for its stamps (SCM_TS_OPT_ID, Linux 6.13)")
	}
	lab := netlab.New(t)
	dstMAC, err := net.ParseMAC(strings.Fields(lab.Run(t, lab.Target, "ip", "-br", "link", "show", "dev", lab.TargetIf))[2])
	if err != nil {
		t.Fatal(err)
	}
	var conn *Conn
	var ps [2]*PacketSender
	err = lab.InNS(lab.Prober, func() (err error) {
		ifi, err := net.InterfaceByName(lab.ProberIf)
		if err != nil {
			return err
		}
		if conn, err = Listen(Config{IPv4: true, IPv6: true, PortLo: ringPortLo, PortHi: ringPortHi, SendOnly: true}); err != nil {
			return err
		}
		for fam := range ps {
			if ps[fam], err = NewPacketSender(NextHop{Ifindex: ifi.Index, SrcMAC: ifi.HardwareAddr, DstMAC: dstMAC}, fam == 1); err != nil {
				return err
			}
		}
		return nil
	})
	t.Cleanup(func() {
		if conn != nil {
			conn.Close()
		}
		for _, p := range ps {
			if p != nil {
				p.Close()
			}
		}
	})
	if errors.Is(err, os.ErrPermission) {
		t.Skip(wiretest.NeedsNetRaw)
	}
	if err != nil {
		t.Fatal(err)
	}
	const n = 32
	for _, tc := range []struct {
		name string
		v6   bool
		s    batchSender
	}{
		{"raw IPv4", false, conn}, {"raw IPv6", true, conn},
		{"frames IPv4", false, ps[0]}, {"frames IPv6", true, ps[1]},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			src, dst := lab.ProberV4, lab.TargetV4
			if tc.v6 {
				src, dst = lab.ProberV6, lab.TargetV6
			}
			capture := lab.StartCapture(t, lab.Prober, lab.ProberIf, "tcp[tcpflags] == tcp-syn or ip6[40+13] == 2")
			b := NewBatch(n)
			fill := func(stamped bool) {
				for i := range n {
					m, err := (&wire.Segment{Src: src, Dst: dst, TTL: 64, DF: true, SrcPort: ringPortLo + uint16(i%16), DstPort: ringShutPort,
						Seq: uint32(i), Flags: wire.FlagSyn, Window: 64240}).Build(b.Slot())
					if err != nil || !b.Commit(m) {
						t.Fatalf("build %d: %v", i, err)
					}
					if stamped {
						// Ids out of order: matched by id, not by order.
						b.SetID(i, BulkStamp|0x7000_0000+uint32(n-i))
					}
				}
			}
			before := time.Now()
			fill(true)
			if sent, err := tc.s.SendBatch(b); sent != n || err != nil {
				t.Fatalf("SendBatch = %d, %v", sent, err)
			}
			// On a Conn, a packet of TxTime's between the batch and
			// the reads: its stamp is TxTime's alone, the batch's
			// ReadTxStamps' (one reader of the error queue sorts them).
			c, shared := tc.s.(*Conn)
			const single = 5
			if shared {
				m, err := (&wire.Segment{Src: src, Dst: dst, TTL: 64, DF: true, SrcPort: ringPortLo + 16, DstPort: ringShutPort,
					Seq: 1000, Flags: wire.FlagSyn, Window: 64240}).Build(b.Slot())
				if err != nil {
					t.Fatal(err)
				}
				if err := c.Send(b.Slot()[:m], single); err != nil {
					t.Fatal(err)
				}
			}
			after := time.Now()
			if shared {
				time.Sleep(10 * time.Millisecond) // every stamp queued
				if at, ok := c.TxTime(single, tc.v6); !ok || at.Before(before) || at.After(after) {
					t.Errorf("TxTime of the packet sent beside the batch: %v %v, want within [%v, %v]", at, ok, before, after)
				}
			}
			st := NewTxStamps(8) // smaller than the batch: read in rounds
			got := map[uint32]time.Time{}
			for deadline := time.Now().Add(2 * time.Second); len(got) < n && time.Now().Before(deadline); {
				if err := tc.s.ReadTxStamps(st); err != nil {
					t.Fatal(err)
				}
				for i := range st.Len() {
					id, at := st.Stamp(i)
					if _, dup := got[id]; dup {
						t.Errorf("id %#x stamped twice", id)
					}
					got[id] = at
				}
				if !st.Full() {
					time.Sleep(time.Millisecond)
				}
			}
			var errs []time.Duration
			pkts, err := capture.Stop()
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				id := BulkStamp | 0x7000_0000 + uint32(n-i)
				at, ok := got[id]
				if !ok {
					t.Errorf("packet %d (id %#x): no stamp", i, id)
					continue
				}
				if at.Before(before) || at.After(after) {
					t.Errorf("packet %d stamped at %v, outside its send [%v, %v]", i, at, before, after)
				}
				// Its SYN in the capture: the one with its sequence number.
				for _, c := range pkts {
					var p wire.Packet
					if wire.Parse(c.Data, &p) == nil && p.Src == src && p.Flags == wire.FlagSyn && p.Seq == uint32(i) {
						errs = append(errs, at.Sub(c.Time).Abs())
					}
				}
			}
			if len(got) != n {
				t.Errorf("%d stamps, want %d: %v", len(got), n, got)
			}
			if _, ok := got[single]; ok {
				t.Errorf("ReadTxStamps returned TxTime's stamp (id %d)", single)
			}
			if len(errs) != n {
				t.Fatalf("%d of %d SYNs found in the capture", len(errs), n)
			}
			slices.Sort(errs)
			t.Logf("|stamp - capture|: median %v, max %v", errs[n/2], errs[n-1])
			// The ids run backwards: stamps matched by order would be
			// off by tens of µs (the packets leave some µs apart). The
			// accuracy itself is measured at scan rates, in cmd/synprobe.
			if errs[n/2] > 5*time.Microsecond || errs[n-1] > 2*time.Millisecond {
				t.Errorf("stamps %v from the capture's times", errs)
			}

			// A batch without ids asks for no stamps.
			b = NewBatch(n)
			fill(false)
			if sent, err := tc.s.SendBatch(b); sent != n || err != nil {
				t.Fatalf("SendBatch = %d, %v", sent, err)
			}
			time.Sleep(10 * time.Millisecond)
			if err := tc.s.ReadTxStamps(st); err != nil || st.Len() != 0 {
				t.Errorf("an unstamped batch: %d stamps, %v", st.Len(), err)
			}
		})
	}
}

// TestTxStampsAdd: the fakes' way in, bounded by the room.
func TestTxStampsAdd(t *testing.T) {
	s := NewTxStamps(2)
	t0 := time.Unix(1700000000, 123)
	if !s.Add(7, t0) || !s.Add(8, t0.Add(time.Microsecond)) || s.Add(9, t0) || !s.Full() {
		t.Fatal("Add past the room, or not up to it")
	}
	if id, at := s.Stamp(1); id != 8 || !at.Equal(t0.Add(time.Microsecond)) {
		t.Errorf("Stamp(1) = %d, %v", id, at)
	}
	s.Reset()
	if s.Len() != 0 || s.Full() {
		t.Error("Reset left stamps")
	}
}
