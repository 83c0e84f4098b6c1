#!/usr/bin/env bash
# GCMA package entry point.
#
#   ./build.sh            set up, build everything, boot the emulated target,
#                         run the default on-target program, print the results,
#                         then a short benchmark of GCMA against the other heaps
#                         (its ratio table and the path of its report)
#   ./build.sh test       set up, build, run the whole test suite
#   ./build.sh nightly    the kasan kernel: the end-to-end suite and 30 min of
#                         the fuzzer on it (hours; not part of CI)
#   ./build.sh setup      only install what is needed (idempotent)
#   ./build.sh gcma ARGS  the gcma CLI from the project's venv
#
# Needs Debian 12 (bookworm). Installs apt packages (with sudo when not root),
# adds the arm64 foreign architecture for the guest's packages, and makes a
# venv under out/ with this project installed. Outputs: out/ (or $GCMA_OUT).
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")"
OUT=${GCMA_OUT:-$PWD/out}
VENV=$OUT/venv

APT_PACKAGES=(
	# kernel build
	make gcc bc flex bison libelf-dev libssl-dev cpio xz-utils kmod rsync ccache
	gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu libc6-dev-arm64-cross
	linux-source-6.12 patch
	# device tree, emulated target, root filesystem
	device-tree-compiler qemu-system-arm ipxe-qemu e2fsprogs erofs-utils openssh-client
	# the host side of adb (the emulated target answers adb too)
	adb
	util-linux
	# the venv
	python3 python3-venv python3-dev
	# checkpatch.pl in the tests; the remote-build test's stand-in build server
	perl openssh-server
)

log() { printf '%s\n' "build.sh: $*" >&2; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Debian 12 only: the package names, the linux-source-6.12 tarball and the
# arm64 multiarch setup are Debian's. Said before anything changes the system.
check_host() {
	local id="" version="" like="" release=${GCMA_OS_RELEASE:-/etc/os-release}
	if [ -r "$release" ]; then
		# shellcheck disable=SC1090
		id=$(. "$release" && echo "${ID:-}")
		version=$(. "$release" && echo "${VERSION_ID:-}")
		like=$(. "$release" && echo "${ID_LIKE:-}")
	fi
	if [ "$id" = debian ] && [ "$version" = 12 ]; then
		return
	fi
	if [ -n "${GCMA_ANY_HOST:-}" ]; then
		log "warning: ${id:-unknown} ${version:-?} is not Debian 12; going on (GCMA_ANY_HOST)"
		return
	fi
	log "this needs Debian 12 (bookworm); this host is ${id:-unknown} ${version:-?}${like:+ (like $like)}."
	log "Its apt packages (linux-source-6.12, the arm64 cross toolchain and libc) come from"
	log "Debian 12; derivatives built on it may work: set GCMA_ANY_HOST=1 to try. Nothing was changed."
	exit 2
}

setup_apt() {
	local missing=() pkg
	for pkg in "${APT_PACKAGES[@]}"; do
		case $pkg in \#*) continue ;; esac
		dpkg-query -W -f '${Status}\n' "$pkg" 2>/dev/null | grep -q '^install ok installed' ||
			missing+=("$pkg")
	done
	local need_arch=0
	dpkg --print-foreign-architectures | grep -qx arm64 || need_arch=1
	if [ ${#missing[@]} -eq 0 ] && [ $need_arch -eq 0 ]; then
		return
	fi
	if [ $need_arch -eq 1 ]; then
		log "+ dpkg --add-architecture arm64"
		as_root dpkg --add-architecture arm64
	fi
	log "+ apt-get update"
	as_root apt-get update -q
	if [ ${#missing[@]} -gt 0 ]; then
		log "+ apt-get install -y ${missing[*]}"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
	fi
}

setup_venv() {
	local stamp=$VENV/.gcma-installed want
	want=$(sha256sum pyproject.toml | cut -d' ' -f1)
	if [ -x "$VENV/bin/gcma" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
		return
	fi
	log "+ python3 -m venv $VENV"
	python3 -m venv "$VENV"
	log "+ $VENV/bin/pip install -e .[test]"
	"$VENV/bin/pip" install -q --disable-pip-version-check -e ".[test]"
	echo "$want" >"$stamp"
}

setup() {
	check_host
	setup_apt
	setup_venv
}

# Everything later steps need, checked in seconds before anything takes minutes.
preflight() {
	log "+ $VENV/bin/gcma doctor"
	"$VENV/bin/gcma" doctor
}

cmd=${1:-run}
[ $# -gt 0 ] && shift
case $cmd in
setup)
	setup
	;;
run)
	setup
	preflight
	"$VENV/bin/gcma" run "$@"
	# Short: 10 allocations per cell and one churn round (a few minutes).
	log "+ $VENV/bin/gcma bench --target main --count 10 --settle 5 --churn-rounds 1"
	exec "$VENV/bin/gcma" bench --target main --count 10 --settle 5 --churn-rounds 1
	;;
test)
	setup
	preflight
	# Both kernel variants: the tests run on default and on debug (lockdep, DEBUG_VM).
	"$VENV/bin/gcma" build --variant default --variant debug
	log "+ ruff check host_tools tests"
	"$VENV/bin/ruff" check host_tools tests
	log "+ pytest $*"
	exec "$VENV/bin/pytest" "$@"
	;;
nightly)
	# The sanitizer run (hours, not CI): the kasan kernel (KASAN, KFENCE,
	# kmemleak, page poisoning, init_on_free), the whole end-to-end suite on
	# it (kmemleak scanned at the end), then 30 minutes of heap_fuzz.
	setup
	preflight
	"$VENV/bin/gcma" build --variant default --variant kasan
	log "+ GCMA_TEST_VARIANTS=kasan pytest tests/e2e $*"
	GCMA_TEST_VARIANTS=kasan "$VENV/bin/pytest" tests/e2e "$@"
	log "+ $VENV/bin/gcma fuzz --variant kasan --minutes 30"
	exec "$VENV/bin/gcma" fuzz --variant kasan --minutes 30
	;;
gcma)
	setup
	exec "$VENV/bin/gcma" "$@"
	;;
-h | --help | help)
	sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
	;;
*)
	echo "build.sh: unknown command '$cmd' (try: ./build.sh help)" >&2
	exit 2
	;;
esac
