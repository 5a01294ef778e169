# spillway — plain Makefile.
#
#   make            release build: build/spillway
#   make test       AddressSanitizer + UBSan build of everything, runs all tests
#   make bench      matvec vs memory bandwidth, model tok/s (QUICK=1: smoke run)
#   make fuzz       libFuzzer targets (clang), FUZZ_SECONDS each
#   make CC=clang   the same with clang; both must stay warning-clean

CC      ?= cc
BUILD   ?= build
PKGS    := jansson libpcre2-8 libutf8proc liburing libmicrohttpd
PKG_CFLAGS := $(if $(PKGS),$(shell pkg-config --cflags $(PKGS)))
PKG_LIBS   := $(if $(PKGS),$(shell pkg-config --libs $(PKGS)))

WARN    := -Wall -Wextra -Wshadow -Wvla -Wno-unused-parameter
CFLAGS  ?= -O2 -g
BASEFLAGS := -std=c11 -D_GNU_SOURCE -pthread -Isrc $(WARN) $(PKG_CFLAGS)
LDLIBS  := $(PKG_LIBS) -lm -pthread

# Per-file instruction sets: only *_avx2.c / *_avxvnni.c / *_avx512.c may
# use them, and only behind the start-up CPUID check in src/quant/quant.c.
AVX2_FLAGS    := -mavx2 -mfma -mf16c
AVXVNNI_FLAGS := $(AVX2_FLAGS) -mavxvnni
AVX512_FLAGS  := $(AVX2_FLAGS) -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni
isa_flags = $(if $(findstring _avx512,$(1)),$(AVX512_FLAGS),$(if $(findstring _avxvnni,$(1)),$(AVXVNNI_FLAGS),$(if $(findstring _avx2,$(1)),$(AVX2_FLAGS))))

LIB_SRC  := $(sort $(wildcard src/*/*.c))
LIB_SRC  := $(filter-out src/cli/%,$(LIB_SRC))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
# `spillway bench` measures bandwidth with spillway-bench's own probe
CLI_SRC  += bench/bench_mem.c bench/bench_read_avx2.c bench/bench_read_avx512.c
TEST_SRC := $(sort $(wildcard tests/*.c))
BENCH_SRC := $(sort $(wildcard bench/*.c))

# --- release --------------------------------------------------------------
REL := $(BUILD)/rel
REL_LIB_OBJ := $(LIB_SRC:%.c=$(REL)/%.o)
REL_CLI_OBJ := $(CLI_SRC:%.c=$(REL)/%.o)

all: $(BUILD)/spillway

$(BUILD)/spillway: $(REL_CLI_OBJ) $(REL_LIB_OBJ)
	$(CC) $(CFLAGS) $(BASEFLAGS) -o $@ $^ $(LDLIBS)

$(REL)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(BASEFLAGS) $(call isa_flags,$<) -MMD -MP -c -o $@ $<

# --- sanitizer build and tests --------------------------------------------
SAN := $(BUILD)/san
SANFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
SAN_LIB_OBJ  := $(LIB_SRC:%.c=$(SAN)/%.o)
SAN_CLI_OBJ  := $(CLI_SRC:%.c=$(SAN)/%.o)
SAN_TEST_OBJ := $(TEST_SRC:%.c=$(SAN)/%.o)

$(SAN)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(SANFLAGS) $(BASEFLAGS) $(call isa_flags,$<) -MMD -MP -c -o $@ $<

$(SAN)/spillway: $(SAN_CLI_OBJ) $(SAN_LIB_OBJ)
	$(CC) $(SANFLAGS) $(BASEFLAGS) -o $@ $^ $(LDLIBS)

$(SAN)/spillway-tests: $(SAN_TEST_OBJ) $(SAN_LIB_OBJ)
	$(CC) $(SANFLAGS) $(BASEFLAGS) -o $@ $^ $(LDLIBS)

FIXTURES ?= $(abspath ../shared/fixtures)
test: $(SAN)/spillway-tests $(SAN)/spillway
	SPILLWAY_FIXTURES=$(FIXTURES) SPILLWAY_BIN=$(abspath $(SAN)/spillway) \
	  UBSAN_OPTIONS=print_stacktrace=1 $(SAN)/spillway-tests $(T)

# --- benchmarks -----------------------------------------------------------
BENCH_OBJ := $(BENCH_SRC:%.c=$(REL)/%.o)
$(BUILD)/spillway-bench: $(BENCH_OBJ) $(REL_LIB_OBJ)
	$(CC) $(CFLAGS) $(BASEFLAGS) -o $@ $^ $(LDLIBS)

# bench/run.sh assembles bench/RESULTS.md: spillway-bench's sections and
# `spillway bench` on generated models; QUICK=1: a smoke run (tiny-moe only)
# into $(BUILD)/RESULTS-quick.md
bench: $(BUILD)/spillway-bench $(BUILD)/spillway
	BUILD=$(BUILD) sh bench/run.sh $(if $(filter-out 0,$(QUICK)),--quick)

# A diagnostic of the memory (bench/probe/stream_probe_avx512.c): one read
# stream per core against two, with and without arithmetic between loads
$(BUILD)/stream-probe: bench/probe/stream_probe_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -std=c11 -D_GNU_SOURCE -pthread $(WARN) $(AVX512_FLAGS) -o $@ $<

stream-probe: $(BUILD)/stream-probe
	$(BUILD)/stream-probe

# --- fuzzing (clang + libFuzzer) ------------------------------------------
FUZZ := $(BUILD)/fuzz
FUZZ_SECONDS ?= 60
FUZZFLAGS := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
FUZZ_SRC  := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS := $(FUZZ_SRC:tests/fuzz/%.c=$(FUZZ)/%)
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=$(FUZZ)/%.o)

$(FUZZ)/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZFLAGS) $(BASEFLAGS) $(call isa_flags,$<) -MMD -MP -c -o $@ $<

$(FUZZ)/fuzz_%: $(FUZZ)/tests/fuzz/fuzz_%.o $(FUZZ_LIB_OBJ)
	clang -fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS)

fuzz: $(FUZZ_BINS)
	@for f in $(FUZZ_BINS); do \
	  n=$$(basename $$f); corpus=$(BUILD)/corpus/$$n; mkdir -p $$corpus; \
	  FIXTURES=$(FIXTURES) sh tests/fuzz/seed.sh $$n $$corpus || exit 1; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -max_len=1048576 -rss_limit_mb=2048 \
	      -artifact_prefix=$(BUILD)/fuzz/$$n- -print_final_stats=1 $$corpus \
	      >$(BUILD)/fuzz/$$n.log 2>&1; rc=$$?; \
	  tail -n 12 $(BUILD)/fuzz/$$n.log; \
	  if [ $$rc -ne 0 ]; then echo "fuzz: $$n failed (exit $$rc), log: $(BUILD)/fuzz/$$n.log"; exit 1; fi; \
	done

clean:
	rm -rf $(BUILD)

.PHONY: all test bench fuzz clean stream-probe
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
