#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make bench: throughput of kcm_rs.ko against the in-tree kcm.ko and against
# plain TCP with user-space framing (tools/kcmperf), and of kcm_rs.ko and
# user-space framing over MPTCP and kernel TLS. Builds kcm_rs.ko and kcmperf
# for the release kernel, boots one VM (QEMU/TCG, 2 vCPUs) that loads each
# module in turn, and writes bench/results.md (tables of medians and ratios),
# bench/results.png (chart) and bench/results.tsv (every measurement).
# Benchmarks are not tests: make check does not run this.
#
# Environment:
#   BENCH_DURATION   counted seconds per measurement (default 3)
#   BENCH_WARMUP     warm-up seconds before counting (default 0.3)
#   BENCH_ROUNDS     rounds; medians over rounds are reported (default 3)
#   BENCH_MODES      kcmperf modes: rr stream-recv stream-send, or all (default)
#   BENCH_TRANSPORTS transports measured besides TCP, with kcm_rs.ko and user
#                    space (kcmperf -T; the in-tree kcm.ko takes TCP only):
#                    mptcp and/or tls (default "mptcp tls"; set and empty:
#                    TCP only)
#   BENCH_QUICK=1    development check of the whole pipeline: 1 round of
#                    0.5 s, fewer sizes and thread counts (about 3 minutes
#                    over TCP alone; the default BENCH_TRANSPORTS about
#                    doubles it)
#   BENCH_ARGS       more kcmperf options (see tools/kcmperf/kcmperf.c)
#   BENCH_OUT        output directory (default bench/ of the checkout)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
export PATH="${HOME:-/root}/.cargo/bin:$PATH"

duration=${BENCH_DURATION:-3}
warmup=${BENCH_WARMUP:-0.3}
rounds=${BENCH_ROUNDS:-3}
modes=${BENCH_MODES:-all}
transports=${BENCH_TRANSPORTS-mptcp tls}
extra=${BENCH_ARGS:-}
for t in $transports; do
	case $t in
	mptcp | tls) ;;
	*) echo "bench: BENCH_TRANSPORTS: $t is not mptcp or tls" >&2; exit 2 ;;
	esac
done
if [ "${BENCH_QUICK:-0}" = 1 ]; then
	duration=${BENCH_DURATION:-0.5}
	warmup=${BENCH_WARMUP:-0.1}
	rounds=${BENCH_ROUNDS:-1}
	extra="-t 1,16 -s 1,16384 -m 64,65536${extra:+ $extra}"
fi
resdir=${BENCH_OUT:-$top/bench}
began=$(date +%s)

"$here/setup.sh"
# The chart: gnuplot, only needed here.
if ! command -v gnuplot >/dev/null; then
	echo "bench: installing gnuplot-nox" >&2
	if [ "$(id -u)" = 0 ]; then
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnuplot-nox >&2 ||
			echo "bench: no gnuplot, no chart" >&2
	else
		echo "bench: gnuplot missing and not root: no chart" >&2
	fi
fi

tree=$("$here/build-kernel.sh" release)
out="$top/build/bench"
guest="$out/guest"
rm -rf "$guest"
mkdir -p "$out/src" "$guest/mods" "$resdir"
cp -a "$top/Kbuild" "$out/"
cp -a "$top"/src/*.rs "$top"/src/*.h "$top"/src/*.c "$top/src/ffi" "$out/src/"
make -C "$tree" M="$out" LLVM=-19 modules >"$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }
make -s -C "$here/kcmperf" OUT="$guest"
cp "$out/kcm_rs.ko" "$guest/mods/kcm_rs.ko"
cp "$tree/net/kcm/kcm.ko" "$guest/mods/kcm.ko"
cp "$here/kcmperf/bench-guest.sh" "$guest/"

# The guest's time: per round, (warm-up + duration + set-up) per measurement,
# about 60 over TCP (3 providers) and 35 per other transport (kcm_rs and user
# space), and stalls of the C module (up to 3 s each). Generous.
ntransports=$(wc -w <<<"$transports")
per_round=$(awk -v d="$duration" -v w="$warmup" -v n="$ntransports" \
	'BEGIN { printf "%d", (60 + 35 * n) * (d + w + 1) + 200 }')
timeout=$((300 + rounds * per_round))
kcmperf_args="-d $duration -w $warmup $extra"
log="$out/vm-bench.log"
if pgrep -f "^qemu-system-x86_64 " >/dev/null; then
	echo "bench: note: another QEMU is running on this machine; timings will be noisy" >&2
fi
echo "bench: $rounds round(s), ${duration} s per measurement, modes: $modes, transports: tcp${transports:+ $transports} (guest time limit ${timeout} s)"
set +e
"$here/vm/run.sh" --kernel "$tree" --provider none --add "$guest" --timeout "$timeout" --log "$log" -- \
	"BENCH_ROUNDS=$rounds BENCH_MODES='$modes' BENCH_TRANSPORTS='$transports' KCMPERF_ARGS='$kcmperf_args' sh /kcm/guest/bench-guest.sh" |
	grep --line-buffered -v '^KCMRS-'
vm_rc=${PIPESTATUS[0]}
set -e

# The results, and the machine they were measured on.
grep -a -P '^KCMPERF\t' "$log" >"$resdir/results.tsv" || true
grep -a '^KCMPERF-ERROR' "$log" | sed 's/^KCMPERF-ERROR\t/bench: guest: /' >&2 || true
info() { grep -a -P "KCMPERF-INFO\t$1\t" "$log" | tail -n1 | cut -f3; }
qemu_version=$(qemu-system-x86_64 --version | head -n1 | sed 's/^QEMU emulator version //')
# The module's sources: were they those of the commit?
commit=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$top" diff --quiet HEAD -- src Kbuild 2>/dev/null ||
	commit="$commit, with uncommitted changes to src/ or Kbuild"
python3 "$here/kcmperf/report.py" --tsv "$resdir/results.tsv" --md "$resdir/results.md" \
	--png "$resdir/results.png" \
	--meta date="$(date -u '+%Y-%m-%d %H:%M UTC')" \
	--meta host_cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1) ($(nproc) cores)" \
	--meta qemu="QEMU $qemu_version, TCG (multi-threaded), -smp 2 -m 2048 (the guest kernel sees $(info cpus) CPU(s), $(info memory))" \
	--meta kernel="Linux $(info kernel) (release configuration, tools/kconfig/base.config)" \
	--meta commit="$commit" \
	--meta guest_cpus="$(info cpus)" \
	--meta settings="$rounds round(s), ${duration} s counted after ${warmup} s warm-up per measurement; modes: $modes; transports: tcp${transports:+ $transports}${extra:+; kcmperf $extra}" \
	--meta guest_seconds="$(info seconds)" \
	--meta total_seconds="$(($(date +%s) - began))"
echo "bench: wrote $resdir/results.md, results.png, results.tsv ($(wc -l <"$resdir/results.tsv") measurements) in $(($(date +%s) - began)) s"
if [ "$vm_rc" != 0 ]; then
	echo "bench: the guest reported failures (exit $vm_rc); see $log" >&2
	exit 1
fi
