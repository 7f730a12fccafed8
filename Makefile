# Thin wrapper over CMake. `make` builds build/llmrt (CUDA when nvcc is found),
# `make CUDA=0` builds CPU-only, `make test` runs the suite, `make asan` runs it sanitized.
CUDA ?= 1
JOBS ?= $(shell nproc)
BUILD ?= build
CMAKE_FLAGS = -DLLMRT_CUDA=$(if $(filter 0,$(CUDA)),OFF,ON)

.PHONY: all configure test asan clean format

all: configure
	cmake --build $(BUILD) -j $(JOBS)
	@ln -sf $(BUILD)/llmrt llmrt-bin 2>/dev/null || true

configure:
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) -DCMAKE_BUILD_TYPE=Release > /dev/null

test: all
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# AddressSanitizer + UBSan build of the whole suite (CPU only).
asan:
	cmake -S . -B build-asan -DLLMRT_CUDA=OFF -DLLMRT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug > /dev/null
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS)

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cu' '*.cuh')

clean:
	rm -rf build build-asan llmrt-bin
