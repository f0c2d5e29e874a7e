package netlab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

// record is one frame of a crafted pcap file.
type record struct {
	sec, frac uint32
	frame     []byte
	cut       int // bytes of the packet beyond the snapshot
}

// craftPCAP builds a pcap file the way libpcap writes one.
func craftPCAP(bo binary.AppendByteOrder, magic uint32, link uint32, recs ...record) []byte {
	b := bo.AppendUint32(nil, magic)
	b = bo.AppendUint16(b, 2) // version 2.4
	b = bo.AppendUint16(b, 4)
	b = bo.AppendUint32(b, 0)   // thiszone
	b = bo.AppendUint32(b, 0)   // sigfigs
	b = bo.AppendUint32(b, 256) // snaplen
	b = bo.AppendUint32(b, link)
	for _, r := range recs {
		b = bo.AppendUint32(b, r.sec)
		b = bo.AppendUint32(b, r.frac)
		b = bo.AppendUint32(b, uint32(len(r.frame)))       // incl_len
		b = bo.AppendUint32(b, uint32(len(r.frame)+r.cut)) // orig_len
		b = append(b, r.frame...)
	}
	return b
}

var (
	// A 20-byte IPv4 header (SYN-sized packets need no more for the parser).
	ipv4Packet = []byte{
		0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 6, 0, 0,
		198, 18, 0, 1, 198, 18, 0, 2,
	}
	// A 40-byte IPv6 header: 2001:db8::1 -> 2001:db8::2, next header TCP.
	ipv6Packet = append([]byte{0x60, 0, 0, 0, 0, 0, 6, 64},
		append(ip6(1), ip6(2)...)...)
	macs = []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1}
)

func ip6(last byte) []byte {
	a := []byte{0x20, 0x01, 0x0d, 0xb8, 14: 0, 15: last}
	return a
}

func ether(etherType uint16, payload []byte) []byte {
	f := append([]byte{}, macs...)
	f = binary.BigEndian.AppendUint16(f, etherType)
	return append(f, payload...)
}

func TestParsePCAP(t *testing.T) {
	vlan := append(append([]byte{}, macs...), 0x81, 0x00, 0x00, 0x05, 0x08, 0x00)
	vlan = append(vlan, ipv4Packet...)
	arp := ether(0x0806, make([]byte, 28))
	frames := []record{
		{sec: 1700000000, frac: 123456, frame: ether(0x0800, ipv4Packet)},
		{sec: 1700000001, frac: 5, frame: arp},                            // skipped
		{sec: 1700000002, frac: 999999, frame: ether(0x86dd, ipv6Packet)}, // v6
		{sec: 1700000003, frac: 0, frame: vlan},                           // 802.1Q
		{sec: 1700000004, frac: 0, frame: []byte{1, 2, 3}},                // runt, skipped
		{sec: 1700000005, frac: 0, frame: ether(0x0800, []byte{0x60})},    // type says v4, version 6: skipped
	}
	for _, tc := range []struct {
		name  string
		bo    binary.AppendByteOrder
		magic uint32
		unit  time.Duration
	}{
		{"micro little-endian", binary.LittleEndian, magicMicro, time.Microsecond},
		{"nano little-endian", binary.LittleEndian, magicNano, time.Nanosecond},
		{"micro big-endian", binary.BigEndian, magicMicro, time.Microsecond},
		{"nano big-endian", binary.BigEndian, magicNano, time.Nanosecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkts, err := ParsePCAP(craftPCAP(tc.bo, tc.magic, linkEthernet, frames...))
			if err != nil {
				t.Fatal(err)
			}
			want := []CapturedPacket{
				{time.Unix(1700000000, 0).Add(123456 * tc.unit), ipv4Packet, len(ipv4Packet)},
				{time.Unix(1700000002, 0).Add(999999 * tc.unit), ipv6Packet, len(ipv6Packet)},
				{time.Unix(1700000003, 0), ipv4Packet, len(ipv4Packet)},
			}
			if len(pkts) != len(want) {
				t.Fatalf("got %d packets, want %d", len(pkts), len(want))
			}
			for i := range want {
				if !pkts[i].Time.Equal(want[i].Time) {
					t.Errorf("packet %d: time %v, want %v", i, pkts[i].Time, want[i].Time)
				}
				if !bytes.Equal(pkts[i].Data, want[i].Data) {
					t.Errorf("packet %d: data %x, want %x", i, pkts[i].Data, want[i].Data)
				}
			}
		})
	}
}

func TestParsePCAPLinkTypes(t *testing.T) {
	sll := append(make([]byte, 14), 0x86, 0xdd)
	for _, tc := range []struct {
		name  string
		link  uint32
		frame []byte
		want  []byte
	}{
		{"raw v4", linkRaw, ipv4Packet, ipv4Packet},
		{"raw v6", linkRaw, ipv6Packet, ipv6Packet},
		{"raw garbage", linkRaw, []byte{0x00, 1}, nil},
		{"ipv4", linkIPv4, ipv4Packet, ipv4Packet},
		{"ipv6", linkIPv6, ipv6Packet, ipv6Packet},
		{"linux sll", linkLinuxSLL, append(sll, ipv6Packet...), ipv6Packet},
		{"ethernet with FCS flag bits", linkEthernet | 0x10000000, ether(0x0800, ipv4Packet), ipv4Packet},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pkts, err := ParsePCAP(craftPCAP(binary.LittleEndian, magicNano, tc.link, record{frame: tc.frame}))
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if len(pkts) != 0 {
					t.Fatalf("got %d packets, want none", len(pkts))
				}
				return
			}
			if len(pkts) != 1 || !bytes.Equal(pkts[0].Data, tc.want) {
				t.Fatalf("got %v, want one packet %x", pkts, tc.want)
			}
		})
	}
}

func TestParsePCAPEmpty(t *testing.T) {
	pkts, err := ParsePCAP(craftPCAP(binary.LittleEndian, magicNano, linkEthernet))
	if err != nil || len(pkts) != 0 {
		t.Fatalf("header-only file: %v, %v", pkts, err)
	}
}

// TestParsePCAPTruncated cuts a valid file at every length: cuts on a record
// boundary are valid files, every other cut must report ErrTruncated with
// the packets before it, and none may panic.
func TestParsePCAPTruncated(t *testing.T) {
	recs := []record{
		{sec: 1, frame: ether(0x0800, ipv4Packet)},
		{sec: 2, frame: ether(0x86dd, ipv6Packet)},
	}
	full := craftPCAP(binary.LittleEndian, magicNano, linkEthernet, recs...)
	boundaries := map[int]int{globalHeaderLen: 0} // cut length -> complete records
	off := globalHeaderLen
	for i, r := range recs {
		off += recordHeaderLen + len(r.frame)
		boundaries[off] = i + 1
	}
	for n := 0; n < len(full); n++ {
		pkts, err := ParsePCAP(full[:n])
		if want, ok := boundaries[n]; ok {
			if err != nil || len(pkts) != want {
				t.Errorf("cut at %d (record boundary): %d packets, %v; want %d, nil", n, len(pkts), err, want)
			}
			continue
		}
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("cut at %d: err = %v, want ErrTruncated", n, err)
		}
	}
}

func TestParsePCAPErrors(t *testing.T) {
	good := craftPCAP(binary.LittleEndian, magicMicro, linkEthernet)
	badVersion := append([]byte{}, good...)
	badVersion[4] = 1
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"pcapng", append([]byte{0x0a, 0x0d, 0x0d, 0x0a}, good[4:]...)},
		{"version 1", badVersion},
		{"link type 105 (802.11)", craftPCAP(binary.LittleEndian, magicMicro, 105)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParsePCAP(tc.b); err == nil || errors.Is(err, ErrTruncated) {
				t.Fatalf("err = %v, want a format error", err)
			}
		})
	}
}

func FuzzParsePCAP(f *testing.F) {
	// A valid nanosecond file with an IPv4 and an IPv6 packet.
	f.Add(craftPCAP(binary.LittleEndian, magicNano, linkEthernet,
		record{sec: 1, frame: ether(0x0800, ipv4Packet)}, record{sec: 2, frame: ether(0x86dd, ipv6Packet)}))
	// Big-endian microsecond file with a VLAN-tagged runt: tag but no type.
	f.Add(craftPCAP(binary.BigEndian, magicMicro, linkEthernet, record{frame: append(append([]byte{}, macs...), 0x81, 0)}))
	// A record claiming 4 GiB: must not allocate or slice out of range.
	f.Add(append(craftPCAP(binary.LittleEndian, magicMicro, linkRaw), 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0))
	// Linux cooked header cut short.
	f.Add(craftPCAP(binary.LittleEndian, magicNano, linkLinuxSLL, record{frame: make([]byte, 15)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		pkts, _ := ParsePCAP(b)
		for _, p := range pkts {
			if len(p.Data) == 0 || (p.Data[0]>>4 != 4 && p.Data[0]>>4 != 6) {
				t.Fatalf("non-IP packet returned: %x", p.Data)
			}
		}
	})
}

// TestSnapshotTrimmed: a packet longer than the snapshot comes back with
// its IP length field cut to what was captured, and its wire length in Len.
func TestSnapshotTrimmed(t *testing.T) {
	for _, ip := range [][]byte{ipv4Packet, ipv6Packet} {
		long := append([]byte(nil), ip...)
		if long[0]>>4 == 4 {
			binary.BigEndian.PutUint16(long[2:], 5000)
		} else {
			binary.BigEndian.PutUint16(long[4:], 5000-40)
		}
		eth := append([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00}, long...)
		if long[0]>>4 == 6 {
			eth[12], eth[13] = 0x86, 0xdd
		}
		pkts, err := ParsePCAP(craftPCAP(binary.LittleEndian, magicNano, linkEthernet, record{frame: eth, cut: 5000 - len(long)}))
		if err != nil || len(pkts) != 1 {
			t.Fatalf("%d packets, %v", len(pkts), err)
		}
		p := pkts[0]
		if p.Len != 5000 || !bytes.Equal(p.Data, ip) {
			t.Errorf("len %d, data %x; want 5000, %x", p.Len, p.Data, ip)
		}
	}
}
