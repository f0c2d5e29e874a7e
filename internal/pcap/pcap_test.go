package pcap

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/synprobe/synprobe/internal/pcap/pcapread"
	"github.com/synprobe/synprobe/probe"
	"github.com/synprobe/synprobe/rawsock/wire"
)

var _ probe.Recorder = (*Writer)(nil)

// clock is a settable user-space clock for a Writer.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTest(t *testing.T) (*Writer, *bytes.Buffer, *clock) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, "synprobe test")
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Unix(1_800_000_000, 123456789)}
	w.now = c.now
	return w, &buf, c
}

func readBack(t *testing.T, w *Writer, buf *bytes.Buffer) []pcapread.Record {
	t.Helper()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	recs, err := pcapread.Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("reading back: %v", err)
	}
	return recs
}

// syn builds a SYN of the family of src.
func syn(t *testing.T, src, dst string, payload int) []byte {
	t.Helper()
	seg := wire.Segment{
		Src: mustAddr(src), Dst: mustAddr(dst), TTL: 64, DF: true,
		SrcPort: 61000, DstPort: 80, Seq: 1, Flags: wire.FlagSyn, Window: 64240,
		Payload: make([]byte, payload),
	}
	b := make([]byte, 70000)
	n, err := seg.Build(b)
	if err != nil {
		t.Fatal(err)
	}
	return b[:n]
}

// TestWriterOrderAndClocks: both families, a packet longer than any
// (a hostile 70,000 bytes), a stamp that comes late, one that never
// comes, one for an unknown id: every packet is written once, in the
// order recorded, with the time and comment of the clock that timed it.
func TestWriterOrderAndClocks(t *testing.T) {
	w, buf, c := newTest(t)
	t0 := c.t
	v4 := syn(t, "198.18.0.1", "198.18.0.2", 0)
	v6 := syn(t, "2001:db8::1", "2001:db8::2", 1000)
	long := bytes.Repeat([]byte{0x45, 0xff}, 35000)

	w.Sent(v4, 7, time.Time{}, t0)                                        // stamped below
	w.Received(v6, t0.Add(30*time.Microsecond), t0.Add(time.Millisecond)) // waits behind it
	w.TxStamp(99, t0)                                                     // nobody's: ignored
	w.TxStamp(7, t0.Add(2*time.Microsecond))
	w.Sent(v6, 8, time.Time{}, t0.Add(time.Second)) // its stamp never comes
	w.Received(long, time.Time{}, t0.Add(time.Second+time.Millisecond))
	w.Sent(v4, 9, t0.Add(3*time.Second), t0.Add(3*time.Second-time.Microsecond)) // stamped already
	if n := w.Packets(); n != 0 {
		t.Errorf("%d packets written within Reorder, want 0", n)
	}
	c.t = t0.Add(time.Millisecond + Reorder)
	w.TxStamp(12345, c.t) // a stamp for nothing recorded yet releases what it may
	if n := w.Packets(); n != 2 {
		t.Errorf("%d packets written while packet 3 waits for its stamp, want 2", n)
	}
	c.t = t0.Add(time.Second + Hold)
	w.Received(nil, time.Time{}, c.t) // an empty read: written as it is
	if n := w.Packets(); n != 4 {
		t.Errorf("%d packets written once packet 3 waited Hold, want 4", n)
	}
	recs := readBack(t, w, buf)
	want := []struct {
		data    []byte
		at      time.Time
		comment string
	}{
		{v4, t0.Add(2 * time.Microsecond), CommentSentKernel},
		{v6, t0.Add(30 * time.Microsecond), CommentRecvKernel},
		{v6, t0.Add(time.Second), CommentSentUser},
		{long, t0.Add(time.Second + time.Millisecond), CommentRecvUser},
		{nil, c.t, CommentRecvUser},
		{v4, t0.Add(3 * time.Second), CommentSentKernel}, // recorded before the empty read, timed after it
	}
	if len(recs) != len(want) {
		t.Fatalf("%d packets read back, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		w := want[i]
		if !bytes.Equal(r.Data, w.data) || !r.Time.Equal(w.at) || r.Comment != w.comment {
			t.Errorf("packet %d: %d bytes at %v %q; want %d bytes at %v %q", i, len(r.Data), r.Time, r.Comment, len(w.data), w.at, w.comment)
		}
		if sent := strings.HasPrefix(w.comment, "sent"); r.Sent != sent {
			t.Errorf("packet %d: outbound flag %v, want %v", i, r.Sent, sent)
		}
	}
	if tcpdump, err := exec.LookPath("tcpdump"); err == nil {
		path := filepath.Join(t.TempDir(), "w.pcapng")
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(tcpdump, "-r", path, "-nn", "--time-stamp-precision=nano").CombinedOutput()
		if err != nil {
			t.Fatalf("tcpdump -r: %v\n%s", err, out)
		}
		for _, s := range []string{"link-type RAW", "198.18.0.1.61000 > 198.18.0.2.80: Flags [S]", "2001:db8::1.61000 > 2001:db8::2.80: Flags [S]"} {
			if !strings.Contains(string(out), s) {
				t.Errorf("tcpdump -r does not say %q:\n%s", s, out)
			}
		}
	}
}

// TestWriterBounds: packets that wait for stamps never hold more than
// MaxQueue packets or MaxBytes: beyond, the oldest go out with the time
// they have.
func TestWriterBounds(t *testing.T) {
	w, buf, c := newTest(t)
	pkt := syn(t, "198.18.0.1", "198.18.0.2", 0)
	for i := range MaxQueue + 10 {
		w.Sent(pkt, uint32(i), time.Time{}, c.t)
	}
	if n := w.Packets(); n != 10 {
		t.Errorf("%d written with %d waiting for stamps; want 10", n, MaxQueue+10)
	}
	w.TxStamp(5, c.t.Add(time.Microsecond))            // written already
	w.TxStamp(MaxQueue+9, c.t.Add(3*time.Microsecond)) // the newest
	recs := readBack(t, w, buf)
	if len(recs) != MaxQueue+10 {
		t.Fatalf("%d packets, want %d", len(recs), MaxQueue+10)
	}
	if r := recs[5]; r.Kernel {
		t.Errorf("packet 5, written before its stamp came, is %q", r.Comment)
	}
	if r := recs[len(recs)-1]; !r.Kernel || !r.Time.Equal(c.t.Add(3*time.Microsecond)) {
		t.Errorf("the last packet: %v %q, want its stamp", r.Time, r.Comment)
	}

	w, buf, c = newTest(t)
	big := syn(t, "2001:db8::1", "2001:db8::2", 65000)
	n := MaxBytes/len(big) + 3
	for i := range n {
		w.Sent(big, uint32(i), time.Time{}, c.t)
	}
	if got := w.Packets(); got < 3 || w.bytes > MaxBytes {
		t.Errorf("%d written, %d bytes waiting: over MaxBytes", got, w.bytes)
	}
	if recs := readBack(t, w, buf); len(recs) != n {
		t.Errorf("%d packets, want %d", len(recs), n)
	}
}

// TestWriterConcurrent: senders, stamps and reads from several goroutines
// at once (run with -race): every packet is written once.
func TestWriterConcurrent(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, "test")
	if err != nil {
		t.Fatal(err)
	}
	pkt := syn(t, "198.18.0.1", "198.18.0.2", 0)
	var wg sync.WaitGroup
	const each = 2000
	for g := range 4 {
		wg.Go(func() {
			for i := range each {
				id := uint32(g*each + i)
				now := time.Now()
				switch g {
				case 3:
					w.Received(pkt, now, now)
				default:
					w.Sent(pkt, id, time.Time{}, now)
					w.TxStamp(id, now.Add(time.Microsecond))
				}
			}
		})
	}
	wg.Wait()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	recs, err := pcapread.Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 4*each {
		t.Fatalf("%d packets, want %d", len(recs), 4*each)
	}
	for i, r := range recs {
		if !r.Kernel {
			t.Fatalf("packet %d: %q, want a kernel stamp", i, r.Comment)
		}
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n -= len(p); f.n < 0 {
		return 0, syscall.ENOSPC
	}
	return len(p), nil
}

// TestWriterError: a full disk ends the writing, not the run: the error
// comes from Flush, and recording goes on without writing.
func TestWriterError(t *testing.T) {
	w, err := NewWriter(&failWriter{n: 10000}, "test")
	if err != nil {
		t.Fatal(err)
	}
	pkt := syn(t, "198.18.0.1", "198.18.0.2", 1000)
	for i := range 100 {
		w.Received(pkt, time.Time{}, time.Now().Add(time.Duration(i)*FlushEvery))
	}
	if err := w.Flush(); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Flush: %v, want ENOSPC", err)
	}
}

// TestCreate: a regular file is created or truncated; a directory, a
// device or a FIFO is refused, at once (a FIFO without a reader would
// block an open for writing) and untouched.
func TestCreate(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old.pcapng")
	if err := os.WriteFile(old, []byte("previous capture"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(old, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "new.pcapng"), old, link} {
		f, err := Create(p)
		if err != nil {
			t.Fatalf("Create(%s): %v", p, err)
		}
		if fi, _ := f.Stat(); fi.Size() != 0 {
			t.Errorf("Create(%s): %d bytes left", p, fi.Size())
		}
		f.Close()
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, "/dev/null", fifo} {
		done := make(chan error, 1)
		go func() {
			f, err := Create(p)
			if err == nil {
				f.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, ErrNotRegular) {
				t.Errorf("Create(%s): %v, want a refusal", p, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Create(%s) blocks", p)
		}
	}
	if _, err := Create(filepath.Join(dir, "no", "such", "dir")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Create in a missing directory: %v", err)
	}
}

// TestWriterLateSender: a scan's receiver may record an answer, and read
// its probe's stamp, before the thread that sent the probe records it:
// the probe still gets its stamp, and the file its order of time.
func TestWriterLateSender(t *testing.T) {
	w, buf, c := newTest(t)
	t0 := c.t
	probe := syn(t, "2001:db8::1", "2001:db8::2", 0)
	answer := syn(t, "2001:db8::2", "2001:db8::1", 0)
	w.Received(answer, t0.Add(40*time.Microsecond), t0.Add(50*time.Microsecond))
	w.TxStamp(3, t0.Add(10*time.Microsecond))
	c.t = t0.Add(time.Millisecond)
	w.Sent(probe, 3, time.Time{}, t0) // its stamp came first
	recs := readBack(t, w, buf)
	if len(recs) != 2 || !bytes.Equal(recs[0].Data, probe) || !recs[0].Kernel || !recs[0].Time.Equal(t0.Add(10*time.Microsecond)) ||
		!bytes.Equal(recs[1].Data, answer) || !recs[1].Time.Equal(t0.Add(40*time.Microsecond)) {
		for _, r := range recs {
			t.Logf("%d bytes at %v %q", len(r.Data), r.Time, r.Comment)
		}
		t.Errorf("want the probe at its stamp, then the answer")
	}
}
