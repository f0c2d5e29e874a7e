package scan

import (
	"testing"

	"github.com/synprobe/synprobe/probe/probetest"
)

// stampConn is a client's Conn that says what its sockets send and stamp,
// as rawsock.Conn does.
type stampConn struct {
	*probetest.Conn
	v4, v6, stamps bool
}

func (c stampConn) Families() (v4, v6 bool) { return c.v4, c.v6 }
func (c stampConn) BatchStamps() bool       { return c.stamps }

// TestShareable: a scan sends through its client's sockets only when
// they send every family it scans and stamp batches exactly when the
// scan reads their stamps (no ring); a Conn that says nothing of either
// (a fake) is shared.
func TestShareable(t *testing.T) {
	fake := probetest.NewConn(nil)
	both := [2]bool{true, true}
	for _, tt := range []struct {
		name   string
		c      stampConn
		fams   [2]bool
		stamps bool
		want   bool
	}{
		{"stamps read, stamped", stampConn{fake, true, true, true}, both, true, true},
		{"stamps read, none taken", stampConn{fake, true, true, false}, both, true, false},
		{"ring, none taken", stampConn{fake, true, true, false}, both, false, true},
		{"ring, stamped: nobody would read them", stampConn{fake, true, true, true}, both, false, false},
		{"no IPv6 socket", stampConn{fake, true, false, true}, both, true, false},
		{"no IPv6 socket, IPv4 scan", stampConn{fake, true, false, true}, [2]bool{true, false}, true, true},
		{"no IPv4 socket", stampConn{fake, false, true, true}, [2]bool{true, false}, true, false},
	} {
		if got := shareable(tt.c, tt.fams, tt.stamps) != nil; got != tt.want {
			t.Errorf("%s: shared %v, want %v", tt.name, got, tt.want)
		}
	}
	if shareable(fake, both, true) == nil {
		t.Error("a Conn that says nothing of its sockets was not shared")
	}
	if shareable(nil, both, true) != nil {
		t.Error("no Conn shared")
	}
}
