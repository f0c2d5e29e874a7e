package scan

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/synprobe/synprobe/probe/internal/core"
)

// A feed's Read keeps Receiver's deadline, for the sockets' feed and for
// a ring's: one in the past returns at once, having handed over what
// waited.
func TestFeedReadDeadline(t *testing.T) {
	done := make(chan struct{})
	defer close(done)
	for _, ring := range []Receiver{nil, &connRing{}} {
		l := &core.Lease{
			Done:   done,
			Feed:   func(func([]byte, time.Time)) {},
			Attach: func(core.Bulk, func([]byte, time.Time), func(error)) {},
		}
		f := newFeed(l, ring)
		f.start()
		if ring == nil {
			f.packet([]byte{1}, time.Time{}) // before the first Read
		}
		got := 0
		fn := func([]byte, time.Time) { got++ }
		for i, want := range []int{1, 0} {
			if ring != nil && want == 1 {
				continue // a ring keeps its own
			}
			start := time.Now()
			n, err := f.Read(time.Now().Add(-time.Millisecond), fn)
			switch {
			case time.Since(start) > time.Second:
				t.Fatalf("ring %v, Read %d: returned after %v", ring != nil, i, time.Since(start))
			case want == 1 && (n != 1 || err != nil || got != 1):
				t.Errorf("ring %v: first Read handed over %d (%d), %v; want the early packet", ring != nil, n, got, err)
			case want == 0 && !errors.Is(err, os.ErrDeadlineExceeded):
				t.Errorf("ring %v: Read past its deadline: %d, %v; want a deadline error", ring != nil, n, err)
			}
		}
		f.stop()
		f.stop() // again: nothing more to do
	}
}
