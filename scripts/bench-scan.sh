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

# ratio NAME: after an nmap run, synprobe's time as a share of nmap's.
synwall=
ratio() {
	case $1 in
	synprobe) synwall=$wall ;;
	nmap) [ -n "$synwall" ] && printf '          synprobe/nmap = %.2f\n' "$(echo "$synwall / $wall" | bc -l)" ;;
	esac
	return 0
}

# run NAME CMD...: wall seconds, CPU seconds (user + system, ip netns
# exec's included), open ports, peak RSS (KiB).
run() {
	local label=$1; shift
	local out start end rss cpu
	start=$(date +%s.%N)
	out=$( { /usr/bin/time -f 'RSS %M CPU %U %S' ip netns exec "$p" "$@"; } 2>&1 || true)
	end=$(date +%s.%N)
	rss=$(grep -oE 'RSS [0-9]+' <<<"$out" | tail -1 | cut -d' ' -f2)
	cpu=$(grep -oE 'CPU [0-9.]+ [0-9.]+' <<<"$out" | tail -1 | awk '{print $2 + $3}')
	open=$(grep -cE '^open |^[0-9]+/tcp +open ' <<<"$out" || true)
	wall=$(echo "$end - $start" | bc)
	printf '%-9s wall %.3f s  cpu %5s s  open %4d  peak RSS %6s KiB\n' "$label" "$wall" "${cpu:-?}" "$open" "${rss:-?}"
	ratio "$label"
	grep -E '^[0-9]+ probes sent|^sent as' <<<"$out" | sed 's/^/         /' || true
}
# The rate limiter: achieved against asked, over the same scan.
run rate100k "$bin" scan --open --rate 100000 198.19.200.0/24:1-1000
for i in $(seq "$runs"); do
	run synprobe "$bin" scan --open --rate 0 198.19.200.0/24:1-1000
	if command -v nmap >/dev/null; then
		run nmap nmap -sS -n -Pn -T5 --min-rate 100000 -p1-1000 198.19.200.0/24
	fi
done

# The same /24 behind a firewall that drops 10% of the ports (every tenth,
# 80 among them): silent pairs cost honest waiting, each for its own
# host's timeout. Exact counts: 512 open, 25600 filtered, the rest closed.
ip netns exec "$t" nft -f - <<NFT
table inet bench {
	chain input {
		type filter hook input priority 0;
		tcp dport { $(seq -s, 10 10 1000) } drop
	}
}
NFT
# fw NAME CMD...: wall seconds and the counts of each verdict.
fw() {
	local label=$1; shift
	local out start end
	start=$(date +%s.%N)
	out=$(ip netns exec "$p" "$@" 2>&1 || true)
	end=$(date +%s.%N)
	local counts
	if [ "$label" = nmap ]; then
		# Its normal output: "Not shown: 898 closed tcp ports (reset),
		# 100 filtered tcp ports (no-response)" per host, and the
		# ports shown.
		local o c f
		count() { { grep -cE "$1" <<<"$out" || true; }; }
		sum() { { grep -oE "$1" <<<"$out" || true; } | { grep -oE '^[0-9]+' || true; } | awk '{s += $1} END {print s + 0}'; }
		o=$(count '^[0-9]+/tcp +open ')
		c=$(( $(count '^[0-9]+/tcp +closed ') + $(sum '[0-9]+ closed tcp ports') ))
		f=$(( $(count '^[0-9]+/tcp +filtered ') + $(sum '[0-9]+ filtered tcp ports') ))
		counts="$o open, $c closed, $f filtered"
	else
		# The scan's summary (each host's line counts the same way).
		counts=$(grep -E '^--- scan of' <<<"$out" | grep -oE '[0-9]+ open, [0-9]+ closed, [0-9]+ filtered')
	fi
	wall=$(echo "$end - $start" | bc)
	printf '%-9s wall %.3f s  %s\n' "$label" "$wall" "$counts"
	ratio "$label"
	grep -E '^[0-9]+ probes sent' <<<"$out" | sed 's/^/         /' || true
}
echo "== firewall dropping 10% of the ports (want 512 open, 229888 closed, 25600 filtered)"
for i in $(seq "$runs"); do
	fw synprobe "$bin" scan --open --rate 0 198.19.200.0/24:1-1000
	if command -v nmap >/dev/null; then
		fw nmap nmap -sS -n -Pn -T5 --min-rate 100000 -p1-1000 198.19.200.0/24
	fi
done
