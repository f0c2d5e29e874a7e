#!/usr/bin/env bash
# lab.sh: a two-namespace network lab for synprobe.
#
#   scripts/lab.sh up NAME       create namespaces NAME-p (prober) and NAME-t
#                                (target) joined by a veth pair
#   scripts/lab.sh down NAME     end the processes inside them and delete them
#   scripts/lab.sh demo BINARY   probe open, closed, dropped, admin-prohibited
#                                and reset ports with BINARY (synprobe), scan
#                                them, show a fin-mode close with its trace,
#                                then remove everything
#
#   prober NAME-p  dev to-target  198.18.0.1/24  2001:db8::1/64
#   target NAME-t  dev to-prober  198.18.0.2/24  2001:db8::2/64
#
# The demo runs $LABSERVER (default ./bin/labserver) in the target; build it
# with: go build -o bin/labserver ./internal/labserver
#
# Needs root, iproute2 and nftables. Packets never leave the namespaces.
set -euo pipefail

readonly PROBER_V4=198.18.0.1 TARGET_V4=198.18.0.2
readonly PROBER_V6=2001:db8::1 TARGET_V6=2001:db8::2
readonly PROBER_MAC=02:73:70:ff:00:01 TARGET_MAC=02:73:70:ff:00:02
readonly PROBER_IF=to-target TARGET_IF=to-prober

die() {
	echo "lab.sh: $*" >&2
	exit 1
}

header() { printf '\n==> %s\n' "$*"; }

usage() {
	cat >&2 <<EOF
usage: $0 up NAME | down NAME | demo BINARY

examples:
  sudo $0 up lab1 && sudo ip netns exec lab1-p ping -c1 $TARGET_V4
  sudo $0 down lab1
  go build -o bin/labserver ./internal/labserver && go build -o bin/synprobe ./cmd/synprobe
  sudo $0 demo ./bin/synprobe
EOF
	exit 2
}

check_name() {
	[[ $1 =~ ^[A-Za-z0-9_]{1,24}$ ]] || die "bad lab name '$1': use 1-24 letters, digits or _"
}

check_root() {
	[[ $EUID -eq 0 ]] || die "needs root (network namespaces): sudo $0 $*"
	command -v ip >/dev/null || die "ip not found: install iproute2"
}

exists() { [[ -e /run/netns/$1 ]]; }

# check_free NAME: refuse to touch a lab that already exists (before any trap
# that would delete it is set).
check_free() {
	if exists "$1-p" || exists "$1-t"; then
		die "lab $1 exists: $0 down $1"
	fi
}

# lab_up NAME: both namespaces, addressed, up, with permanent neighbour
# entries so the first probe does not wait for ARP or ND.
lab_up() {
	local p="$1-p" t="$1-t" ns
	ip netns add "$p"
	ip netns add "$t"
	for ns in "$p" "$t"; do
		ip netns exec "$ns" sysctl -q -w net.ipv6.conf.all.accept_dad=0 \
			net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.default.router_solicitations=0
	done
	ip link add "$PROBER_IF" netns "$p" address "$PROBER_MAC" type veth \
		peer name "$TARGET_IF" netns "$t" address "$TARGET_MAC"
	ip -n "$p" -batch - <<EOF
link set lo up
link set $PROBER_IF up
addr add $PROBER_V4/24 dev $PROBER_IF
addr add $PROBER_V6/64 dev $PROBER_IF nodad
neigh replace $TARGET_V4 lladdr $TARGET_MAC dev $PROBER_IF nud permanent
neigh replace $TARGET_V6 lladdr $TARGET_MAC dev $PROBER_IF nud permanent
EOF
	ip -n "$t" -batch - <<EOF
link set lo up
link set $TARGET_IF up
addr add $TARGET_V4/24 dev $TARGET_IF
addr add $TARGET_V6/64 dev $TARGET_IF nodad
neigh replace $PROBER_V4 lladdr $PROBER_MAC dev $TARGET_IF nud permanent
neigh replace $PROBER_V6 lladdr $PROBER_MAC dev $TARGET_IF nud permanent
EOF
	local i
	for ((i = 0; i < 50; i++)); do
		if ip -n "$p" -o link show dev "$PROBER_IF" | grep -q LOWER_UP &&
			[[ -z $(ip -n "$p" -6 addr show tentative) && -z $(ip -n "$t" -6 addr show tentative) ]]; then
			return 0
		fi
		sleep 0.1
	done
	die "lab $1: link not up after 5 s"
}

# lab_down NAME: end what runs inside (TERM, then KILL after 2 s) and delete
# the namespaces, which removes the veth pair. Missing parts are fine.
lab_down() {
	local ns pids i
	for ns in "$1-p" "$1-t"; do
		exists "$ns" || continue
		pids=$(ip netns pids "$ns" 2>/dev/null || true)
		if [[ -n $pids ]]; then
			# shellcheck disable=SC2086 # one pid per word
			kill -TERM $pids 2>/dev/null || true
			for ((i = 0; i < 20; i++)); do
				[[ -z $(ip netns pids "$ns" 2>/dev/null || true) ]] && break
				sleep 0.1
			done
			pids=$(ip netns pids "$ns" 2>/dev/null || true)
			# shellcheck disable=SC2086
			[[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
		fi
		ip netns delete "$ns"
	done
}

# nft_rules: the target's firewall for the demo; port 84 has no rule and no
# listener (closed), port 80 has the labserver (open).
nft_rules() {
	cat <<'EOF'
table inet synprobe_lab {
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 81 drop
		tcp dport 82 reject with icmpx admin-prohibited
		tcp dport 83 reject with tcp reset
	}
}
EOF
}

demo() {
	local binary=$1 labserver=${LABSERVER:-./bin/labserver}
	[[ -x $binary ]] || die "$binary: not an executable (build it: go build -o bin/synprobe ./cmd/synprobe)"
	[[ -x $labserver ]] || die "$labserver: not an executable (build it: go build -o bin/labserver ./internal/labserver, or set LABSERVER)"
	command -v nft >/dev/null || die "nft not found: install nftables"
	binary=$(realpath "$binary")
	labserver=$(realpath "$labserver")

	check_free "spdemo$$"
	name=spdemo$$
	tmp=$(mktemp -d)
	server_pid= probe_pid=
	trap cleanup EXIT
	trap 'cleanup 130' INT
	trap 'cleanup 143' TERM

	header "lab $name: prober $name-p ($PROBER_V4, $PROBER_V6) <-> target $name-t ($TARGET_V4, $TARGET_V6)"
	lab_up "$name"

	header "target: labserver on port 80"
	ip netns exec "$name-t" "$labserver" -listen "$TARGET_V4:80" -listen "[$TARGET_V6]:80" \
		>"$tmp/labserver.out" 2>&1 &
	server_pid=$!
	local i
	for ((i = 0; i < 50; i++)); do
		grep -qx ready "$tmp/labserver.out" && break
		kill -0 "$server_pid" 2>/dev/null || die "labserver exited: $(cat "$tmp/labserver.out")"
		sleep 0.1
	done
	grep -qx ready "$tmp/labserver.out" || die "labserver not ready after 5 s: $(cat "$tmp/labserver.out")"
	ip -n "$name-t" -br addr show dev "$TARGET_IF"

	header "target: nftables (81 drop, 82 admin-prohibited, 83 tcp reset, 84 closed)"
	nft_rules | ip netns exec "$name-t" nft -f -
	ip netns exec "$name-t" nft list table inet synprobe_lab

	# Exit status 1 means some targets were closed or filtered: expected here.
	local failed=0 rc family target
	for family in 4 6; do
		if [[ $family == 4 ]]; then target=$TARGET_V4; else target="[$TARGET_V6]"; fi
		header "synprobe over IPv$family: ports 80 open, 84 closed, 81 dropped, 82 prohibited, 83 reset"
		# In the background, so that a signal's trap runs at once (bash
		# defers traps until a foreground child ends).
		ip netns exec "$name-p" "$binary" -c 3 -i 0.2 \
			"$target:80" "$target:84" "$target:81" "$target:82" "$target:83" &
		probe_pid=$!
		rc=0
		wait "$probe_pid" || rc=$?
		probe_pid=
		echo "(exit status $rc)"
		((rc <= 1)) || failed=1
	done

	header "synprobe scan: ports 79-84 of both targets, grouped by host"
	# A scan that completes exits 0, whatever it found.
	ip netns exec "$name-p" "$binary" scan -w 0.3 "$TARGET_V4:79-84" "[$TARGET_V6]:79-84" &
	probe_pid=$!
	rc=0
	wait "$probe_pid" || rc=$?
	probe_pid=
	echo "(exit status $rc)"
	((rc == 0)) || failed=1

	header "synprobe --mode fin --trace: complete the handshake, close with FIN, follow the labserver's close"
	ip netns exec "$name-p" "$binary" --mode fin --hold 0.05 -c 1 --trace "$TARGET_V4:80" &
	probe_pid=$!
	rc=0
	wait "$probe_pid" || rc=$?
	probe_pid=
	echo "(exit status $rc)"
	((rc == 0)) || failed=1
	header "synprobe listener: the late third ACK, the SYN-ACK's retransmissions, SYN cookies (port 80); a drop told from a full queue (port 81)"
	for port in 80 81; do
		ip netns exec "$name-p" "$binary" listener --observe 1.5s "$TARGET_V4:$port" &
		probe_pid=$!
		rc=0
		wait "$probe_pid" || rc=$?
		probe_pid=
		echo "(exit status $rc)"
	done

	header "no nftables table left in the prober's namespace:"
	ip netns exec "$name-p" nft list tables
	header "done"
	return "$failed"
}

# cleanup [STATUS]: stop the labserver, delete the lab and the temporary
# directory, exit with STATUS (default: the status being exited with).
cleanup() {
	local rc=${1:-$?}
	trap - EXIT INT TERM
	local pid
	for pid in ${probe_pid:-} ${server_pid:-}; do
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	[[ -z ${name:-} ]] || lab_down "$name" || rc=1
	[[ -z ${tmp:-} ]] || rm -rf "$tmp"
	exit "$rc"
}

main() {
	[[ $# -eq 2 ]] || usage
	case $1 in
	up)
		check_name "$2"
		check_root "$@"
		check_free "$2"
		name=$2
		trap 'rc=$?; trap - EXIT; ((rc == 0)) || lab_down "$name"; exit "$rc"' EXIT
		lab_up "$name"
		trap - EXIT
		cat <<EOF
lab $2 is up:
  ip netns exec $2-p ...   prober, dev $PROBER_IF, $PROBER_V4 $PROBER_V6
  ip netns exec $2-t ...   target, dev $TARGET_IF, $TARGET_V4 $TARGET_V6
remove it with: $0 down $2
EOF
		;;
	down)
		check_name "$2"
		check_root "$@"
		lab_down "$2"
		;;
	demo)
		check_root "$@"
		demo "$2"
		;;
	*) usage ;;
	esac
}

main "$@"
