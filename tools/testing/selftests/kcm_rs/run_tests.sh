#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Runs the kcm-rs selftests (inside the VM) and ends with one line
# "N passed, M failed". Exit status 0 only when nothing failed.
# Usage: run_tests.sh [DIR]   (DIR holds the test programs; default: this dir)
# KCM_TESTS: the programs to run (default: all); KCM_STRESS_SECONDS: how long
# kcm_stress runs each variant (default 20); KCM_FUZZ_SECONDS: how long kcm_fuzz
# runs each of its two tests (default 15); KCM_FUZZ_SEED replays a fuzz run.
dir=${1:-$(dirname "$0")}
pass=0 fail=0
for t in ${KCM_TESTS:-kcm_socket kcm_data kcm_hostile kcm_replay kcm_faults kcm_module kcm_tls kcm_mptcp kcm_stress kcm_fuzz}; do
	echo "# === $t (provider ${KCM_PROVIDER:-?})"
	"$dir/$t" >/tmp/$t.tap 2>&1
	rc=$?
	cat /tmp/$t.tap
	totals=$(grep '^# Totals:' /tmp/$t.tap | tail -n 1)
	if [ -z "$totals" ]; then
		echo "# $t did not finish (exit $rc)"
		fail=$((fail + 1))
		continue
	fi
	# "# Totals: pass:N fail:N xfail:N xpass:N skip:N error:N"
	field() { echo "$totals" | tr ' ' '\n' | sed -n "s/^$1:\([0-9]*\)$/\1/p"; }
	p=$(field pass) f=$(field fail) x=$(field xfail) xp=$(field xpass) e=$(field error)
	# An expected failure counts as passed; an unexpected pass does not.
	pass=$((pass + p + x))
	fail=$((fail + f + e + xp))
	[ "$rc" = 0 ] || [ "$f$e$xp" != 000 ] || { echo "# $t exited $rc"; fail=$((fail + 1)); }
done
# The samples' echo service (both ends multiplexed, BPF parser from clang),
# when check.sh put it in the VM.
samples=${KCM_SAMPLES:-/kcm/samples}
if [ -z "$KCM_TESTS" ] && [ -x "$samples/kcm_echo" ]; then
	echo "# === samples/kcm_echo"
	(cd "$samples" && { ./kcm_echo server 7000 3 3 & sleep 1
		./kcm_echo client 7000 3 3 600; rc=$?; wait; exit $rc; })
	rc=$?
	if [ "$KCM_PROVIDER" = c ]; then
		# net/kcm mis-frames messages that do not start a segment, and whether
		# a reply starts one depends on timing: the run passes or fails by
		# chance. Reported, not counted.
		if [ $rc != 0 ]; then
			echo "ok - samples/kcm_echo exchange # SKIP net/kcm mis-frames (failed this time)"
		else
			echo "ok - samples/kcm_echo exchange # SKIP net/kcm mis-frames (passed this time)"
		fi
	elif [ $rc = 0 ]; then
		echo "ok - samples/kcm_echo exchange"; pass=$((pass + 1))
	else
		echo "not ok - samples/kcm_echo exchange"; fail=$((fail + 1))
	fi
	# The same service over MPTCP and kernel TLS connections (kcm-rs only:
	# net/kcm refuses MPTCP and parses TLS ciphertext).
	if [ "$KCM_PROVIDER" != c ]; then
		port=7000
		for transport in mptcp tls; do
			port=$((port + 1))
			echo "# === samples/kcm_echo over $transport"
			(cd "$samples" && export KCM_TRANSPORT=$transport &&
				{ ./kcm_echo server $port 3 3 & sleep 1
				./kcm_echo client $port 3 3 600; rc=$?; wait; exit $rc; })
			if [ $? = 0 ]; then
				echo "ok - samples/kcm_echo exchange over $transport"; pass=$((pass + 1))
			else
				echo "not ok - samples/kcm_echo exchange over $transport"; fail=$((fail + 1))
			fi
		done
	fi
fi
echo "selftests: $pass passed, $fail failed"
[ "$fail" = 0 ]
