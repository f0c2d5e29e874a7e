#!/usr/bin/env bash
# Install the system packages synprobe's lab, demo and integration tests
# use, if any is missing: iproute2 (ip), nftables (nft), tcpdump, libcap2-bin
# (setcap), bc, curl and ethtool (bench scripts), prometheus (with promtool) and
# prometheus-blackbox-exporter (synprobe serve's end-to-end tests), man-db,
# groff and mandoc (the man page's tests render and lint it), bash, zsh and
# fish (the completion scripts are loaded in each shell).
# Debian/Ubuntu only; elsewhere it names what to install.
set -euo pipefail

declare -A pkg=([ip]=iproute2 [nft]=nftables [tcpdump]=tcpdump [setcap]=libcap2-bin [bc]=bc [curl]=curl [ethtool]=ethtool [prometheus]=prometheus [prometheus-blackbox-exporter]=prometheus-blackbox-exporter [man]=man-db [groff]=groff-base [mandoc]=mandoc [bash]=bash [zsh]=zsh [fish]=fish)
missing=()
for cmd in "${!pkg[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg[$cmd]}")
done
[ -x /usr/bin/time ] || missing+=(time) # bench scripts: peak memory
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "deps: please install: ${missing[*]}" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
