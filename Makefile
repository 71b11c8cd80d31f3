# fanyi -- a fast command-line neural machine translator.
#
#   make            build ./fanyi (installs missing -dev packages when root)
#   make run        build, then translate data/sample.en with the default model
#   make test       every test; ends with "N passed, N failed"
#   make test SANITIZE=1   the same under AddressSanitizer + UBSan
#   make bench      speed benchmark (not a test)
#   make fuzz       bounded fuzzing of the parsers
#   make lib        libfanyi.a and libfanyi.so
#   make install PREFIX=/usr/local DESTDIR=   the binary, library, header, fanyi.pc, man pages, models
.SUFFIXES:

PREFIX ?= /usr/local
DATADIR = $(PREFIX)/share/fanyi
PYTHON ?= /usr/bin/python3
CC ?= cc
PKGS = openblas libcjson libutf8proc
FUZZ_SECONDS ?= 60

OPT_CFLAGS ?= -O3 -g
WARN = -Wall -Wextra -Wshadow -Wno-unused-parameter -Werror=implicit-function-declaration
# -ffp-contract=off: no compiler may fuse a*b+c on its own, so gcc and clang
# builds, and each kernel and its portable twin, give the same bits.
BASE_CFLAGS = -std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -ffp-contract=off $(WARN) -MMD -MP
ifeq ($(SANITIZE),1)
BUILD = build/asan
SAN = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
BIN = $(BUILD)/fanyi
# build/asan/fanyi finds the bundled models by name, as ./fanyi does.
TREE_MODELS = -DFANYI_TREE_MODELS='"../../models"'
else
# BUILD=build/clang CC=clang builds a second tree (the same-bits test does).
BUILD ?= build/release
SAN =
BIN = $(if $(filter build/release,$(BUILD)),fanyi,$(BUILD)/fanyi)
TREE_MODELS = $(if $(filter build/release,$(BUILD)),,-DFANYI_TREE_MODELS='"../../models"')
endif
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# The engine computes with its own deterministic kernels (src/kernels/gemm.h),
# and with OpenBLAS for f32 where it has no SIMD kernel (or FANYI_GEMM=openblas).
PKG_LIBS = $(shell pkg-config --libs libcjson libutf8proc openblas 2>/dev/null)
BLAS_LIBS = $(shell pkg-config --libs openblas 2>/dev/null)
ALL_CFLAGS = $(BASE_CFLAGS) $(OPT_CFLAGS) $(SAN) $(PKG_CFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(SAN) $(LDFLAGS)
LIBS = $(PKG_LIBS) -lm -lpthread

# The library: one folder per concern (see README.md, Layout). Its objects
# are position-independent and export only the fanyi_* API.
ENGINE_INC = -Iinclude -Isrc -Isrc/kernels -Isrc/format -Isrc/model -Isrc/tokenizer
LIB_CFLAGS = $(ALL_CFLAGS) $(ENGINE_INC) -fPIC -fvisibility=hidden
LIB_SRC = src/common.c src/api.c src/context.c src/arena.c src/batch.c src/text.c src/tokenize.c src/sentences.c \
          src/format/config.c src/format/weights.c \
          src/kernels/pool.c src/kernels/gemm.c src/kernels/ops.c \
          src/model/model.c src/model/search.c \
          src/tokenizer/index.c src/tokenizer/load.c src/tokenizer/normalize.c src/tokenizer/unigram.c \
          src/tokenizer/bpe.c src/tokenizer/encode.c src/tokenizer/decode.c
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o)
# The command line sees the public header only.
CLI_CFLAGS = $(ALL_CFLAGS) -Iinclude -Icli -DFANYI_DATADIR='"$(DATADIR)"' $(TREE_MODELS)
CLI_OBJ = $(BUILD)/cli/main.o $(BUILD)/cli/lineio.o
# Tests and tools that reach inside the engine.
TEST_CFLAGS = $(ALL_CFLAGS) $(ENGINE_INC) -Icli

all: $(BIN)

$(BUILD)/.deps-build:
	@sh tools/ensure-deps.sh build
	@mkdir -p $(BUILD) && touch $@

$(BUILD)/src/%.o: src/%.c | $(BUILD)/.deps-build
	@mkdir -p $(dir $@)
	$(CC) $(LIB_CFLAGS) -c $< -o $@

$(BUILD)/cli/%.o: cli/%.c | $(BUILD)/.deps-build
	@mkdir -p $(dir $@)
	$(CC) $(CLI_CFLAGS) -c $< -o $@

$(BUILD)/libfanyi.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $(LIB_OBJ)

$(BIN): $(CLI_OBJ) $(BUILD)/libfanyi.a
	$(CC) $(ALL_LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libfanyi.a $(LIBS)

$(BUILD)/unit_tests: tests/unit_tests.c $(BUILD)/libfanyi.a $(BUILD)/cli/lineio.o
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ tests/unit_tests.c $(BUILD)/cli/lineio.o $(BUILD)/libfanyi.a $(LIBS)

$(BUILD)/dump_logprobs: tests/dump_logprobs.c $(BUILD)/libfanyi.a
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ tests/dump_logprobs.c $(BUILD)/libfanyi.a $(LIBS)

# Every allocation the library makes passes through the check's counters.
$(BUILD)/context_check: tests/context_check.c $(BUILD)/libfanyi.a
	$(CC) $(ALL_CFLAGS) -Iinclude $(ALL_LDFLAGS) -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc \
	  -o $@ tests/context_check.c $(BUILD)/libfanyi.a $(LIBS)

$(BUILD)/alloc_failure: tests/alloc_failure.c $(BUILD)/libfanyi.a
	$(CC) $(ALL_CFLAGS) -Iinclude $(ALL_LDFLAGS) \
	  -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=aligned_alloc,--wrap=strdup \
	  -o $@ tests/alloc_failure.c $(BUILD)/libfanyi.a $(LIBS)

$(BUILD)/api_example: tests/api_example.c $(BUILD)/libfanyi.a
	$(CC) $(ALL_CFLAGS) -Iinclude $(ALL_LDFLAGS) -o $@ tests/api_example.c $(BUILD)/libfanyi.a $(LIBS)

run: $(BIN)
	./$(BIN) data/sample.en

test: $(BIN) lib $(BUILD)/unit_tests $(BUILD)/dump_logprobs $(BUILD)/api_example $(BUILD)/context_check \
      $(BUILD)/alloc_failure
	@sh tools/ensure-deps.sh test
	@FANYI_BIN=./$(BIN) FANYI_BUILD=$(BUILD) $(PYTHON) tests/run_tests.py $(TESTS)

$(BUILD)/gemm_rate: tools/gemm_rate.c $(BUILD)/libfanyi.a
	$(CC) $(TEST_CFLAGS) $(ALL_LDFLAGS) -o $@ tools/gemm_rate.c $(BUILD)/libfanyi.a $(LIBS) $(BLAS_LIBS)

$(BUILD)/bench_calls: tools/bench_calls.c $(BUILD)/libfanyi.a
	$(CC) $(ALL_CFLAGS) -Iinclude $(ALL_LDFLAGS) -o $@ tools/bench_calls.c $(BUILD)/libfanyi.a $(LIBS)

# Under which conditions OpenBLAS's sgemm is batch-invariant on this machine (issue 15).
blas-probe: | $(BUILD)/.deps-build
	$(CC) -O2 -o $(BUILD)/blas_invariance tools/blas_invariance.c $(PKG_CFLAGS) $(BLAS_LIBS)
	$(BUILD)/blas_invariance

bench: $(BIN) $(BUILD)/gemm_rate $(BUILD)/bench_calls
	@sh tools/ensure-deps.sh test
	$(PYTHON) tools/bench.py --fanyi ./$(BIN)
	$(PYTHON) tools/bench_tokenizer.py --fanyi ./$(BIN)
	zcat ../shared/data/multi30k/test_2016_flickr.en.gz > $(BUILD)/bench-lines.txt 2>/dev/null || cp data/sample.en $(BUILD)/bench-lines.txt
	$(BUILD)/bench_calls models/en-de $(BUILD)/bench-lines.txt
	$(PYTHON) tools/bench_opus.py --fanyi ./$(BIN)
	$(PYTHON) tools/bench_load.py --fanyi ./$(BIN)

FUZZERS = fuzz_tokenizer fuzz_config fuzz_weights
fuzz:
	@sh tools/ensure-deps.sh fuzz
	@mkdir -p build/fuzz
	@for f in $(FUZZERS); do \
	  clang -std=c11 -D_GNU_SOURCE -ffp-contract=off -g -O1 -fsanitize=fuzzer,address,undefined $(ENGINE_INC) $(PKG_CFLAGS) \
	    -o build/fuzz/$$f tests/fuzz/$$f.c $(LIB_SRC) $(LIBS) || exit 1; \
	  mkdir -p build/fuzz/corpus-$$f; \
	  echo "fuzzing $$f for $(FUZZ_SECONDS)s"; \
	  build/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 build/fuzz/corpus-$$f tests/fuzz/seeds/$$f \
	    2>build/fuzz/$$f.log || { tail -30 build/fuzz/$$f.log; exit 1; }; \
	done; echo "fuzzing: no crash"

# The shared library: versioned soname, only the fanyi_* API exported.
VERSION = 0.1.0
SOVERSION = 0
SHLIB = $(BUILD)/libfanyi.so.$(VERSION)

$(SHLIB): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libfanyi.so.$(SOVERSION) $(ALL_LDFLAGS) -o $@ $(LIB_OBJ) $(LIBS)

lib: $(BUILD)/libfanyi.a $(SHLIB)

LIBDIR = $(PREFIX)/lib
INCLUDEDIR = $(PREFIX)/include
# Where Debian's python3 looks for modules under PREFIX (/usr/local/lib/python3.X/dist-packages).
PYTHONDIR = $(PREFIX)/lib/$(shell $(PYTHON) -c 'import sys; print("python%d.%d" % sys.version_info[:2])' 2>/dev/null || echo python3)/dist-packages

install: $(BIN) lib
	mkdir -p $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man3 \
	  $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	cp $(BIN) $(DESTDIR)$(PREFIX)/bin/fanyi
	cp man/fanyi.1 $(DESTDIR)$(PREFIX)/share/man/man1/fanyi.1
	cp man/fanyi.3 $(DESTDIR)$(PREFIX)/share/man/man3/fanyi.3
	cp man/fanyi-model.5 $(DESTDIR)$(PREFIX)/share/man/man5/fanyi-model.5
	cp include/fanyi.h $(DESTDIR)$(INCLUDEDIR)/fanyi.h
	cp $(BUILD)/libfanyi.a $(SHLIB) $(DESTDIR)$(LIBDIR)/
	ln -sf libfanyi.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libfanyi.so.$(SOVERSION)
	ln -sf libfanyi.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libfanyi.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	  -e 's|@VERSION@|$(VERSION)|' fanyi.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/fanyi.pc
	mkdir -p $(DESTDIR)$(PYTHONDIR)
	sed 's|^_LIBDIR = None|_LIBDIR = "$(LIBDIR)"|' python/fanyi.py > $(DESTDIR)$(PYTHONDIR)/fanyi.py
	mkdir -p $(DESTDIR)$(DATADIR)/tools
	cp tools/fanyi_get.py tools/convert_marian.py tools/checkpoint_io.py $(DESTDIR)$(DATADIR)/tools/
	for m in models/*/; do \
	  [ -f $$m/config.json ] || continue; n=$$(basename $$m); \
	  mkdir -p $(DESTDIR)$(DATADIR)/models/$$n && cp $$m/* $(DESTDIR)$(DATADIR)/models/$$n/; \
	done

clean:
	rm -rf build fanyi

.PHONY: all lib run test bench blas-probe fuzz install clean
-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
