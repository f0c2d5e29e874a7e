//go:build linux

package rawsock

import (
	"os"
	"testing"
)

// TestBacklogIn reads softnet_stat as Linux 6.x writes it (processed,
// dropped, time_squeeze, six zeros, received_rps, flow_limit_count, the
// backlog's length, the CPU's index, input and process queue lengths),
// and says nothing for a file without the column.
func TestBacklogIn(t *testing.T) {
	const empty = "1b7fd0ce 00000000 00000e3f 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n" +
		"1b961f38 00000000 00000de9 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 00000000 00000000\n"
	const busy = "1b7fd0ce 00000000 00000e3f 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n" +
		"1b961f38 00000000 00000de9 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 0000001a 00000001 00000010 0000000a\n"
	const old = "1b7fd0ce 00000000 00000e3f 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000\n"
	for _, c := range []struct {
		name, text string
		want       bool
	}{{"empty", empty, false}, {"busy", busy, true}, {"without the column", old, false}, {"nothing", "", false}} {
		if got := backlogIn([]byte(c.text)); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if kernelBacklog() {
		t.Log("the kernel's receive backlog holds packets now")
	}
}

// kernelBacklog reads the file again on the descriptor it keeps, and
// opens it again once that descriptor reads nothing (a namespace gone
// away).
func TestKernelBacklogRereads(t *testing.T) {
	if _, err := os.Stat(softnetStat); err != nil {
		t.Skip(err)
	}
	for range 3 {
		kernelBacklog() // the backlogs change between reads: only no failure is asked of these
	}
	softnet.Lock()
	f := softnet.f
	softnet.Unlock()
	if f == nil {
		t.Fatal("the file is not kept open")
	}
	f.Close() // as a namespace gone away would leave it: reads fail
	kernelBacklog()
	softnet.Lock()
	reopened := softnet.f == nil
	softnet.Unlock()
	if !reopened {
		t.Fatal("a descriptor that failed is kept")
	}
	kernelBacklog()
	softnet.Lock()
	defer softnet.Unlock()
	if softnet.f == nil {
		t.Fatal("not opened again")
	}
}
