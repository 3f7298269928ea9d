#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build (or reuse) a cached kernel tree for a flavour: release or debug.
#   tools/build-kernel.sh release|debug     -> prints the tree's path
# The cache key covers the kernel source package, the Kconfig fragments and the
# toolchain versions: a changed fragment rebuilds, an unchanged one never does.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"

flavour=${1:?usage: build-kernel.sh release|debug}
case "$flavour" in
release) fragments=("$here/kconfig/base.config") ;;
debug) fragments=("$here/kconfig/base.config" "$here/kconfig/debug.config") ;;
*) echo "build-kernel: unknown flavour '$flavour'" >&2; exit 2 ;;
esac

tarball=$("$here/fetch-kernel-source.sh")
key=$( { basename "$(dirname "$(dirname "$(dirname "$tarball")")")"; ls -l "$tarball" | awk '{print $5}';
	cat "${fragments[@]}"; clang-$LLVM_VERSION --version | head -n1; rustc --version;
	bindgen --version; } | sha256sum | cut -c1-12)
tree="$KCM_CACHE/kernel/$KERNEL_SERIES-$flavour-$key"

if [ -f "$tree/.kcm-rs-built" ]; then
	echo "$tree"
	exit 0
fi

log="$KCM_CACHE/kernel/$KERNEL_SERIES-$flavour-$key.log"
mkdir -p "$KCM_CACHE/kernel"
echo "build-kernel: building $flavour kernel in $tree (log: $log); this takes 15-30 minutes" >&2
rm -rf "$tree"
mkdir -p "$tree"
tar -xf "$tarball" -C "$tree" --strip-components=1
jobs=$(($(nproc) + 1))
make_k=(make -C "$tree" LLVM=-$LLVM_VERSION)
{
	"${make_k[@]}" tinyconfig
	(cd "$tree" && scripts/kconfig/merge_config.sh -m .config "${fragments[@]}")
	"${make_k[@]}" olddefconfig
} >"$log" 2>&1 || { tail -n 30 "$log" >&2; exit 1; }

# Every option a fragment asks for must have survived olddefconfig.
missing=0
for frag in "${fragments[@]}"; do
	while IFS= read -r line; do
		case "$line" in CONFIG_*) ;; *) continue ;; esac
		opt=${line%%=*} val=${line#*=}
		if [ "$val" = n ]; then
			grep -q "^$opt=" "$tree/.config" && { echo "build-kernel: $opt should be off" >&2; missing=1; }
		else
			grep -qx "$line" "$tree/.config" || { echo "build-kernel: $line did not stick" >&2; missing=1; }
		fi
	done <"$frag"
done
[ "$missing" = 0 ] || { echo "build-kernel: fix the fragments in tools/kconfig/" >&2; exit 1; }

"${make_k[@]}" -j"$jobs" bzImage modules >>"$log" 2>&1 || { tail -n 40 "$log" >&2; exit 1; }
touch "$tree/.kcm-rs-built"
echo "$tree"
