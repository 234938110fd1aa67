# The two set-up commands: `make run` and `make test`. Thin wrappers over
# CMake and ctest that first install whatever Debian packages are missing.

PACKAGES := gcc make cmake pkg-config python3 liblua5.4-dev libmicrohttpd-dev \
            libcurl4-openssl-dev libjansson-dev liblmdb-dev libssl-dev zlib1g-dev \
            libcmocka-dev lmdb-utils valgrind
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
CONF     ?= etc/agape.conf

.PHONY: run test deps build build-asan unit clean bench

run: deps build
	@echo "Create an API key in another shell:  build/agape keys create --name dev --scopes all"
	build/agape run -c $(CONF)

test: deps build build-asan
	cd build && ctest --output-on-failure -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j$(JOBS)

deps:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build:
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build -j$(JOBS)

build-asan:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DAGAPE_SANITIZE=ON >/dev/null
	cmake --build build-asan -j$(JOBS)

unit: build
	cd build && ctest --output-on-failure -L unit

bench: deps build
	bench/run

clean:
	rm -rf build build-asan
