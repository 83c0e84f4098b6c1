#!/usr/bin/env bash
# Build and test this checkout on a machine that has never seen it: a
# minimal Debian 12 chroot (debootstrap --variant=minbase) made from the
# host's own apt sources. Into it go the host's package-access setup (apt
# sources and configuration, pip configuration, CA certificates, DNS), a
# clean clone of HEAD, and bind mounts of /proc, /dev and /sys. Inside, as
# a new user would: ./build.sh, then ./build.sh test.
#
#   tests/fresh-machine.sh [ROOT]     (default /var/tmp/gcma-fresh; root needed)
#
# Takes about as long as a cold build of both kernel variants plus the test
# suite; CI does not run it. Log: out/logs/fresh-machine.log.
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
ROOT=${1:-/var/tmp/gcma-fresh}
LOG=$HERE/out/logs/fresh-machine.log
SUITE=bookworm

log() { printf 'fresh-machine: %s\n' "$*" | tee -a "$LOG" >&2; }
run() {
	log "+ $*"
	"$@" >>"$LOG" 2>&1
}

if [ "$(id -u)" -ne 0 ]; then
	echo "fresh-machine: run as root (debootstrap, chroot and mounts need it)" >&2
	exit 2
fi
case $ROOT in
/ | /usr* | /etc* | /home | /root)
	echo "fresh-machine: refusing to use $ROOT as the chroot" >&2
	exit 2
	;;
esac

mkdir -p "$(dirname "$LOG")"
: >"$LOG"

# The first Debian mirror the host's apt uses (deb822 or one-line format).
mirror() {
	local uri
	uri=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
	[ -n "$uri" ] || uri=$(awk '$1 == "deb" && $2 !~ /^\[/ { print $2; exit }' \
		/etc/apt/sources.list 2>/dev/null || true)
	echo "${uri:-http://deb.debian.org/debian}"
}

unmount_all() {
	local m
	for m in sys dev/pts dev proc; do
		if mountpoint -q "$ROOT/$m" 2>/dev/null; then
			umount -l "$ROOT/$m" || true
		fi
	done
}
trap unmount_all EXIT
trap 'log "FAILED; the end of $LOG:"; tail -n 40 "$LOG" >&2' ERR

start=$(date +%s)
command -v debootstrap >/dev/null || run apt-get install -y -q debootstrap
unmount_all
[ -d "$ROOT" ] && run rm -rf --one-file-system "$ROOT"
run debootstrap --variant=minbase "$SUITE" "$ROOT" "$(mirror)"

# Package access, as any machine on this network has it.
rm -f "$ROOT/etc/apt/sources.list"
[ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$ROOT/etc/apt/"
cp -a /etc/apt/sources.list.d/. "$ROOT/etc/apt/sources.list.d/"
cp -a /etc/apt/apt.conf.d/. "$ROOT/etc/apt/apt.conf.d/"
[ -d /etc/apt/trusted.gpg.d ] && cp -a /etc/apt/trusted.gpg.d/. "$ROOT/etc/apt/trusted.gpg.d/"
mkdir -p "$ROOT/usr/share/keyrings" "$ROOT/etc/xdg"
cp -a /usr/share/keyrings/. "$ROOT/usr/share/keyrings/"
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$ROOT/etc/"
[ -d /etc/xdg/pip ] && cp -a /etc/xdg/pip "$ROOT/etc/xdg/"
mkdir -p "$ROOT/etc/ssl" "$ROOT/usr/local/share"
cp -aL /etc/ssl/certs "$ROOT/etc/ssl/"
[ -d /usr/local/share/ca-certificates ] && cp -a /usr/local/share/ca-certificates "$ROOT/usr/local/share/"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"

run mount --bind /proc "$ROOT/proc"
run mount --bind /dev "$ROOT/dev"
run mount --bind /dev/pts "$ROOT/dev/pts"
run mount --bind /sys "$ROOT/sys"

run git clone -q "$HERE" "$ROOT/root/gcma"
log "chroot ready in $(($(date +%s) - start)) s"

t=$(date +%s)
run chroot "$ROOT" /usr/bin/env -i HOME=/root TERM=dumb PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	/bin/bash -c 'cd /root/gcma && ./build.sh'
log "./build.sh passed in $(($(date +%s) - t)) s"

t=$(date +%s)
run chroot "$ROOT" /usr/bin/env -i HOME=/root TERM=dumb PATH=/usr/sbin:/usr/bin:/sbin:/bin \
	/bin/bash -c 'cd /root/gcma && ./build.sh test'
log "./build.sh test passed in $(($(date +%s) - t)) s"
log "total $(($(date +%s) - start)) s"
