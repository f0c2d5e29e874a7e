package scan

import (
	"net/netip"
	"testing"
	"time"
)

// The estimate follows RFC 6298 (SRTT, RTTVAR, SRTT + 4 RTTVAR) per host,
// at least MinRTO and at most the timeout, which is also the wait of a
// host never measured or without room in the table.
func TestHostRTTs(t *testing.T) {
	tab := newHostRTTs(16)
	a, b := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1")
	const max = 3 * time.Second
	if got := tab.timeout(a, 0, max); got != max {
		t.Errorf("unmeasured: %v, want %v", got, max)
	}
	// First sample R: SRTT = R, RTTVAR = R/2, RTO = 3R.
	tab.add(a, 200*time.Millisecond)
	if got := tab.timeout(a, 0, max); got != 600*time.Millisecond {
		t.Errorf("after 200 ms: %v, want 600 ms", got)
	}
	// R = 100 ms: RTTVAR = 3/4*100 + 1/4*100 = 100, SRTT = 7/8*200 + 1/8*100 = 187.5.
	tab.add(a, 100*time.Millisecond)
	if got, want := tab.timeout(a, 0, max), 587500*time.Microsecond; got != want {
		t.Errorf("after 200, 100 ms: %v, want %v", got, want)
	}
	// Another host's estimate is its own.
	if got := tab.timeout(b, 0, max); got != max {
		t.Errorf("%v, never measured: %v, want %v", b, got, max)
	}
	tab.add(b, 10*time.Microsecond)
	if got := tab.timeout(b, 0, max); got != MinRTO {
		t.Errorf("fast host: %v, want the floor %v", got, MinRTO)
	}
	if got := tab.timeout(b, 0, 50*time.Millisecond); got != 50*time.Millisecond {
		t.Errorf("a timeout below the floor: %v, want the timeout", got)
	}
	// A slow sample raises the wait at once (RTTVAR).
	tab.add(b, 2*time.Second)
	if got := tab.timeout(b, 0, 10*time.Second); got < 2*time.Second {
		t.Errorf("after a 2 s answer: %v", got)
	}
	// After the last probe the wait also covers the server's SYN-ACK
	// retransmission, a second on.
	if got := tab.timeout(a, time.Second, max); got != time.Second+587500*time.Microsecond {
		t.Errorf("last pass: %v, want 1.5875 s", got)
	}
	if got := tab.timeout(a, time.Second, time.Second); got != time.Second {
		t.Errorf("last pass, -w 1: %v, want the timeout", got)
	}
	// Nonsense samples are ignored.
	tab.add(netip.MustParseAddr("198.18.0.9"), -time.Second)
	if got := tab.timeout(netip.MustParseAddr("198.18.0.9"), 0, max); got != max {
		t.Errorf("negative RTT counted: %v", got)
	}
}

// A full table keeps what it has and gives newcomers the whole timeout.
func TestHostRTTsFull(t *testing.T) {
	tab := newHostRTTs(1) // 256 slots
	base := netip.MustParseAddr("198.18.0.0")
	a := base
	for range 1000 {
		tab.add(a, time.Millisecond)
		a = a.Next()
	}
	known, unknown := 0, 0
	a = base
	for range 1000 {
		if tab.timeout(a, 0, time.Second) == MinRTO {
			known++
		} else {
			unknown++
		}
		a = a.Next()
	}
	if known == 0 || known > 256 || known+unknown != 1000 {
		t.Errorf("%d hosts measured, %d not, in 256 slots", known, unknown)
	}
}
