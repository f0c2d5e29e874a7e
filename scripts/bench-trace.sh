#!/usr/bin/env bash
# Compare synprobe trace with tcptraceroute, traceroute -T and nmap
# --traceroute (those installed: apt-get install tcptraceroute traceroute
# nmap) in the trace lab of cmd/synprobe/trace_linux_test.go: three Linux
# routers, r2 clamping the MSS of port 80 to 1200 and rewriting SYNs to 85
# (SACK-permitted and timestamps NOP'd, window 1024, ECE/CWR cleared, DSCP
# CS1), r3 dropping SYNs to 81 and rejecting those to 82 (admin-prohibited).
# Prints each tool's output and a comparison table. Run as root; every lab
# removes itself.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH:/usr/sbin:/sbin
go test -count=1 -run '^$' -bench 'TraceTools' -benchtime=1x -v ./cmd/synprobe/ |
	grep -vE '^(goos|goarch|pkg|cpu):' | sed 's/^    //'
