# SPDX-License-Identifier: GPL-2.0
#
# kcm-rs. The two commands of the README:
#   make demo       set-up, release kernel, module; boot a VM, load kcm_rs.ko
#                   and exchange messages with samples/
#   make check      set-up, debug kernel, module; the selftests in a VM
#                   against kcm_rs.ko, with the kernel log checked
# Also:
#   make [KDIR=DIR] build kcm_rs.ko (KDIR: a kernel build tree with
#                   CONFIG_RUST; without it, the cached release kernel is
#                   set up and built first)
#   make check-c    the same selftests against the in-tree net/kcm module
#   make soak       the stress test and the fuzzer for SOAK_SECONDS (default 1800) per
#                   variant on the debug kernel
#   make bench      throughput of kcm_rs.ko, the in-tree kcm.ko and user-space
#                   framing in a VM (tools/bench.sh; not a test) ->
#                   bench/results.md, bench/results.png
#   make fmt        rustfmt the sources (fmt-check: only check)
#   make CLIPPY=1   build with clippy lints
#   make clean

LLVM ?= -19
M := $(CURDIR)

ifeq ($(origin KDIR),undefined)
module_kdir = $(shell tools/setup.sh >&2 && tools/build-kernel.sh release)
else
module_kdir = $(KDIR)
endif

all: module

module:
	$(MAKE) -C $(module_kdir) M=$(M) LLVM=$(LLVM) $(if $(CLIPPY),CLIPPY=1) modules

check:
	tools/check.sh rs

check-c:
	tools/check.sh c

soak:
	tools/check.sh soak

demo:
	tools/demo.sh

bench:
	tools/bench.sh

fmt:
	tools/rustfmt.sh

fmt-check:
	tools/rustfmt.sh --check

clean:
	rm -rf build
	rm -f kcm_rs.ko kcm_rs.mod kcm_rs.mod.c kcm_rs.mod.o kcm_rs.o modules.order \
		Module.symvers .*.cmd src/*.o src/.*.cmd src/.*.d src/*.bc \
		src/kcm_rs_bindings_generated.rs src/*.rmeta

.PHONY: all module check check-c soak demo bench fmt fmt-check clean
