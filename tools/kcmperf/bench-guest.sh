#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Runs inside the VM (tools/bench.sh): rounds of kcmperf, with kcm_rs.ko and
# the in-tree kcm.ko loaded in turn (both register PF_KCM, so only one at a
# time). The user-space baseline runs while kcm_rs.ko is loaded, and so do,
# after the TCP runs, kcm_rs and the baseline over each of BENCH_TRANSPORTS
# (kcm.ko takes plain TCP only). Odd rounds start with kcm_rs, even rounds
# with kcm. Results are kcmperf's KCMPERF lines; KCMPERF-INFO lines describe
# the guest, KCMPERF-ERROR lines report failures.
#   BENCH_ROUNDS       rounds (default 3)
#   BENCH_MODES        kcmperf modes (default all)
#   BENCH_TRANSPORTS   kcmperf -T transports besides tcp (default "mptcp tls";
#                      set and empty: none)
#   KCMPERF_ARGS       more kcmperf options (duration, sizes, ...)
# Expects kcmperf and mods/{kcm_rs,kcm}.ko next to it.
dir=$(cd "$(dirname "$0")" && pwd)
rounds=${BENCH_ROUNDS:-3}
modes=${BENCH_MODES:-all}
transports=${BENCH_TRANSPORTS-mptcp tls}
errors=0

# (A line of its own: the firmware leaves escape sequences on the console.)
echo
echo "KCMPERF-INFO	kernel	$(uname -r)"
echo "KCMPERF-INFO	cpus	$(grep -c '^processor' /proc/cpuinfo)"
echo "KCMPERF-INFO	memory	$(sed -n 's/^MemTotal: *//p' /proc/meminfo)"

error() {
	echo "KCMPERF-ERROR	$*"
	errors=$((errors + 1))
}

# rmmod fails while sockets are still being released: try for a while.
unload() {
	i=0
	while [ $i -lt 50 ]; do
		rmmod "$1" 2>/dev/null && return 0
		sleep 0.2
		i=$((i + 1))
	done
	rmmod "$1"
}

run() {
	provider=$1 round=$2
	case $provider in
	rs) mod=kcm_rs ;;
	c) mod=kcm ;;
	esac
	if ! insmod "$dir/mods/$mod.ko"; then
		error "round $round: insmod $mod.ko failed"
		return
	fi
	echo "# round $round: $mod loaded"
	# shellcheck disable=SC2086
	"$dir/kcmperf" -p "$provider" -r "$round" $KCMPERF_ARGS $modes ||
		error "round $round: kcmperf -p $provider exited $?"
	if [ "$provider" = rs ]; then
		# shellcheck disable=SC2086
		"$dir/kcmperf" -p user -r "$round" $KCMPERF_ARGS $modes ||
			error "round $round: kcmperf -p user exited $?"
		for t in $transports; do
			for p in rs user; do
				# shellcheck disable=SC2086
				"$dir/kcmperf" -p "$p" -T "$t" -r "$round" $KCMPERF_ARGS $modes ||
					error "round $round: kcmperf -p $p -T $t exited $?"
			done
		done
	fi
	unload "$mod" || error "round $round: rmmod $mod failed"
}

start=$(date +%s)
r=1
while [ "$r" -le "$rounds" ]; do
	if [ $((r % 2)) = 1 ]; then
		run rs "$r"; run c "$r"
	else
		run c "$r"; run rs "$r"
	fi
	r=$((r + 1))
done
echo "KCMPERF-INFO	seconds	$(($(date +%s) - start))"
[ "$errors" = 0 ]
