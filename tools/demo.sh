#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make demo: set-up, the release kernel, kcm_rs.ko; boot a VM, load the
# module, walk through the socket API (samples/kcm_tour) and run an echo
# service with both ends multiplexed over 4 TCP connections each
# (samples/kcm_echo, BPF parser built with clang -target bpf), then the same
# service over MPTCP and over kernel TLS connections.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
export PATH="${HOME:-/root}/.cargo/bin:$PATH"

"$here/setup.sh"
tree=$("$here/build-kernel.sh" release)
out="$top/build/release"
mkdir -p "$out/src" "$out/samples"
cp -a "$top/Kbuild" "$out/"
cp -a "$top"/src/*.rs "$top"/src/*.h "$top"/src/*.c "$top/src/ffi" "$out/src/"
make -C "$tree" M="$out" LLVM=-19 modules >"$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }
make -s -C "$top/samples" OUT="$out/samples"

echo "demo: booting $(basename "$tree") with kcm_rs.ko"
"$here/vm/run.sh" --kernel "$tree" --provider rs --module "$out/kcm_rs.ko" \
	--add "$out/samples" --timeout 600 --log "$out/vm-demo.log" -- \
	'cd /kcm/samples && ./kcm_tour && port=7000 &&
	 for t in tcp mptcp tls; do
		export KCM_TRANSPORT=$t port=$((port + 1))
		./kcm_echo server $port 4 4 & sleep 1
		./kcm_echo client $port 4 4 2000 || exit 1
		wait $! || exit 1
	 done' |
	grep -v '^KCMRS-'
