#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Check the console log of a tools/vm/run.sh guest. Fails (exit 1, with the
# report printed) when the guest did not finish, the provider module did not
# load or unload, kmemleak found a leak, or the kernel log has a KASAN,
# lockdep, WARN, BUG, Oops, panic, RCU stall, lockup or other report.
set -euo pipefail
log=${1:?usage: log-check.sh CONSOLE_LOG}
fail=0
if ! grep -q '^KCMRS-EXIT: [0-9]*$' "$log"; then
	echo "log-check: the guest did not finish (panic, hang or timeout)" >&2
	fail=1
fi
grep -q '^KCMRS-LOAD-FAILED' "$log" && { echo "log-check: loading the provider failed" >&2; fail=1; }
grep -q '^KCMRS-RMMOD-FAILED' "$log" && { echo "log-check: unloading the provider failed" >&2; fail=1; }

leaks=$(sed -n '/^KCMRS-KMEMLEAK-BEGIN$/,/^KCMRS-KMEMLEAK-END$/p' "$log" | sed '1d;$d')
if [ -n "$leaks" ]; then
	echo "log-check: kmemleak report:" >&2
	head -n 80 <<<"$leaks" >&2 || true
	fail=1
fi
reports='BUG:|WARNING:|KASAN|UBSAN|Oops|Kernel panic|general protection|possible recursive locking|possible circular locking|inconsistent lock state|suspicious RCU usage|INFO: task .* blocked|rcu: INFO: .* stall|rcu_.* detected stalls|soft lockup|hard LOCKUP|sleeping function called from invalid context|list_(add|del) corruption|ODEBUG:|refcount_t:|rust_panic|panicked at|kmemleak: [0-9]+ new suspected'
if ! grep -q '^KCMRS-DMESG-END$' "$log"; then
	echo "log-check: the guest's kernel log dump is missing or cut short" >&2
	fail=1
fi
# The whole console: kernel messages reach it (loglevel 4) and the dmesg dump
# repeats the full log at the end.
kernel_log=$(cat "$log")
# No `echo | grep -q` here: with pipefail, grep's early exit would make echo's
# SIGPIPE count as "no match" on a long log.
if grep -E -q "$reports" <<<"$kernel_log"; then
	echo "log-check: kernel report in the guest log:" >&2
	grep -E -A40 "$reports" <<<"$kernel_log" | head -n 120 >&2 || true
	fail=1
fi
exit "$fail"
