package wire_test

import (
	"testing"

	"github.com/synprobe/synprobe/rawsock/wire"
)

func TestTCPFlagsString(t *testing.T) {
	for _, tc := range []struct {
		f    wire.TCPFlags
		want string
	}{
		{0, "."},
		{wire.FlagFin, "F"},
		{wire.FlagSyn, "S"},
		{wire.FlagRst, "R"},
		{wire.FlagPsh, "P"},
		{wire.FlagAck, "A"},
		{wire.FlagUrg, "U"},
		{wire.FlagEce, "E"},
		{wire.FlagCwr, "C"},
		{wire.FlagSyn | wire.FlagAck, "SA"},
		{wire.FlagFin | wire.FlagAck, "FA"},
		{wire.FlagRst | wire.FlagAck, "RA"},
		{wire.FlagPsh | wire.FlagAck, "PA"},
		{wire.FlagSyn | wire.FlagEce | wire.FlagCwr, "SEC"},
		{wire.FlagSyn | wire.FlagAck | wire.FlagEce, "SAE"},
		{0xff, "FSRPAUEC"},
	} {
		if got := tc.f.String(); got != tc.want {
			t.Errorf("TCPFlags(%#02x).String() = %q, want %q", uint8(tc.f), got, tc.want)
		}
	}
	if wire.FlagFin != 0x01 || wire.FlagCwr != 0x80 {
		t.Error("flag bit values")
	}
	if !(wire.FlagSyn | wire.FlagAck).Has(wire.FlagSyn) || wire.FlagSyn.Has(wire.FlagSyn|wire.FlagAck) {
		t.Error("Has")
	}
}

func TestTCPView(t *testing.T) {
	b := make(wire.TCP, 32)
	b.SetSrcPort(0x1234)
	b.SetDstPort(0xfedc)
	b.SetSeq(0x01020304)
	b.SetAck(0xa1a2a3a4)
	b.SetDataOffset(24)
	b.SetFlags(wire.FlagSyn | wire.FlagAck)
	b.SetWindow(0x4567)
	b.SetChecksum(0xbeef)
	b.SetUrgentPointer(0x0102)
	want := []byte{0x12, 0x34, 0xfe, 0xdc, 1, 2, 3, 4, 0xa1, 0xa2, 0xa3, 0xa4, 0x60, 0x12, 0x45, 0x67, 0xbe, 0xef, 1, 2}
	if string(b[:20]) != string(want) {
		t.Fatalf("header % x, want % x", b[:20], want)
	}
	if b.SrcPort() != 0x1234 || b.DstPort() != 0xfedc || b.Seq() != 0x01020304 || b.Ack() != 0xa1a2a3a4 ||
		b.DataOffset() != 24 || b.Flags() != wire.FlagSyn|wire.FlagAck || b.Window() != 0x4567 ||
		b.Checksum() != 0xbeef || b.UrgentPointer() != 0x0102 {
		t.Error("accessor mismatch")
	}
	if len(b.Options()) != 4 || len(b.Payload()) != 8 {
		t.Errorf("Options %d bytes, Payload %d bytes", len(b.Options()), len(b.Payload()))
	}
	// Inconsistent data offsets give nil, not a panic.
	for _, doff := range []int{0, 16, 36, 60} {
		b.SetDataOffset(doff)
		if b.Options() != nil || b.Payload() != nil {
			t.Errorf("data offset %d: Options/Payload not nil", doff)
		}
	}
}
