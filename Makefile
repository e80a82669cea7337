# Two commands on a fresh machine (Python 3.11+, nvcc optional, pip reaching torch):
#   make test    set up, build (CUDA kernels too when nvcc is present), run every test
#   make bench   set up, build, run the benchmark (GPU: fa4 vs SDPA/Flex; no GPU: CPU check)
PYTHON ?= python3
PYTEST_ARGS ?=
BENCH_ARGS ?=
export MAX_JOBS ?= $(shell nproc)

.PHONY: setup build test bench ctest clean

# Installs only what is missing, so it is a no-op on machines that have everything (the GPU
# machines, which cannot reach a package index).
setup:
	@$(PYTHON) tools/ensure_deps.py

build: setup
	$(PYTHON) setup.py build_ext --inplace

# Tests marked `serial` (tens of GiB of GPU memory) run alone, after the others.
test: build ctest
	$(PYTHON) -m pytest tests -q -ra -m "not serial" $(PYTEST_ARGS)
	$(PYTHON) -m pytest tests -q -ra -m serial

bench: build
	$(PYTHON) -m flash_attn4.bench $(BENCH_ARGS)

# Host tests of the shared math (csrc/common) through CMake/ctest.
ctest:
	cmake -S . -B build/cmake -DFA4_BUILD_EXTENSION=OFF >/dev/null && cmake --build build/cmake -j $(MAX_JOBS) && ctest --test-dir build/cmake --output-on-failure

clean:
	rm -rf build flash_attn4/*.so
