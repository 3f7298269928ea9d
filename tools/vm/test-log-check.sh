#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Proves that log-check.sh fails on each kind of report and passes a clean log.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT

clean() {
	printf '%s\n' "boot" "KCMRS-EXIT: 0" "KCMRS-KMEMLEAK-BEGIN" "KCMRS-KMEMLEAK-END" \
		"KCMRS-DMESG-BEGIN" "[    1.0] kcm_rs: AF_KCM registered" "$@" "KCMRS-DMESG-END"
}
bad=0
expect() {
	local want=$1 name=$2 file=$3
	"$here/log-check.sh" "$file" >/dev/null 2>&1
	local got=$?
	if [ "$want" = pass ] && [ $got != 0 ]; then echo "log-check: wrongly failed: $name"; bad=1; fi
	if [ "$want" = fail ] && [ $got = 0 ]; then echo "log-check: missed: $name"; bad=1; fi
}
clean >"$t/clean"; expect pass clean "$t/clean"
for report in "BUG: KASAN: slab-use-after-free in kcm_release" \
	"WARNING: CPU: 1 PID: 77 at net/core/sock.c:1 sk_free" \
	"WARNING: possible circular locking dependency detected" \
	"Oops: general protection fault, probably for non-canonical address" \
	"rust_kernel: panicked at src/mux.rs:10:5:" \
	"BUG: sleeping function called from invalid context at kernel/locking/mutex.c:1" \
	"rcu: INFO: rcu_preempt self-detected stall on CPU" \
	"rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:" \
	"watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [kworker/u8:0:12]"; do
	clean "[    2.0] $report" >"$t/r"; expect fail "$report" "$t/r"
done
# A report early in a long log (the pipe case that once hid a KASAN report).
clean "[    2.0] BUG: KASAN: slab-out-of-bounds in sk_alloc+0x141/0x690" \
	$(seq -f '[    3.0] filler line %g of a long kernel log' 1 20000) >"$t/long"
expect fail "report early in a long log" "$t/long"
sed 's/^KCMRS-KMEMLEAK-BEGIN$/&\nunreferenced object 0xffff888 (size 64):/' "$t/clean" >"$t/leak"
expect fail kmemleak "$t/leak"
grep -v '^KCMRS-EXIT' "$t/clean" >"$t/died"; expect fail "no exit marker" "$t/died"
grep -v '^KCMRS-DMESG-END$' "$t/clean" >"$t/cut"; expect fail "kernel log dump cut short" "$t/cut"
{ cat "$t/clean"; echo KCMRS-RMMOD-FAILED; } >"$t/rmmod"; expect fail "rmmod failed" "$t/rmmod"
exit $bad
