# rust-libnbd: builds the C library (libnbd.so.0, libnbd.a, libnbd.h,
# libnbd.pc), installs it and tests it.
#
#   make                 cargo build --release, then link build/libnbd.so.0.0.0
#   make install         PREFIX=/usr/local DESTDIR= (LIBDIR, INCLUDEDIR,
#                        PKGCONFIGDIR, MANDIR overridable); the library
#                        keeps its debug info (about 12 MB)
#   make install-strip   the same, with libnbd.so.0.0.0 stripped (about
#                        1.4 MB) and its debug info kept apart in
#                        LIBDIR/.debug/libnbd.so.0.0.0.debug (gdb finds it
#                        through .gnu_debuglink), as distributions ship it;
#                        libnbd.a loses its debug sections
#   make check           every test; ends with "N passed, N failed"
#   make bench           ours against libnbd 1.22.2 (bench/run.sh)
#   make bench-chart     the same over request sizes and queue depths,
#                        drawn into docs/*.png (bench/chart.sh, gnuplot)
#   make example         stage an install in build/install and run the seed example
#   make check-man       stage an install in build/man-stage and check its man pages
#   make clean
#
# The shared library is linked here, not by rustc: rustc gives a cdylib its
# own version script and GNU ld takes only one, so the Rust staticlib is
# linked whole into the .so with the version script build.rs derives from
# src/abi.rs.

SHELL := /bin/bash

PREFIX       ?= /usr/local
EXEC_PREFIX  ?= $(PREFIX)
LIBDIR       ?= $(EXEC_PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
MANDIR       ?= $(PREFIX)/share/man
DESTDIR      ?=

CARGO ?= cargo
INSTALL ?= install

# Where cargo puts the release build (honours CARGO_TARGET_DIR).
RUST_OUT  := $(or $(CARGO_TARGET_DIR),target)/release
STATICLIB := $(RUST_OUT)/libnbd.a
# Written by build.rs next to the staticlib.
SYMS      := $(RUST_OUT)/libnbd.syms
# The man pages, also written by build.rs: one per call and libnbd.3.
MAN3      := $(RUST_OUT)/man/man3

# What the Rust staticlib needs from the system, as
# `cargo rustc --release --crate-type staticlib -- --print native-static-libs`
# reports it; -z defs below fails the link if this ever falls short.
NATIVE_LIBS ?= -lssl -lcrypto -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc

SONAME := libnbd.so.0
SHLIB  := build/libnbd.so.0.0.0

# The libnbd release this library stands in for, as nbd_get_version
# reports it: crate::handle::VERSION (1.22.2).
VERSION ?= $(shell sed -n 's/^pub const VERSION: &str = "\([0-9.]*\)";.*/\1/p' src/handle/mod.rs)

STAGE := $(CURDIR)/build/install

.PHONY: all cargo-build link install install-strip example check clean bench bench-chart \
        check-deps check-cargo-test check-shlib check-header check-abi \
        check-stale-header check-c-tests check-valgrind check-example check-fuzz fuzz \
        check-real-programs check-c-tests-oracle check-oracle-compare oracle \
        check-tls-verify check-ssh-uri check-man

all: cargo-build
	@$(MAKE) --no-print-directory link

# The build needs libssl-dev: install what is missing first when root
# (without root, ensure-deps only says what to install).
cargo-build:
	-@tests/ensure-deps.sh
	$(CARGO) build --release

# Relinked when cargo has produced a new staticlib or version script.
link: $(SHLIB)
	@ln -sfn libnbd.so.0.0.0 build/libnbd.so.0
	@ln -sfn libnbd.so.0 build/libnbd.so

$(SHLIB): $(STATICLIB) $(SYMS) Makefile
	@mkdir -p build
	$(CC) -shared -o $@ -Wl,-soname,$(SONAME) \
	  -Wl,--whole-archive $(STATICLIB) -Wl,--no-whole-archive \
	  -Wl,--version-script=$(SYMS) -Wl,--gc-sections -Wl,--as-needed \
	  -Wl,-z,defs -Wl,-z,relro -Wl,-z,now \
	  $(LDFLAGS) $(NATIVE_LIBS)

# libnbd.pc: ${prefix}-relative where the directories allow it.
pc_exec_prefix = $(if $(filter $(PREFIX),$(EXEC_PREFIX)),$${prefix},$(EXEC_PREFIX))
pc_libdir      = $(if $(filter $(EXEC_PREFIX)/lib,$(LIBDIR)),$${exec_prefix}/lib,$(LIBDIR))
pc_includedir  = $(if $(filter $(PREFIX)/include,$(INCLUDEDIR)),$${prefix}/include,$(INCLUDEDIR))
pc_libs_private = $(filter-out -lc,$(NATIVE_LIBS))

install: all
	$(INSTALL) -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR) \
	  $(DESTDIR)$(MANDIR)/man3
	$(INSTALL) -m 755 $(SHLIB) $(DESTDIR)$(LIBDIR)/libnbd.so.0.0.0
	ln -sfn libnbd.so.0.0.0 $(DESTDIR)$(LIBDIR)/libnbd.so.0
	ln -sfn libnbd.so.0 $(DESTDIR)$(LIBDIR)/libnbd.so
	$(INSTALL) -m 644 $(STATICLIB) $(DESTDIR)$(LIBDIR)/libnbd.a
	$(INSTALL) -m 644 include/libnbd.h $(DESTDIR)$(INCLUDEDIR)/libnbd.h
	$(INSTALL) -m 644 include/libnbd-ext.h $(DESTDIR)$(INCLUDEDIR)/libnbd-ext.h
	sed -e 's|@prefix@|$(PREFIX)|g' \
	    -e 's|@exec_prefix@|$(pc_exec_prefix)|g' \
	    -e 's|@libdir@|$(pc_libdir)|g' \
	    -e 's|@includedir@|$(pc_includedir)|g' \
	    -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@LIBS_PRIVATE@|$(pc_libs_private)|g' \
	    pkgconfig/libnbd.pc.in >$(DESTDIR)$(PKGCONFIGDIR)/libnbd.pc
	chmod 644 $(DESTDIR)$(PKGCONFIGDIR)/libnbd.pc
	$(INSTALL) -m 644 $(MAN3)/*.3 $(DESTDIR)$(MANDIR)/man3/

STRIP   ?= strip
OBJCOPY ?= objcopy

install-strip: install
	$(INSTALL) -d $(DESTDIR)$(LIBDIR)/.debug
	$(OBJCOPY) --only-keep-debug $(DESTDIR)$(LIBDIR)/libnbd.so.0.0.0 \
	  $(DESTDIR)$(LIBDIR)/.debug/libnbd.so.0.0.0.debug
	chmod 644 $(DESTDIR)$(LIBDIR)/.debug/libnbd.so.0.0.0.debug
	$(STRIP) --strip-unneeded $(DESTDIR)$(LIBDIR)/libnbd.so.0.0.0
	cd $(DESTDIR)$(LIBDIR) && $(OBJCOPY) \
	  --add-gnu-debuglink=.debug/libnbd.so.0.0.0.debug libnbd.so.0.0.0
	$(STRIP) --strip-debug $(DESTDIR)$(LIBDIR)/libnbd.a

# The seed example against a staged install.
example: all
	rm -rf $(STAGE)
	$(MAKE) --no-print-directory install DESTDIR= PREFIX=$(STAGE) EXEC_PREFIX=$(STAGE) \
	  LIBDIR=$(STAGE)/lib INCLUDEDIR=$(STAGE)/include PKGCONFIGDIR=$(STAGE)/lib/pkgconfig \
	  MANDIR=$(STAGE)/share/man
	tests/run-example.sh $(STAGE)

# --- make check ---------------------------------------------------------------
# Each step runs even if an earlier one failed; the output of each is also
# kept in build/check-STEP.log.  A step that prints a line starting with
# "SKIP:" and succeeds is counted as skipped.
CHECK_STEPS := deps cargo-test shlib header abi stale-header c-tests c-tests-oracle \
               oracle-compare tls-verify ssh-uri valgrind example man fuzz real-programs

check:
	@mkdir -p build; \
	passed=0; failed=0; skipped=0; failures=; \
	for step in $(CHECK_STEPS); do \
	  echo "=== check: $$step"; \
	  $(MAKE) --no-print-directory check-$$step 2>&1 | tee build/check-$$step.log; \
	  rc=$${PIPESTATUS[0]}; \
	  if [ $$rc -ne 0 ]; then \
	    failed=$$((failed + 1)); failures="$$failures $$step"; echo "=== $$step: FAIL"; \
	  elif grep -q '^SKIP:' build/check-$$step.log; then \
	    skipped=$$((skipped + 1)); echo "=== $$step: SKIPPED"; \
	  else \
	    passed=$$((passed + 1)); echo "=== $$step: PASS"; \
	  fi; \
	done; \
	echo; \
	[ -z "$$failures" ] || echo "failed:$$failures"; \
	[ $$skipped -eq 0 ] || echo "$$skipped skipped"; \
	echo "$$passed passed, $$failed failed"; \
	[ $$failed -eq 0 ]

# Also builds the oracle, libnbd 1.22.2 in /opt/libnbd-1.22, when missing.
check-deps:
	tests/ensure-deps.sh

# The oracle of the differential tests: the real libnbd 1.22.2, built by
# ../shared/tools/build-oracle.sh (as root) when missing (tests/oracle.sh).
oracle:
	tests/oracle.sh ensure

check-cargo-test:
	$(CARGO) test --release

check-shlib: all
	@readelf -d $(SHLIB) | grep -E 'SONAME|NEEDED'

check-header: all
	tests/header/run.sh include build

check-abi: all
	tests/check-abi.sh build

# include/libnbd.h and include/libnbd-ext.h are generated by the build and
# committed: after a build they must not differ from what git has.
check-stale-header: cargo-build
	@if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  echo "SKIP: not a git checkout, cannot check the headers are committed"; \
	else \
	  for h in include/libnbd.h include/libnbd-ext.h; do \
	    if ! git ls-files --error-unmatch $$h >/dev/null 2>&1; then \
	      echo "$$h is not in git; commit the generated header"; exit 1; \
	    elif ! git diff --exit-code --stat -- $$h; then \
	      echo "$$h is stale: the build regenerated it; commit the new one"; exit 1; \
	    else \
	      echo "$$h is up to date"; \
	    fi; \
	  done; \
	fi

check-c-tests: all
	@if [ -e tests/run-c-tests.sh ]; then \
	  bash tests/run-c-tests.sh $(CURDIR)/build $(CURDIR)/include; \
	else \
	  echo "SKIP: tests/run-c-tests.sh does not exist"; \
	fi

# How TLS authenticates the server, case by case, on our library and on
# libnbd 1.22.2 (the oracle in /opt/libnbd-1.22), with the same outcome.
check-tls-verify: all oracle
	tests/tls-verify.sh build include

# nbd+ssh:// and nbds+ssh:// through a private sshd, on our library and on
# libnbd 1.22.2.
check-ssh-uri: all oracle
	tests/ssh-uri.sh build include

# The same C programs on the oracle (libnbd 1.22.2, its own header): what
# they assert is what libnbd does.  Known differences still asserted the
# old way are listed in tests/c/oracle-known-failures.
check-c-tests-oracle: oracle
	bash tests/run-c-tests.sh --oracle

# One program on the oracle and on ours: every result, errno and message
# must be identical.
check-oracle-compare: all oracle
	bash tests/oracle-compare.sh build include

# The C tests again, each program under valgrind memcheck (not the servers
# it starts: valgrind does not follow exec by default). Any memory error or
# definite leak makes the program exit 99, a failure. No suppressions are
# needed. --fair-sched=yes: valgrind's default thread lock lets a busy
# thread starve the others (fork-safety's hammer thread did).
VALGRIND := valgrind --error-exitcode=99 --leak-check=full \
  --errors-for-leak-kinds=definite --track-fds=no --trace-children=no \
  --fair-sched=yes
check-valgrind: all
	@if ! command -v valgrind >/dev/null; then \
	  echo "SKIP: valgrind is not installed"; \
	else \
	  TEST_WRAPPER="$(VALGRIND)" TEST_TIMEOUT=300 \
	    bash tests/run-c-tests.sh $(CURDIR)/build $(CURDIR)/include; \
	fi

check-example: example

# The man pages of a staged install: one for every call in src/abi.rs,
# each SYNOPSIS the header's prototype, rendered by man without warnings.
MAN_STAGE := $(CURDIR)/build/man-stage
check-man: all
	rm -rf $(MAN_STAGE)
	$(MAKE) --no-print-directory install DESTDIR= PREFIX=$(MAN_STAGE) EXEC_PREFIX=$(MAN_STAGE) \
	  LIBDIR=$(MAN_STAGE)/lib INCLUDEDIR=$(MAN_STAGE)/include \
	  PKGCONFIGDIR=$(MAN_STAGE)/lib/pkgconfig MANDIR=$(MAN_STAGE)/share/man >/dev/null
	tests/man/run.sh $(MAN_STAGE) src/abi.rs

# libnbd's programs (nbdinfo, nbdcopy, nbddump, nbdsh, nbdfuse: the oracle's
# 1.22.2 builds and Debian's 1.14 ones; nbdkit's nbd plugin) on our library,
# compared with the same programs on their own library.
check-real-programs: all oracle
	tests/real-programs.sh build

# A short deterministic libFuzzer pass from the seed corpus (fuzz/run.sh).
check-fuzz:
	fuzz/run.sh --check

# Fuzzing for FUZZ_SECONDS (default 600), growing fuzz/corpus.
FUZZ_SECONDS ?= 600
fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

# Ours against the oracle, libnbd 1.22.2, side by side (bench/run.sh; PAIRS, SECS),
# then the async row: nbd::AsyncHandle against libnbd's own crate (bench/async.sh).
bench: all oracle
	bench/run.sh
	bench/async.sh

# Throughput and client CPU over request sizes and queue depths, ours and
# libnbd 1.22.2, drawn by gnuplot into docs/bench-size.png and
# docs/bench-depth.png (bench/chart.sh; REPS, SECS).
bench-chart: all oracle
	bench/chart.sh

clean:
	$(CARGO) clean
	rm -rf build
