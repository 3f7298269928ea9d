#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Boot a kernel tree under QEMU/TCG with a busybox initramfs, load an AF_KCM
# provider, run one command, and check the guest kernel log.
#
#   tools/vm/run.sh --kernel TREE [--provider rs|c|none] [--module KO]
#                   [--add HOSTPATH[:GUESTDIR]]... [--timeout SECONDS]
#                   [--log FILE] -- COMMAND
#
# --provider rs loads KO (default: kcm_rs.ko of the checkout), c the in-tree
# net/kcm/kcm.ko of TREE. Both are also installed under /lib/modules with
# depmod, so socket(AF_KCM) can autoload them. --add copies files or
# directories into the guest (default guest dir: /kcm). The guest's
# environment has KCM_PROVIDER (rs|c), KCM_MODULE (module name) and
# KCM_MODULE_PATH.
#
# Exit status: COMMAND's, or 1 when the guest kernel log has a KASAN, lockdep,
# kmemleak, WARN, BUG, Oops or panic report, when the provider does not
# unload cleanly afterwards, or when the guest did not finish.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)

tree="" provider=rs module="" timeout=1200 log="" adds=()
while [ $# -gt 0 ]; do
	case "$1" in
	--kernel) tree=$2; shift 2 ;;
	--provider) provider=$2; shift 2 ;;
	--module) module=$2; shift 2 ;;
	--add) adds+=("$2"); shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--log) log=$2; shift 2 ;;
	--) shift; break ;;
	*) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ -n "$tree" ] && [ -f "$tree/arch/x86/boot/bzImage" ] || { echo "run.sh: --kernel needs a built tree" >&2; exit 2; }
cmd="$*"
[ -n "$cmd" ] || { echo "run.sh: no command" >&2; exit 2; }

work=$(mktemp -d /tmp/kcm-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
root="$work/root"
release=$(make -s -C "$tree" kernelrelease LLVM=-19 2>/dev/null)
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,run,etc,kcm,root,"lib/modules/$release/extra"}
cp /bin/busybox "$root/bin/busybox"

case "$provider" in
rs)
	module=${module:-$top/kcm_rs.ko}
	modname=kcm_rs ;;
c)
	module=$tree/net/kcm/kcm.ko
	modname=kcm ;;
none) modname="" ;;
*) echo "run.sh: provider must be rs, c or none" >&2; exit 2 ;;
esac
if [ -n "$modname" ]; then
	[ -f "$module" ] || { echo "run.sh: no module $module" >&2; exit 2; }
	cp "$module" "$root/lib/modules/$release/extra/$modname.ko"
fi
for a in "${adds[@]}"; do
	src=${a%%:*} dst=/kcm
	[ "$src" != "$a" ] && dst=${a#*:}
	mkdir -p "$root$dst"
	cp -a "$src" "$root$dst/"
done

cat >"$root/init" <<INIT
#!/bin/busybox sh
/bin/busybox --install -s /bin
ln -s /bin/modprobe /sbin/modprobe
export PATH=/bin:/sbin:/kcm HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t debugfs debugfs /sys/kernel/debug
ip link set lo up
echo "root:x:0:0:root:/root:/bin/sh" >/etc/passwd
echo "nobody:x:65534:65534:nobody:/:/bin/sh" >>/etc/passwd
echo "root:x:0:" >/etc/group
echo "nogroup:x:65534:" >>/etc/group
depmod
leaks=/sys/kernel/debug/kmemleak
# Leaks of boot itself are not ours: mark everything so far as seen.
[ -e \$leaks ] && { echo scan >\$leaks; echo clear >\$leaks; }
export KCM_PROVIDER=$provider KCM_MODULE=$modname
export KCM_MODULE_PATH=/lib/modules/$release/extra/$modname.ko
if [ -n "\$KCM_MODULE" ]; then
	modprobe \$KCM_MODULE || echo "KCMRS-LOAD-FAILED"
fi
cd /kcm
sh /run-command.sh
echo "KCMRS-EXIT: \$?"
cd /
if [ -n "\$KCM_MODULE" ] && grep -q "^\$KCM_MODULE " /proc/modules; then
	rmmod \$KCM_MODULE || echo "KCMRS-RMMOD-FAILED"
fi
if [ -e \$leaks ]; then
	# kmemleak reports objects older than 5 s, found unreferenced in two scans.
	sleep 6; echo scan >\$leaks; echo scan >\$leaks
	echo "KCMRS-KMEMLEAK-BEGIN"; cat \$leaks; echo "KCMRS-KMEMLEAK-END"
fi
echo "KCMRS-DMESG-BEGIN"; dmesg; echo "KCMRS-DMESG-END"
reboot -f
INIT
chmod +x "$root/init"
printf '%s\n' "$cmd" >"$root/run-command.sh"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initramfs.gz"

out=${log:-$work/console.log}
set +e
timeout --foreground "$timeout" qemu-system-x86_64 -accel tcg,thread=multi -smp 2 -m 2048 \
	-nographic -no-reboot -kernel "$tree/arch/x86/boot/bzImage" -initrd "$work/initramfs.gz" \
	-append "console=ttyS0 loglevel=4 panic=-1 oops=panic rdinit=/init" </dev/null 2>&1 |
	tr -d '\r' | tee "$out" | sed '/^KCMRS-\(KMEMLEAK\|DMESG\)-BEGIN$/,$d'
set -e

rc=$(sed -n 's/^KCMRS-EXIT: \([0-9]*\)$/\1/p' "$out" | tail -n1)
if ! "$here/log-check.sh" "$out"; then
	[ -n "$rc" ] && [ "$rc" != 0 ] || rc=1
fi
exit "${rc:-1}"
