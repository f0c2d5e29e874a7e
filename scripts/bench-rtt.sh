#!/usr/bin/env bash
# Measure synprobe in a namespace lab (run as root; the lab removes itself):
#  - RTT accuracy: |synprobe RTT - capture RTT| per probe, 300 probes per
#    address family, against a tcpdump capture on the prober's veth; hping3
#    and nping measured the same way when installed;
#  - wall time of `synprobe -c 1` (and of hping3 -c 1);
#  - fin mode: close timings against a capture, and synprobe's own time;
# then the allocation-reporting micro-benchmarks of the packet code and the
# engine.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH:/usr/sbin:/sbin
echo "== whole-binary measurements (namespace lab)"
go test -count=1 -run '^$' -bench 'RTTAccuracy|OneShot|CloseAccuracy' -benchtime=1x -v ./cmd/synprobe/ |
	grep -E 'bench_linux_test|^Benchmark|^ok|FAIL' | sed 's/^ *//'
echo "== micro-benchmarks"
go test -count=1 -run '^$' -bench . -benchmem ./rawsock/ ./rawsock/rstguard/ ./rawsock/wire/ ./probe/ | grep -E '^Benchmark|^ok|FAIL'
