# pgjet — the commands a newcomer needs are `make demo` and `make test`.
GO      ?= go
PKGS    ?= ./...
FUZZTIME ?= 10s

.PHONY: demo test bench build vet fuzz clean

## demo: run writer, relay and projector end to end on embedded defaults
demo:
	$(GO) run ./cmd/demo

## test: every test, with the race detector
test:
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

## bench: throughput and latency beside this machine's raw ceilings, then per-event costs
## of validate+encode and decode+upcast, the relay with 1, 2 and 4 instances (and 1 with
## -batch-publish) and its message building, and decoded
## catch-up consumption from sequence 1 by 1 and 4 group members
bench:
	$(GO) run ./cmd/bench
	$(GO) test -run '^$$' -bench 'ValidateEncode|EncodeValue' -benchtime 20000x ./internal/avro
	$(GO) test -run '^$$' -bench 'DecodeUpcast' -benchtime 20000x .
	$(GO) test -run '^$$' -bench 'Relays' -benchtime 2x ./internal/relay
	$(GO) test -run '^$$' -bench 'Message' -benchtime 200000x ./internal/relay
	$(GO) test -run '^$$' -bench 'Consume' -benchtime 20000x ./subscription

## build: the binaries, into bin/
build:
	$(GO) build -o bin/ ./cmd/...

## fuzz: run every fuzz target for FUZZTIME each
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

## fuzz-ci: every fuzz target of the decoders of outside input, for FUZZ_CI_TIME each (CI).
## Each package's instrumented test binary is built once and run per target. A run that fails
## without a failing input (the fuzzing engine's own timeouts on a loaded machine) runs once more.
## The packages are those with a Fuzz function in a test file, so a new one is never missed.
FUZZ_CI_TIME ?= 2s
FUZZ_CI_PKGS ?= $(shell grep -rl --include='*_test.go' --exclude-dir=node_modules '^func Fuzz' . | xargs -n1 dirname | sort -u)
.PHONY: fuzz-ci
fuzz-ci:
	@start=$$(date +%s); tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; cache=$$($(GO) env GOCACHE)/fuzz; \
	for pkg in $(FUZZ_CI_PKGS); do \
		path=$$($(GO) list $$pkg) && dir=$$($(GO) list -f '{{.Dir}}' $$pkg) || exit 1; \
		$(GO) test -c -fuzz=. -o $$tmp/fuzz.test $$pkg || exit 1; \
		for target in $$(cd $$dir && $$tmp/fuzz.test -test.list '^Fuzz' | grep '^Fuzz'); do \
			echo "fuzz-ci $$path $$target"; \
			run() { (cd $$dir && $$tmp/fuzz.test -test.run '^$$' -test.fuzz "^$$target$$" -test.fuzztime $(FUZZ_CI_TIME) \
				-test.fuzzcachedir $$cache/$$path) >$$tmp/log 2>&1; }; \
			run || { if grep -q 'Failing input' $$tmp/log; then false; else echo "fuzz-ci: $$target: failed without a failing input (engine error?); once more"; run; fi; } \
				|| { cat $$tmp/log; exit 1; }; \
		done; \
	done; \
	echo "fuzz-ci: done in $$(( $$(date +%s) - start ))s"

clean:
	rm -rf bin .pgjet

## soak: Jepsen-style run (SOAK_DURATION, default 60s; SOAK_APPENDS, default 20000) with faults; checks the history
.PHONY: soak
soak:
	$(GO) run ./cmd/soak
