//go:build linux

package rawsock

import (
	"bytes"
	"os"
	"strconv"
)

// softnetStat is the kernel's per-CPU receive statistics.
const softnetStat = "/proc/net/softnet_stat"

// kernelBacklog reports whether any of the kernel's per-CPU receive
// backlogs holds packets (softnet_stat's twelfth column, Linux 5.10 and
// later): packets an interface received (veth, loopback, RPS) that the
// stack has not processed yet, so that no socket of ours, nor a packet
// ring, has them. On a machine short of CPU the stack's receive work
// waits in ksoftirqd with them. A file without the column says nothing:
// false. The backlogs are the host's, not a namespace's: another's
// traffic keeps them busy too, which a caller must bound.
func kernelBacklog() bool {
	b, err := os.ReadFile(softnetStat)
	if err != nil {
		return false
	}
	return backlogIn(b)
}

// backlogIn reads a softnet_stat file's backlog lengths.
func backlogIn(b []byte) bool {
	for line := range bytes.Lines(b) {
		f := bytes.Fields(line)
		if len(f) < 13 {
			return false
		}
		n, err := strconv.ParseUint(string(f[11]), 16, 32)
		if err == nil && n > 0 {
			return true
		}
	}
	return false
}
