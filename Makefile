# vsched: IPI-aware directed yield for overcommitted VMs, in userspace.
#   make          build qemu-system-x86_64 (with vsched) and the core
#   make run      the main job: boot guests on a shared pool, compare policies
#   make check    every test; ends with "N passed, N failed"
#   make bench    benchmarks, with their figures
# Each target installs, fetches and builds what it needs, idempotently.

BUILD := build
-include $(BUILD)/config.mk
export VSCHED_CCACHE VSCHED_QEMU_EXTRA_FLAGS

QEMU_BIN := $(BUILD)/qemu-system-x86_64
GUEST := $(BUILD)/guest

.PHONY: all setup qemu-source qemu core guest run check bench clean distclean help

all: qemu core

help:
	@sed -n '2,6p' Makefile | sed 's/^# //'

$(BUILD)/config.mk: configure
	./configure

setup: $(BUILD)/config.mk
	@scripts/setup-host.sh

# The pristine tree is fetched once per configure choice; rebuilds are offline.
$(BUILD)/qemu-pristine/VERSION: $(BUILD)/config.mk scripts/qemu-pin.sh | setup
	scripts/fetch-qemu.sh $(VSCHED_FETCH_ARGS)

qemu-source: $(BUILD)/qemu-pristine/VERSION
	@scripts/prepare-tree.sh

qemu: qemu-source
	scripts/build-qemu.sh

# The core alone (no QEMU): library, unit tests, benchmarks; and the fuzz
# target, which needs clang's libFuzzer.
core: setup
	@[ -f $(BUILD)/core/build.ninja ] || meson setup $(BUILD)/core . >/dev/null
	meson compile -C $(BUILD)/core
	@[ -f $(BUILD)/fuzz/build.ninja ] || CXX=clang++ meson setup -Dfuzz=true $(BUILD)/fuzz . >/dev/null
	meson compile -C $(BUILD)/fuzz

guest: setup
	scripts/guest/build-image.sh $(GUEST)

run: all guest
	scripts/run-main.sh

check: all guest
	scripts/run-tests.sh

bench: core
	scripts/run-bench.sh

clean:
	rm -rf $(BUILD)/qemu-build $(BUILD)/core $(BUILD)/qemu-system-x86_64

distclean:
	rm -rf $(BUILD)
