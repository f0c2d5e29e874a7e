#!/usr/bin/env bash
# synprobe serve under load (issue 12): 10,000 target pairs (250 hosts of a
# /24 answered by one namespace x 40 ports, 2 of them listening) probed
# once a second each in the background by one `synprobe serve`, rst mode.
# After a warm-up, over DURATION seconds: the CPU share of the process
# (utime + stime from /proc), its peak RSS (VmHWM), the time and size of a
# /metrics scrape (every SCRAPE seconds, with gzip, as Prometheus would), and the probes
# made against the 10,000 a second the schedule asks for
# (synprobe_requests_total), with the rounds skipped, and the results of
# those that ended (every pair answers: a timeout would be a reply the
# engine missed). And the RTT error of
# one watched target (a host outside the 10,000, probed through /probe 100
# times) against a tcpdump capture on the prober's interface, idle (no
# background targets) and under the load (the same serve after SIGHUP).
#
# The lab's target answers on a kernel thread of its own: veth otherwise
# runs the receiving namespace's whole stack (the target's TCP answering
# each SYN, then our side receiving that answer) inside the sender's
# system call, and that CPU, a third of serve's in this lab, would be
# charged to serve, which a real network never does. The target's end
# takes its packets through NAPI (GRO on; TSO off on our end, since veth
# hands TSO-capable senders' TCP packets straight to the stack) in a
# threaded NAPI kthread, whose CPU share is printed beside serve's.
# BENCH_TARGET_INLINE=1 keeps the old lab, the target's stack in our sends.
# Usage (root): scripts/bench-serve.sh [SYNPROBE [LABSERVER [DURATION [SCRAPE]]]]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-bin/synprobe}
labserver=${2:-bin/labserver}
duration=${3:-60}
every=${4:-15}
warmup=10
name=spserve$$
p=$name-p t=$name-t
dir=$(mktemp -d)
serve_pid=
cleanup() {
	[ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null || true
	serve_pid=
	# What runs in the namespaces (the target's listener; a capture or a
	# curl of ours if a signal came meanwhile) would keep them alive.
	for ns in "$p" "$t"; do ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true; done
	ip netns del "$p" 2>/dev/null || true
	ip netns del "$t" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$p"
ip netns add "$t"
ip link add "${name}a" netns "$p" type veth peer name "${name}b" netns "$t"
ip -n "$p" addr add 198.18.201.1/24 dev "${name}a"
ip -n "$t" addr add 198.18.201.2/24 dev "${name}b"
for ns in "$p" "$t"; do ip -n "$ns" link set lo up; done
ip -n "$p" link set "${name}a" up
ip -n "$t" link set "${name}b" up
napi=
if [ "${BENCH_TARGET_INLINE:-}" != 1 ]; then
	before=$(pgrep '^napi/' || true)
	ip netns exec "$p" ethtool -K "${name}a" tso off >/dev/null
	ip netns exec "$t" ethtool -K "${name}b" gro on >/dev/null
	if ! ip netns exec "$t" sh -c "echo 1 >/sys/class/net/${name}b/threaded" 2>/dev/null; then
		echo "bench-serve: no threaded NAPI for the target's veth end (Linux 5.13 or later; BENCH_TARGET_INLINE=1 runs without)" >&2
		exit 1
	fi
	# The thread is named napi/DEVICE-ID (in full in /proc/PID/comm, which
	# pgrep will not match beyond 15 characters); where the kernel cuts
	# the name, the threads that came with ours.
	napi=$({ grep -l "^napi/${name}b-" /proc/[0-9]*/comm 2>/dev/null || true; } | cut -d/ -f3)
	[ -n "$napi" ] || napi=$(comm -13 <(echo "$before" | sort) <(pgrep '^napi/' | sort) || true)
	case $(echo "$napi" | grep -c .) in
	1) ;;
	0) echo "bench-serve: no NAPI thread for the target's veth end (BENCH_TARGET_INLINE=1 runs without)" >&2 && exit 1 ;;
	*) echo "bench-serve: more than one NAPI thread came with the target's veth end (another lab at the same time?)" >&2 && exit 1 ;;
	esac
fi
ip -n "$t" route add local 198.19.201.0/24 dev lo
ip -n "$p" route add 198.19.201.0/24 via 198.18.201.2
mac=$(ip -n "$t" -br link show dev "${name}b" | awk '{print $3}')
ip -n "$p" neigh replace 198.18.201.2 lladdr "$mac" dev "${name}a" nud permanent
ip netns exec "$t" "$labserver" -listen 0.0.0.0:22 -listen 0.0.0.0:53 >/dev/null &
sleep 0.5

chmod 755 "$dir"
printf 'modules:\n  rst: {mode: rst, timeout: 1s}\n' >"$dir/idle.yml"
{
	echo 'modules:'
	echo '  rst: {mode: rst, timeout: 1s}'
	echo 'targets:'
	echo '  - interval: 1s'
	echo '    module: rst'
	echo '    labels: {bench: serve}'
	echo '    hosts:'
	for h in $(seq 1 250); do
		for port in $(seq 20 59); do
			echo "      - 198.19.201.$h:$port"
		done
	done
} >"$dir/load.yml"
cp "$dir/idle.yml" "$dir/serve.yml"
chmod 644 "$dir"/*.yml

addr=127.0.0.1:9516
ip netns exec "$p" "$bin" serve --config.file "$dir/serve.yml" --web.listen-address "$addr" 2>"$dir/serve.log" &
serve_pid=$!
# A scrape asks for gzip, as Prometheus does (enable_compression, on by
# default); what was sent is unpacked for the counts.
scrape() {
	ip netns exec "$p" curl -fsS -H 'Accept-Encoding: gzip' -o "$dir/metrics.gz" -w '%{time_total} %{size_download}\n' "http://$addr/metrics" &&
		{ gunzip -c "$dir/metrics.gz" >"$dir/metrics" 2>/dev/null || cp "$dir/metrics.gz" "$dir/metrics"; }
}
for _ in $(seq 50); do scrape >/dev/null 2>&1 && break; sleep 0.2; done
requests() { awk '/^synprobe_requests_total/ {s += $2} END {printf "%d", s}' "$dir/metrics"; }
skipped() { awk '/^synprobe_probes_skipped_total/ {print $2}' "$dir/metrics"; }
results() { awk '/^synprobe_responses_total/ {match($0, /result="[^"]*"/); r[substr($0, RSTART + 8, RLENGTH - 9)] += $2} END {for (k in r) printf "%s %d\n", k, r[k]}' "$dir/metrics" | sort; }
cpu() { awk '{print $14 + $15}' "/proc/$serve_pid/stat"; }
# Witnesses for the results: serve's own packet counts, and the target
# namespace's IP counts (what reached it, what it sent back).
pkts() { awk '/^synprobe_packets_sent_total/ {s = $2} /^synprobe_packets_received_total/ {r = $2} /^synprobe_packets_unmatched_total/ {u = $2} END {printf "%d %d %d", s, r, u}' "$dir/metrics"; }
tgt() { ip netns exec "$t" nstat -asz IpInReceives IpOutRequests | awk '/^Ip/ {printf "%d ", $2}'; }
napicpu() { local n=0 t; for t in $napi; do n=$((n + $(awk '{print $14 + $15}' "/proc/$t/stat"))); done; echo "$n"; }

# watched LABEL: 100 sequential /probe requests to a host outside the
# load; each RTT against the SYN -> SYN-ACK of the capture, in order.
watched() {
	local w=198.19.201.251
	: >"$dir/probes"
	ip netns exec "$p" tcpdump -i "${name}a" -n -tt --time-stamp-precision=nano -l "host $w and tcp port 22" >"$dir/cap" 2>/dev/null &
	local cap=$!
	sleep 1
	for _ in $(seq 100); do
		ip netns exec "$p" curl -sS "http://$addr/probe?module=rst&target=$w:22" |
			awk '/^probe_tcp_duration_seconds\{phase="rtt"\}/ {printf "%.9f\n", $2}' >>"$dir/probes"
		sleep 0.05
	done
	sleep 0.5
	kill "$cap"
	wait "$cap" 2>/dev/null || true
	awk -v w="$w.22" '$3 != w && $7 == "[S]," {split($3, a, "."); syn[a[5]] = $1; order[n++] = a[5]}
		$3 == w && $7 == "[S.]," {sub(":", "", $5); split($5, a, "."); if (a[5] in syn && !(a[5] in got)) got[a[5]] = $1 - syn[a[5]]}
		END {for (i = 0; i < n; i++) if (order[i] in got) printf "%.9f\n", got[order[i]]}' "$dir/cap" >"$dir/caprtt"
	if [ "$(wc -l <"$dir/probes")" != "$(wc -l <"$dir/caprtt")" ]; then
		printf 'RTT %-10s %d probes, %d in the capture: not compared\n' "$1" "$(wc -l <"$dir/probes")" "$(wc -l <"$dir/caprtt")"
		return
	fi
	paste "$dir/probes" "$dir/caprtt" | awk '{d = $1 - $2; if (d < 0) d = -d; print d * 1e6, $1 * 1e6}' | sort -n |
		awk -v l="$1" '{e[NR] = $1; r += $2} END {printf "RTT %-10s |serve - capture| over %d probes: median %.2f us, p99 %.2f us, max %.2f us (mean RTT %.1f us)\n", l, NR, e[int((NR + 1) / 2)], e[int(NR * 0.99 + 0.5)], e[NR], r / NR}'
}

watched idle
cp "$dir/load.yml" "$dir/serve.yml"
kill -HUP "$serve_pid"
sleep "$warmup"
hz=$(getconf CLK_TCK)
scrape >/dev/null
r0=$(requests) s0=$(skipped) c0=$(cpu) n0=$(napicpu) t0=$(date +%s.%N)
read -r ps0 pr0 pu0 <<<"$(pkts)"
read -r ti0 to0 <<<"$(tgt)"
results >"$dir/results0"
times=()
for _ in $(seq 1 $((duration / every))); do
	sleep "$every"
	times+=("$(scrape)")
done
scrape >/dev/null
r1=$(requests) s1=$(skipped) c1=$(cpu) n1=$(napicpu) t1=$(date +%s.%N)
read -r ps1 pr1 pu1 <<<"$(pkts)"
read -r ti1 to1 <<<"$(tgt)"
results >"$dir/results1"
el=$(echo "$t1 - $t0" | bc -l)
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$serve_pid/status")
rss=$(awk '/^VmRSS/ {print $2}' "/proc/$serve_pid/status")
printf 'targets        10000 pairs, interval 1 s, rst mode, %d s measured after %d s, /metrics scraped every %d s\n' "$duration" "$warmup" "$every"
printf 'CPU            %.1f%% of one core (utime+stime)\n' "$(echo "100 * ($c1 - $c0) / $hz / $el" | bc -l)"
if [ -n "$napi" ]; then
	printf 'lab target     %.1f%% of one core: its stack on its NAPI thread (inline in serve'"'"'s sends with BENCH_TARGET_INLINE=1)\n' "$(echo "100 * ($n1 - $n0) / $hz / $el" | bc -l)"
else
	printf 'lab target     its stack inline: inside the CPU above\n'
fi
printf 'memory         peak RSS %.1f MB, now %.1f MB\n' "$(echo "$hwm / 1024" | bc -l)" "$(echo "$rss / 1024" | bc -l)"
printf 'probes         %.0f a second of 10000 asked (%.2f%%), %s rounds skipped\n' \
	"$(echo "($r1 - $r0) / $el" | bc -l)" "$(echo "100 * ($r1 - $r0) / $el / 10000" | bc -l)" "$(echo "$s1 - $s0" | bc)"
# Every pair answers (RST or SYN-ACK): any other result is a reply missed.
join -a 2 -e 0 -o 2.1,1.2,2.2 "$dir/results0" "$dir/results1" |
	awk -v begun="$(echo "$r1 - $r0" | bc)" '{printf "%s%s %d", (NR > 1 ? ", " : "results        "), $1, $3 - $2; e += $3 - $2}
		END {printf " of %d ended, %d begun (every pair answers: any timeout is a reply missed)\n", e, begun}'
printf 'packets        serve sent %d, the target received %d IP packets and sent %d, serve read %d (%d unmatched) (taken a scrape apart: up to some thousands off)\n' \
	$((ps1 - ps0)) $((ti1 - ti0)) $((to1 - to0)) $((pr1 - pr0)) $((pu1 - pu0))
printf '%s\n' "${times[@]}" | sort -n | awk -v text="$(wc -c <"$dir/metrics")" '{t[NR] = $1; b = $2} END {printf "scrape         /metrics %d bytes sent (gzip asked), %d of text: median %.1f ms, max %.1f ms over %d scrapes\n", b, text, 1000 * t[int((NR + 1) / 2)], 1000 * t[NR], NR}'
watched "under load"
# Drops in the lab itself (a full veth queue while the target's thread is
# off its CPU): a timeout they explain is the lab's, not a reply missed.
for end in "$p ${name}a" "$t ${name}b"; do
	set -- $end
	ip -n "$1" -s -s link show dev "$2" | awk -v d="$2" '/RX:/ {getline; rx = $4} /TX:/ {getline; tx = $4} END {printf "lab link       %s: %d dropped receiving, %d sending\n", d, rx, tx}'
done
# and in serve's own sockets (a receive queue full: a reply missed).
{ cat "/proc/$serve_pid/net/raw"; cat "/proc/$serve_pid/net/raw6" 2>/dev/null || true; } | awk '$1 ~ /:$/ {d += $NF} END {printf "serve sockets  %d packets dropped for want of room (/proc/net/raw, raw6)\n", d}'
