#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Fetch Debian's linux-source-$KERNEL_SERIES with a private apt configuration
# (own sources list, own state and cache dirs). The machine's apt sources are
# never touched. Prints the path of the unpacked source tarball.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"

apt_root="$KCM_CACHE/apt"
dl="$KCM_CACHE/downloads"
mkdir -p "$apt_root"/{lists/partial,cache/archives/partial,etc/preferences.d} "$dl"

pkg="linux-source-$KERNEL_SERIES"
existing=$(ls "$dl/$pkg"/usr/src/linux-source-"$KERNEL_SERIES".tar.* 2>/dev/null | head -n1 || true)
if [ -n "$existing" ]; then
	echo "$existing"
	exit 0
fi

for suite in $KERNEL_SUITES; do
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main" \
		> "$apt_root/etc/sources.list"
	opts=(-o Dir::Etc::SourceList="$apt_root/etc/sources.list"
	      -o Dir::Etc::SourceParts=/dev/null
	      -o Dir::Etc::PreferencesParts="$apt_root/etc/preferences.d"
	      -o Dir::State="$apt_root"
	      -o Dir::State::Lists="$apt_root/lists"
	      -o Dir::State::status=/dev/null
	      -o Dir::Cache="$apt_root/cache"
	      -o APT::Architecture=amd64
	      -o Acquire::Languages=none)
	apt-get "${opts[@]}" -qq update >&2 || continue
	if apt-cache "${opts[@]}" show "$pkg" >/dev/null 2>&1; then
		ver=$(apt-cache "${opts[@]}" show "$pkg" | sed -n 's/^Version: //p' | head -n1)
		echo "fetch-kernel-source: $pkg $ver from $suite" >&2
		(cd "$dl" && apt-get "${opts[@]}" -qq download "$pkg" >&2)
		deb=$(ls "$dl"/"${pkg}"_*.deb | head -n1)
		rm -rf "$dl/$pkg"
		dpkg -x "$deb" "$dl/$pkg"
		ls "$dl/$pkg"/usr/src/linux-source-"$KERNEL_SERIES".tar.*
		exit 0
	fi
done
cat >&2 <<MSG
fetch-kernel-source: no Debian suite among ($KERNEL_SUITES) serves $pkg any more.
Set KERNEL_SERIES (and KERNEL_SUITES if needed) in tools/versions.env to a series
that a Debian suite still ships (check with 'apt-cache policy linux-source-X.Y'
under a private apt configuration like this script's).
MSG
exit 1
