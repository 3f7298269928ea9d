#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# rustfmt over src/ with the kernel's .rustfmt.toml (from KDIR, or else from
# any cached kernel tree). --check: report only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
export PATH="${HOME:-/root}/.cargo/bin:$PATH"
kdir=${KDIR:-$(ls -d "$KCM_CACHE"/kernel/*/ 2>/dev/null | head -n1)}
[ -f "$kdir/.rustfmt.toml" ] || { echo "rustfmt.sh: no kernel tree; set KDIR" >&2; exit 2; }
mode=()
[ "${1:-}" = --check ] && mode=(--check)
cd "$here/.."
# rustfmt follows the `mod` declarations from the crate root into every file.
rustfmt "${mode[@]}" --config-path "$kdir/.rustfmt.toml" src/kcm_rs_main.rs
