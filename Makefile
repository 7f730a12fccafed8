# Thin wrapper over CMake. `make` builds build/llmrt (CUDA when nvcc is found),
# `make CUDA=0` builds CPU-only, `make test` runs the suite, `make asan` runs it sanitized,
# `make tsan` runs the threaded parts' tests under ThreadSanitizer.
CUDA ?= 1
JOBS ?= $(shell nproc)
BUILD ?= build
CMAKE_FLAGS = -DLLMRT_CUDA=$(if $(filter 0,$(CUDA)),OFF,ON)

.PHONY: all configure test asan tsan clean format fuzz fuzz-run

all: configure
	cmake --build $(BUILD) -j $(JOBS)
	@ln -sf $(BUILD)/llmrt llmrt-bin 2>/dev/null || true

configure:
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) -DCMAKE_BUILD_TYPE=Release > /dev/null

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# AddressSanitizer + UBSan build of the whole suite (CPU only), with the default compiler; with
# clang: `make asan ASAN_CC=clang ASAN_BUILD=build-asan-clang`.
ASAN_CC ?= $(CC)
ASAN_BUILD ?= build-asan
asan:
	CC=$(ASAN_CC) cmake -S . -B $(ASAN_BUILD) -DLLMRT_CUDA=OFF -DLLMRT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug > /dev/null
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS)

# ThreadSanitizer build (clang, CPU only) of the whole suite; runs the tests of the threaded
# parts: the scheduler, the API and the server (its request parser and its shell tests, whose
# server log must hold no sanitizer report). One OpenMP thread: libgomp is not instrumented.
TSAN_BUILD ?= build-tsan
TSAN_TESTS = test_scheduler|test_api|test_serve_request|cli_serve|cli_serve_robust|cli_serve_bench
tsan:
	CC=clang cmake -S . -B $(TSAN_BUILD) -DLLMRT_CUDA=OFF -DCMAKE_BUILD_TYPE=Debug \
	  -DCMAKE_C_FLAGS="-fsanitize=thread -g -O1 -march=x86-64-v3" \
	  -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread > /dev/null
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && OMP_NUM_THREADS=1 \
	  TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ignore_noninstrumented_modules=1" \
	  ctest --output-on-failure -j $(JOBS) -R '^($(TSAN_TESTS))$$'

# ---- fuzzing (libFuzzer, clang): tests/fuzz/README.md ----
# `make fuzz` builds every harness into build-fuzz/ against a clang-built static library of the
# untrusted-input parsers (src/base, src/io/safetensors + json_util, src/tokenizer, the server's
# request parser, config.json, chat templates) with ASan and
# UBSan; `make fuzz-run FUZZ_SECONDS=60` replays each harness's committed crash inputs, then fuzzes
# each for FUZZ_SECONDS on a fresh copy of its seeds (FUZZ_JOBS harnesses at a time, default one
# per core), and fails on any crash, leak or report.
FUZZ_CC ?= clang
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_HARNESSES = fuzz_safetensors fuzz_safetensors_index fuzz_tokenizer_load \
                 fuzz_tokenizer_encode fuzz_tokenizer_decode fuzz_openai_request fuzz_config \
                 fuzz_chat_template
FUZZ_LIB_SRC = $(wildcard src/base/*.c) src/io/safetensors.c src/io/json_util.c \
               $(wildcard src/tokenizer/*.c) src/serve/oai_request.c src/serve/stop_match.c \
               src/serve/sbuf.c src/model/config.c src/model/arch.c $(wildcard src/chat/*.c)
FUZZ_CFLAGS = -std=c11 -g -O1 -fno-omit-frame-pointer -D_GNU_SOURCE -Iinclude -Isrc -Itests/fuzz \
              -Wall -Wextra -Werror -Wno-unused-parameter \
              -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_LIBS = $(shell pkg-config --libs jansson libpcre2-8 libutf8proc) -lm
FUZZ_OBJ = $(patsubst src/%.c,$(FUZZ_BUILD)/obj/%.o,$(FUZZ_LIB_SRC))
fuzz: $(addprefix $(FUZZ_BUILD)/,$(FUZZ_HARNESSES))

$(FUZZ_BUILD)/obj/%.o: src/%.c $(wildcard src/*/*.h) include/llmrt.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/libllmrt_fuzz.a: $(FUZZ_OBJ)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.h $(FUZZ_BUILD)/libllmrt_fuzz.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(FUZZ_BUILD)/libllmrt_fuzz.a $(FUZZ_LIBS) -o $@

# The harnesses run FUZZ_JOBS at a time (each is one process on one core).
FUZZ_JOBS ?= $(JOBS)
fuzz-run: fuzz
	@printf '%s\n' $(FUZZ_HARNESSES) | FUZZ_BUILD=$(FUZZ_BUILD) \
	  xargs -P $(FUZZ_JOBS) -I{} tests/fuzz/run.sh {} $(FUZZ_SECONDS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cu' '*.cuh')

clean:
	rm -rf build build-asan build-asan-clang build-fuzz llmrt-bin
