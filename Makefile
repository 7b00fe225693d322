# covey: the entry point. CMake does the C++ build underneath.
#   make          build everything into build/
#   make test     install missing Debian packages, build, run every test tier
#   make bench    run the benchmarks and the gm-swarm registration load, print a
#                 table, write build/bench/*.json
#   make bench-architecture
#                 docs/ARCHITECTURE.md's performance table from the last make bench
#   make fuzz     run the message decoder fuzzer (FUZZ_SECONDS, default 600)
#   make lab      the reference lab carrying a ping, in network namespaces or,
#                 when this kernel lacks ESP, in a VM (make lab-down)
#   make lab-coop the same lab with three cooperative key servers on etcd; the
#                 primary is killed while h3 pings h4
#   make deb      the Debian package from build/, into build/deb/ (debian/rules)

BUILD      ?= build
SAN_BUILD  ?= build-san
JOBS       ?= $(shell nproc)
FUZZ_SECONDS ?= 600
# e.g. "--members 2000 --settle 35" (see tests/bench/registration_bench.py --help)
REGISTRATION_BENCH_FLAGS ?=
# e.g. "--mib 16 --repeats 5" (see tests/bench/vm_throughput.py --help)
VM_THROUGHPUT_BENCH_FLAGS ?=
# e.g. "--members 10000 --failover-members 1000" (see tests/bench/coop_bench.py --help)
COOP_BENCH_FLAGS ?=
CMAKE_FLAGS ?=

.PHONY: all build quiet-build deb san san-tests deps test unit bench bench-architecture fuzz format clean lab lab-coop lab-down

all: build

deps:
	@./tools/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# `build` for the targets whose output is something else (make lab): the
# build's ~190 lines go to $(BUILD)/build.log; a line says how much was
# built when something was, and the whole log is printed when the build failed.
quiet-build: $(BUILD)/CMakeCache.txt
	@[ -x $(BUILD)/userspace/apps/covey-gm ] || echo "make: building $(BUILD) first (minutes; log in $(BUILD)/build.log)"
	@cmake --build $(BUILD) -j $(JOBS) >$(BUILD)/build.log 2>&1 || { cat $(BUILD)/build.log; exit 1; }
	@n=$$(grep -cE '^\[ *[0-9]+%\] (Building|Linking)' $(BUILD)/build.log); \
	  [ "$$n" = 0 ] || echo "make: $(BUILD) was out of date: $$n files built (log in $(BUILD)/build.log)"

# The Debian package (debian/), packed from $(BUILD) as it is: after `make
# build` this only installs and packs (debian/rules). The .deb, .buildinfo
# and .changes go to $(DEB_DIR), not to the tree's parent folder;
# dpkg-buildpackage's log to $(DEB_DIR)/build.log.
DEB_DIR ?= $(BUILD)/deb
DEB_VERSION = $(shell dpkg-parsechangelog -S Version)
DEB_ARCH = $(shell dpkg-architecture -qDEB_HOST_ARCH)
deb: quiet-build
	@mkdir -p $(DEB_DIR)
	@rm -f $(DEB_DIR)/covey_*
	@COVEY_BUILD=$(BUILD) COVEY_DEB_DIR=$(DEB_DIR) dpkg-buildpackage -b -uc -us \
	  --buildinfo-option=-u$(DEB_DIR) --changes-option=-u$(DEB_DIR) \
	  --buildinfo-file=$(DEB_DIR)/covey_$(DEB_VERSION)_$(DEB_ARCH).buildinfo \
	  --changes-file=$(DEB_DIR)/covey_$(DEB_VERSION)_$(DEB_ARCH).changes \
	  >$(DEB_DIR)/build.log 2>&1 || { tail -40 $(DEB_DIR)/build.log; echo "make deb: failed, log in $(DEB_DIR)/build.log" >&2; exit 1; }
	@echo "make deb: $$(ls $(DEB_DIR)/*.deb)"

# AddressSanitizer + UndefinedBehaviorSanitizer build with clang, which also
# carries the libFuzzer targets.
$(SAN_BUILD)/CMakeCache.txt:
	CC=clang CXX=clang++ cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=Debug \
	  -DCOVEY_SANITIZE=ON -DCOVEY_FUZZ=ON -DCOVEY_BENCH=OFF $(CMAKE_FLAGS)

san: $(SAN_BUILD)/CMakeCache.txt
	cmake --build $(SAN_BUILD) -j $(JOBS)

# Only what the sanitizer tier of `make test` runs (the unit tests and the
# fuzzer): the daemons and tools are built and exercised in the release build.
san-tests: $(SAN_BUILD)/CMakeCache.txt
	cmake --build $(SAN_BUILD) -j $(JOBS) --target covey_unit_tests

# The sanitizer tier (unit tests and 60 s of fuzzing) runs first, so the
# last line printed is the summary of the main build's ctest run. The unit
# tests run once, there, under ASan and UBSan: running them again in the
# release build cost over a minute of CI's 30-minute budget. The release
# build's code is what the tiers after them (tshark, netns, bpf, vm)
# exercise; `make unit` runs the unit tests in the release build.
# The package is made before the release tier runs: package.install and
# package.lintian test the .deb made from this very build.
test: deps
	$(MAKE) --no-print-directory build san-tests
	$(MAKE) --no-print-directory deb
	ctest --test-dir $(SAN_BUILD) --output-on-failure -j $(JOBS) -L 'unit|fuzz'
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS) -LE unit

unit: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS) -L unit

bench: deps build
	@mkdir -p $(BUILD)/bench
	@for b in $(BUILD)/tests/bench/*_bench; do \
	  echo "== $$(basename $$b)"; \
	  $$b --benchmark_out=$(BUILD)/bench/$$(basename $$b).json --benchmark_out_format=json || exit 1; \
	done
	@echo "== registration (tools/gm-swarm against covey-ks)"
	@python3 tests/bench/registration_bench.py --build $(BUILD) --out $(BUILD)/bench $(REGISTRATION_BENCH_FLAGS) || \
	  echo "registration bench did not run; the table below lacks it"
	@echo "== cooperative key servers (covey-ks on a three-member etcd, gm-swarm; loopback)"
	@python3 tests/bench/coop_bench.py --build $(BUILD) --out $(BUILD)/bench $(COOP_BENCH_FLAGS) || \
	  echo "coop bench did not run; the table below lacks it"
	@echo "== VM throughput (covey's data path against static XFRM SAs, in the VM; root)"
	@python3 tests/bench/vm_throughput.py --build $(BUILD) --out $(BUILD)/bench $(VM_THROUGHPUT_BENCH_FLAGS) || \
	  echo "VM throughput bench measured nothing; the table below says why"
	@python3 tools/bench-report.py $(BUILD)/bench

# Regenerates ARCHITECTURE's performance table from build/bench (no rerun).
bench-architecture:
	@python3 tools/bench-report.py $(BUILD)/bench --architecture docs/ARCHITECTURE.md

fuzz: deps san
	@mkdir -p $(SAN_BUILD)/tests/fuzz/corpus $(SAN_BUILD)/tests/fuzz/seeds
	$(SAN_BUILD)/tests/fuzz/fuzz_seeds $(SAN_BUILD)/tests/fuzz/seeds
	$(SAN_BUILD)/tests/fuzz/message_fuzz -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
	  -print_final_stats=1 -artifact_prefix=$(SAN_BUILD)/tests/fuzz/ \
	  $(SAN_BUILD)/tests/fuzz/corpus $(SAN_BUILD)/tests/fuzz/seeds

# The reference lab carrying traffic: KS, transit router, two members and
# their LAN hosts, a ping across and what covey made of it (tools/lab/make-lab.sh).
# In network namespaces when this kernel has what the data path needs (the
# lab stays up; `make lab-down` removes it), else inside the VM on Debian's kernel.
lab: deps quiet-build
	@COVEY_BUILD=$(abspath $(BUILD)) ./tools/lab/make-lab.sh

# The lab with three key servers (priorities 100/90/80) and a three-member
# etcd on the KS node; kill -9 of the primary while h3 pings h4, a rekey
# from the new one, `coveyctl ks cluster` before and after, what r2 saw.
lab-coop: deps quiet-build
	@COVEY_BUILD=$(abspath $(BUILD)) ./tools/lab/make-lab.sh --coop

lab-down:
	./tools/lab/lab.sh down

format:
	find userspace tools tests -name '*.h' -o -name '*.cpp' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(SAN_BUILD)
