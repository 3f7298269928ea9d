#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Install what building and testing kcm-rs needs on Debian bookworm. Does nothing
# (and asks no network) when everything is present. Versions: tools/versions.env.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
export PATH="${HOME:-/root}/.cargo/bin:$PATH"

packages=(
	"clang-$LLVM_VERSION" "lld-$LLVM_VERSION" "llvm-$LLVM_VERSION" "libclang-$LLVM_VERSION-dev"
	flex bison bc make gcc libc6-dev libelf-dev libssl-dev cpio xz-utils kmod
	qemu-system-x86 busybox-static iproute2 python3
)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}" >&2
	[ "$(id -u)" = 0 ] || { echo "setup: need root to install packages" >&2; exit 1; }
	apt-get update -qq
	# Recommends would pull in a desktop's worth of QEMU display libraries.
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

command -v rustup >/dev/null || { echo "setup: rustup is required (Rust toolchain)" >&2; exit 1; }
sysroot=$(rustc --print sysroot)
if [ ! -d "$sysroot/lib/rustlib/src/rust/library" ]; then
	echo "setup: adding rust-src" >&2
	rustup component add rust-src >&2
fi
for c in rustfmt clippy; do
	rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" >&2
done

if [ "$(bindgen --version 2>/dev/null | awk '{print $2}')" != "$BINDGEN_VERSION" ]; then
	echo "setup: installing bindgen-cli $BINDGEN_VERSION" >&2
	cargo install --locked --quiet "bindgen-cli@$BINDGEN_VERSION" >&2
fi
