# fanyi -- a fast command-line neural machine translator.
#
#   make            build ./fanyi (installs missing -dev packages when root)
#   make run        build, then translate data/sample.en with the default model
#   make test       every test; ends with "N passed, N failed"
#   make test SANITIZE=1   the same under AddressSanitizer + UBSan
#   make bench      speed benchmark (not a test)
#   make fuzz       bounded fuzzing of the parsers
#   make install PREFIX=/usr/local DESTDIR=
.SUFFIXES:

PREFIX ?= /usr/local
DATADIR = $(PREFIX)/share/fanyi
PYTHON ?= /usr/bin/python3
CC ?= cc
PKGS = openblas libcjson libutf8proc
FUZZ_SECONDS ?= 60

OPT_CFLAGS ?= -O3 -g
WARN = -Wall -Wextra -Wshadow -Wno-unused-parameter -Werror=implicit-function-declaration
BASE_CFLAGS = -std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 $(WARN) -MMD -MP
ifeq ($(SANITIZE),1)
BUILD = build/asan
SAN = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
BIN = $(BUILD)/fanyi
# build/asan/fanyi finds the bundled models by name, as ./fanyi does.
TREE_MODELS = -DFANYI_TREE_MODELS='"../../models"'
else
BUILD = build/release
SAN =
BIN = fanyi
endif
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# The engine computes with its own deterministic kernels (src/gemm.h); OpenBLAS
# is the benchmark's reference for this machine's sgemm rate.
PKG_LIBS = $(shell pkg-config --libs libcjson libutf8proc 2>/dev/null)
BLAS_LIBS = $(shell pkg-config --libs openblas 2>/dev/null)
ALL_CFLAGS = $(BASE_CFLAGS) $(OPT_CFLAGS) $(SAN) $(PKG_CFLAGS) -DFANYI_DATADIR='"$(DATADIR)"' $(TREE_MODELS) $(CFLAGS)
ALL_LDFLAGS = $(SAN) $(LDFLAGS)
LIBS = $(PKG_LIBS) -lm -lpthread

LIB_SRC = src/common.c src/config.c src/weights.c src/pool.c src/gemm.c src/ops.c src/model.c src/search.c \
          src/tokenizer.c src/sentences.c src/translator.c src/lineio.c
LIB_OBJ = $(LIB_SRC:src/%.c=$(BUILD)/%.o)

all: $(BIN)

$(BUILD)/.deps-build:
	@sh tools/ensure-deps.sh build
	@mkdir -p $(BUILD) && touch $@

$(BUILD)/%.o: src/%.c | $(BUILD)/.deps-build
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libfanyi.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $(LIB_OBJ)

$(BIN): $(BUILD)/main.o $(BUILD)/libfanyi.a
	$(CC) $(ALL_LDFLAGS) -o $@ $(BUILD)/main.o $(BUILD)/libfanyi.a $(LIBS)

$(BUILD)/unit_tests: tests/unit_tests.c $(BUILD)/libfanyi.a
	$(CC) $(ALL_CFLAGS) -Isrc $(ALL_LDFLAGS) -o $@ tests/unit_tests.c $(BUILD)/libfanyi.a $(LIBS)

$(BUILD)/dump_logprobs: tests/dump_logprobs.c $(BUILD)/libfanyi.a
	$(CC) $(ALL_CFLAGS) -Isrc $(ALL_LDFLAGS) -o $@ tests/dump_logprobs.c $(BUILD)/libfanyi.a $(LIBS)

$(BUILD)/api_example: tests/api_example.c $(BUILD)/libfanyi.a
	$(CC) $(ALL_CFLAGS) -Isrc $(ALL_LDFLAGS) -o $@ tests/api_example.c $(BUILD)/libfanyi.a $(LIBS)

run: $(BIN)
	./$(BIN) data/sample.en

test: $(BIN) $(BUILD)/unit_tests $(BUILD)/dump_logprobs $(BUILD)/api_example
	@sh tools/ensure-deps.sh test
	@FANYI_BIN=./$(BIN) FANYI_BUILD=$(BUILD) $(PYTHON) tests/run_tests.py $(TESTS)

$(BUILD)/gemm_rate: tools/gemm_rate.c $(BUILD)/libfanyi.a
	$(CC) $(ALL_CFLAGS) -Isrc $(ALL_LDFLAGS) -o $@ tools/gemm_rate.c $(BUILD)/libfanyi.a $(LIBS) $(BLAS_LIBS)

bench: $(BIN) $(BUILD)/gemm_rate
	@sh tools/ensure-deps.sh test
	$(PYTHON) tools/bench.py --fanyi ./$(BIN)
	$(PYTHON) tools/bench_tokenizer.py --fanyi ./$(BIN)

FUZZERS = fuzz_tokenizer fuzz_config fuzz_weights
fuzz:
	@sh tools/ensure-deps.sh fuzz
	@mkdir -p build/fuzz
	@for f in $(FUZZERS); do \
	  clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc $(PKG_CFLAGS) \
	    -o build/fuzz/$$f tests/fuzz/$$f.c $(LIB_SRC) $(LIBS) || exit 1; \
	  mkdir -p build/fuzz/corpus-$$f; \
	  echo "fuzzing $$f for $(FUZZ_SECONDS)s"; \
	  build/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -max_len=65536 build/fuzz/corpus-$$f tests/fuzz/seeds/$$f \
	    2>build/fuzz/$$f.log || { tail -30 build/fuzz/$$f.log; exit 1; }; \
	done; echo "fuzzing: no crash"

install: $(BIN)
	mkdir -p $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	cp $(BIN) $(DESTDIR)$(PREFIX)/bin/fanyi
	cp man/fanyi.1 $(DESTDIR)$(PREFIX)/share/man/man1/fanyi.1
	cp man/fanyi-model.5 $(DESTDIR)$(PREFIX)/share/man/man5/fanyi-model.5
	mkdir -p $(DESTDIR)$(DATADIR)/tools
	cp tools/fanyi_get.py tools/convert_marian.py tools/checkpoint_io.py $(DESTDIR)$(DATADIR)/tools/
	for m in models/*/; do \
	  [ -f $$m/config.json ] || continue; n=$$(basename $$m); \
	  mkdir -p $(DESTDIR)$(DATADIR)/models/$$n && cp $$m/* $(DESTDIR)$(DATADIR)/models/$$n/; \
	done

clean:
	rm -rf build fanyi

.PHONY: all run test bench fuzz install clean
-include $(LIB_OBJ:.o=.d) $(BUILD)/main.d
