#!/usr/bin/env bash
# Scan benchmark (issue #4): 256 hosts x ports 1-1000 (256,000 probes) in a
# namespace lab whose target answers for a whole /24 with three open ports
# per host, synprobe beside nmap -sS -T5 --min-rate 100000 when installed.
# Prints wall time, open ports found and peak memory of each run.
# Usage (root): scripts/bench-scan.sh [SYNPROBE [LABSERVER [RUNS]]]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-bin/synprobe}
labserver=${2:-bin/labserver}
runs=${3:-3}
name=spbench$$
p=$name-p t=$name-t
cleanup() {
	ip netns pids "$t" 2>/dev/null | xargs -r kill 2>/dev/null || true
	ip netns del "$p" 2>/dev/null || true
	ip netns del "$t" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

ip netns add "$p"
ip netns add "$t"
ip link add "${name}a" netns "$p" type veth peer name "${name}b" netns "$t"
ip -n "$p" addr add 198.18.200.1/24 dev "${name}a"
ip -n "$t" addr add 198.18.200.2/24 dev "${name}b"
for ns in "$p" "$t"; do ip -n "$ns" link set lo up; done
ip -n "$p" link set "${name}a" up
ip -n "$t" link set "${name}b" up
ip -n "$t" route add local 198.19.200.0/24 dev lo
ip -n "$p" route add 198.19.200.0/24 via 198.18.200.2
ip netns exec "$t" sysctl -qw net.ipv4.tcp_max_syn_backlog=65536
ip netns exec "$t" "$labserver" -listen 0.0.0.0:22 -listen 0.0.0.0:80 -listen 0.0.0.0:443 >/dev/null &
sleep 0.5
# The gateway's MAC, as a resolved neighbour (synprobe sends Ethernet
# frames straight to it when it is known).
mac=$(ip -n "$t" -br link show dev "${name}b" | awk '{print $3}')
ip -n "$p" neigh replace 198.18.200.2 lladdr "$mac" dev "${name}a" nud permanent

# run NAME CMD...: wall seconds, open ports, peak RSS (KiB).
run() {
	local label=$1; shift
	local out start end rss
	start=$(date +%s.%N)
	out=$( { /usr/bin/time -f 'RSS %M' ip netns exec "$p" "$@"; } 2>&1 || true)
	end=$(date +%s.%N)
	rss=$(grep -oE 'RSS [0-9]+' <<<"$out" | tail -1 | cut -d' ' -f2)
	open=$(grep -cE '^open |^[0-9]+/tcp +open ' <<<"$out" || true)
	printf '%-9s wall %.3f s  open %4d  peak RSS %6s KiB\n' "$label" "$(echo "$end - $start" | bc)" "$open" "${rss:-?}"
	grep -E '^[0-9]+ probes sent|^sent as' <<<"$out" | sed 's/^/         /' || true
}
# The rate limiter: achieved against asked, over the same scan.
run rate100k "$bin" --open --rate 100000 198.19.200.0/24:1-1000
for i in $(seq "$runs"); do
	run synprobe "$bin" --open --rate 0 198.19.200.0/24:1-1000
	if command -v nmap >/dev/null; then
		run nmap nmap -sS -n -Pn -T5 --min-rate 100000 -p1-1000 198.19.200.0/24
	fi
done
