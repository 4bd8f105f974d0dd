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
## of validate+encode and decode+upcast, and the relay with 1, 2 and 4 instances
bench:
	$(GO) run ./cmd/bench
	$(GO) test -run '^$$' -bench 'ValidateEncode' -benchtime 20000x ./internal/avro
	$(GO) test -run '^$$' -bench 'DecodeUpcast' -benchtime 20000x .
	$(GO) test -run '^$$' -bench 'Relays' -benchtime 2x ./internal/relay

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

clean:
	rm -rf bin .pgjet

## soak: Jepsen-style run (SOAK_DURATION, default 60s; SOAK_APPENDS, default 20000) with faults; checks the history
.PHONY: soak
soak:
	$(GO) run ./cmd/soak
