#!/usr/bin/env bash
# Memory of a long ping (issue #8): synprobe without -c at 5 kHz (-i 0.0002)
# against a lab listener for SECONDS, its output to a pipe that keeps the
# last lines; prints VmRSS every 5 s, the growth, and the last probe and
# summary lines. The RTT percentiles live in a histogram and a line of output
# allocates nothing, so it must stay flat.
# Usage (root): scripts/bench-ping-rss.sh [SYNPROBE [LABSERVER [SECONDS [FLAG...]]]]
# Extra flags go to synprobe: --json measures the JSON Lines output.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-bin/synprobe}
labserver=${2:-bin/labserver}
secs=${3:-60}
shift $(($# < 3 ? $# : 3))
name=sprss$$
p=$name-p t=$name-t
pid=
tail=$(mktemp)
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null || true
	rm -f "$tail"
	ip netns pids "$t" 2>/dev/null | xargs -r kill 2>/dev/null || true
	ip netns del "$p" 2>/dev/null || true
	ip netns del "$t" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

ip netns add "$p"
ip netns add "$t"
ip link add "${name}a" netns "$p" type veth peer name "${name}b" netns "$t"
ip -n "$p" addr add 198.18.201.1/24 dev "${name}a"
ip -n "$t" addr add 198.18.201.2/24 dev "${name}b"
for ns in "$p" "$t"; do ip -n "$ns" link set lo up; done
ip -n "$p" link set "${name}a" up
ip -n "$t" link set "${name}b" up
ip netns exec "$t" "$labserver" -listen 198.18.201.2:80 >/dev/null &
sleep 0.5

ip netns exec "$p" "$bin" -i 0.0002 "$@" 198.18.201.2:80 > >(tail -n 3 >"$tail") &
pid=$!
sleep 0.3
first=
for ((s = 0; s <= secs; s += 5)); do
	rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
	first=${first:-$rss}
	printf '%4d s  VmRSS %6d KiB\n' "$s" "$rss"
	((s < secs)) && sleep 5
done
kill -INT "$pid"
wait "$pid" || true
pid=
sleep 0.2 # the pipe's reader writes its lines
printf 'growth over %d s: %d KiB\n' "$secs" $((rss - first))
cat "$tail"
