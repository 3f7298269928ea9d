#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make check (rs) / make check-c (c): the kcm-rs selftests in a VM on the
# debug kernel (KASAN, lockdep, kmemleak, ...), against kcm_rs.ko or against
# the in-tree net/kcm module. make soak (soak): only the stress test and the
# fuzzer, for SOAK_SECONDS (default 1800) per variant and per fuzz test, against
# kcm_rs.ko. Host checks first: rustfmt, and a clippy build of
# the module that must be warning-free. Ends with one line
# "check: N passed, M failed"; exit status 0 only when nothing failed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
provider=${1:-rs}
guest_env=""
if [ "$provider" = soak ]; then
	provider=rs
	soak=${SOAK_SECONDS:-1800}
	guest_env="KCM_TESTS='kcm_stress kcm_fuzz' KCM_STRESS_SECONDS=$soak KCM_FUZZ_SECONDS=$soak"
fi
vm_timeout=$((2400 + 5 * ${soak:-0}))
export PATH="${HOME:-/root}/.cargo/bin:$PATH"

"$here/setup.sh"
tree=$("$here/build-kernel.sh" debug)
out="$top/build/debug"
mkdir -p "$out/src" "$out/tests"

pass=0 fail=0
host_check() {
	local name=$1; shift
	if "$@"; then
		echo "ok - host: $name"; pass=$((pass + 1))
	else
		echo "not ok - host: $name"; fail=$((fail + 1))
	fi
}

# The module, built in its own directory per kernel flavour.
cp -a "$top/Kbuild" "$out/"
cp -a "$top"/src/*.rs "$top"/src/*.h "$top"/src/*.c "$top/src/ffi" "$out/src/"
build_module() {
	make -C "$tree" M="$out" LLVM=-19 CLIPPY=1 modules >"$out/build.log" 2>&1 || {
		cat "$out/build.log"; return 1; }
	if grep -E -q '^(warning|error)' "$out/build.log"; then
		grep -E -A12 '^(warning|error)' "$out/build.log"; return 1
	fi
}
if [ "$provider" = rs ]; then
	host_check "module builds clippy-clean" build_module
	host_check "guest log checker catches reports" "$here/vm/test-log-check.sh"
	host_check "rustfmt --check (kernel .rustfmt.toml)" env KDIR="$tree" "$here/rustfmt.sh" --check
	[ -f "$out/kcm_rs.ko" ] || { echo "check: no kcm_rs.ko"; echo "check: $pass passed, $((fail + 1)) failed"; exit 1; }
fi

# The selftests, static, against the kernel tree's kselftest harness.
make -s -C "$top/tools/testing/selftests/kcm_rs" KSFT_DIR="$tree/tools/testing/selftests" OUT="$out/tests"
cp "$top/tools/testing/selftests/kcm_rs/run_tests.sh" "$out/tests/"
mkdir -p "$out/samples"
make -s -C "$top/samples" OUT="$out/samples"

log="$out/vm-$provider.log"
set +e
"$here/vm/run.sh" --kernel "$tree" --provider "$provider" --module "$out/kcm_rs.ko" \
	--add "$out/tests" --add "$out/samples" --timeout "$vm_timeout" --log "$log" -- "$guest_env tests/run_tests.sh /kcm/tests" |
	grep -v '^KCMRS-'
vm_rc=${PIPESTATUS[0]}
set -e
summary=$(sed -n 's/^selftests: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$log" | tail -n1)
if [ -n "$summary" ]; then
	pass=$((pass + ${summary% *})) fail=$((fail + ${summary#* }))
else
	echo "not ok - the selftests did not report"; fail=$((fail + 1))
fi
# The guest's kernel log (no report, no leak, clean unload) counts as a test of its own.
if "$here/vm/log-check.sh" "$log"; then
	echo "ok - guest kernel log clean"; pass=$((pass + 1))
else
	echo "not ok - guest kernel log clean"; fail=$((fail + 1))
fi
echo "check: $pass passed, $fail failed"
[ "$fail" = 0 ] && [ "$vm_rc" = 0 ]
