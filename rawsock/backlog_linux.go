//go:build linux

package rawsock

import (
	"bytes"
	"os"
	"strconv"
)

// softnetStat is the kernel's per-CPU receive statistics.
const softnetStat = "/proc/net/softnet_stat"

// kernelBacklog is KernelBacklog on Linux: softnet_stat's twelfth column
// (Linux 5.10 and later); a file without it says nothing: false.
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
