# synprobe — see README.md. `make demo` and `make test` work as root or as
# a user with sudo; they install the system packages they need.

GO      ?= go
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  := $(DESTDIR)$(PREFIX)/bin
SETCAP  ?= 0
FUZZTIME ?= 30s
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
LDFLAGS := -X main.version=$(VERSION)

FUZZ_TARGETS := $(shell grep -ho '^func Fuzz[A-Za-z0-9_]*' rawsock/*_test.go rawsock/wire/*_test.go internal/netlab/*_test.go 2>/dev/null | sed 's/func //')

.PHONY: all build deps demo test test-unit test-integration fuzz bench bench-rtt lint install clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/synprobe ./cmd/synprobe
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/synprobe-serve ./cmd/synprobe-serve
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/labserver ./internal/labserver

# System packages the lab and the integration tests use (nft, ip, tcpdump).
deps:
	$(SUDO) scripts/deps.sh

# A namespace lab on this machine: a real listener, a closed port and
# nftables drop / reject rules, probed over IPv4 and IPv6, then removed.
demo: deps build
	$(SUDO) LABSERVER=bin/labserver scripts/lab.sh demo bin/synprobe

# The whole suite: lint, unit tests, fuzz seeds, and (as root) the
# integration tests in network namespaces.
test: deps lint
	$(SUDO) env "PATH=$$PATH" $(GO) test -count=1 -race ./...

test-unit:
	$(GO) test -count=1 ./...

test-integration: deps
	$(SUDO) env "PATH=$$PATH" $(GO) test -count=1 -run Integration -v ./...

fuzz:
	@for f in $(FUZZ_TARGETS); do \
		pkg=$$(grep -l "^func $$f(" rawsock/*_test.go rawsock/wire/*_test.go internal/netlab/*_test.go | head -1 | xargs dirname); \
		echo "== $$f ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) ./$$pkg || exit 1; \
	done

bench: deps build
	$(SUDO) env "PATH=$$PATH" scripts/bench-rtt.sh
	$(SUDO) scripts/bench-scan.sh bin/synprobe bin/labserver 3
	$(SUDO) scripts/bench-serve.sh bin/synprobe bin/labserver 60 15
	$(SUDO) env "PATH=$$PATH" scripts/bench-trace.sh

# The exported API is declared once, in portable files, and rawsock/wire
# is portable (the TestLayout of rawsock and rawsock/wire): the module
# must build and vet for a platform without the Linux code as well.
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=darwin $(GO) vet ./...

install: build
	install -D -m 0755 bin/synprobe $(BINDIR)/synprobe
	install -D -m 0755 bin/synprobe-serve $(BINDIR)/synprobe-serve
	@if [ "$(SETCAP)" = 1 ]; then \
		$(SUDO) setcap cap_net_raw,cap_net_admin+ep $(BINDIR)/synprobe && \
		$(SUDO) setcap cap_net_raw,cap_net_admin+ep $(BINDIR)/synprobe-serve && \
		echo "setcap: $(BINDIR)/synprobe and synprobe-serve run without sudo"; \
	fi

clean:
	rm -rf bin
