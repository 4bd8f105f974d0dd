package demo

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/pgjet/pgjet"
	"github.com/pgjet/pgjet/internal/projection"
	"github.com/pgjet/pgjet/internal/registry"
	"github.com/pgjet/pgjet/internal/relay"
	"github.com/pgjet/pgjet/internal/subject"
	"github.com/pgjet/pgjet/internal/writer"
	demoschemas "github.com/pgjet/pgjet/schemas/avro"
)

// The demo's JetStream stream and subject prefix. They are its own, like its database, so
// that on a NATS server that already runs (NATS_URL) the demo neither publishes into nor
// deletes a real PGJET_EVENTS stream: each run deletes this stream and starts it afresh.
const (
	Stream        = "PGJET_DEMO"
	SubjectPrefix = "pgjet.demo.events"
)

// Config configures a demo run.
type Config struct {
	// Pool is a migrated Postgres pool. Required.
	Pool *pgxpool.Pool
	// Conn is a NATS connection to a server with JetStream. Required.
	Conn *nats.Conn
	// Orders is how many orders to generate. Default 2000 (about 5,400 events).
	Orders int
	// Rate is the target append rate in events per second. Default 1000.
	Rate int
	// Clients is the number of concurrent HTTP clients appending. Default 8.
	Clients int
	// Progress receives a progress line every half second; nil prints nothing.
	Progress io.Writer
	// Logger receives the components' logs. Default: none.
	Logger *zap.Logger
	// Seed makes the generated orders repeatable. Default 1.
	Seed uint64
	// WarmUp is how long after the first append events are left out of the latency
	// quantiles: the pools are still opening connections and preparing statements then.
	// Default 1s.
	WarmUp time.Duration
}

// Summary is the outcome of a demo run.
type Summary struct {
	Orders, Appended, Conflicts int
	Relayed, Projected          int
	Elapsed                     time.Duration
	// P50, P99 and Max are the end-to-end latencies from the append transaction's start to
	// the projector applying the event, of the events appended after the warm-up.
	P50, P99, Max time.Duration
	// WarmUp is how long after the first append events counted as warming up, and
	// WarmUpMax the largest latency among them.
	WarmUp, WarmUpMax time.Duration
	// Statuses counts demo.orders rows by status.
	Statuses map[string]int
	// SampleSubject is the JetStream subject of the first event.
	SampleSubject string
	// WriterURL is where the writer's HTTP API listened.
	WriterURL string
}

// Run starts the writer's HTTP API, a relay and the orders projector in-process, appends
// generated orders through the HTTP API at the configured rate, and returns once every
// appended event is projected (or ctx ends).
//
// Run deletes the JetStream stream named Stream first. The database must be fresh too: the
// generated event ids repeat from run to run (a fixed seed), so on a stream kept from an
// earlier run JetStream would drop every publish as a duplicate within its window, and
// the projector would apply the earlier run's copies; beyond the window the stream would
// hold every event twice.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	cfg.Orders = cmp.Or(cfg.Orders, 2000)
	cfg.Rate = cmp.Or(cfg.Rate, 1000)
	cfg.Clients = cmp.Or(cfg.Clients, 8)
	cfg.Seed = cmp.Or(cfg.Seed, 1)
	cfg.WarmUp = cmp.Or(cfg.WarmUp, time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, zap.NewNop())
	log := cfg.Logger

	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return Summary{}, err
	}
	if err := js.DeleteStream(ctx, Stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return Summary{}, fmt.Errorf("deleting the previous run's stream %s: %w", Stream, err)
	}
	subjects, err := subject.New(SubjectPrefix)
	if err != nil {
		return Summary{}, err
	}

	store, err := pgjet.New(pgjet.Config{Pool: cfg.Pool, Logger: log, Upcasters: demoschemas.Upcasters()})
	if err != nil {
		return Summary{}, err
	}
	if _, err := store.Registry().RegisterFS(ctx, demoschemas.Files); err != nil {
		return Summary{}, fmt.Errorf("registering the demo schemas: %w", err)
	}
	api, err := writer.NewHandler(writer.HandlerConfig{Store: store, Logger: log})
	if err != nil {
		return Summary{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Summary{}, err
	}
	mux := http.NewServeMux()
	mux.Handle("/streams/", api)
	mux.Handle("/", registry.NewHandler(store.Registry(), log))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	writerURL := "http://" + ln.Addr().String()

	rl, err := relay.New(relay.Config{
		Pool: cfg.Pool, Conn: cfg.Conn, Logger: log, RegistryURL: writerURL,
		Stream: relay.StreamConfig{Name: Stream, Subjects: subjects},
	})
	if err != nil {
		return Summary{}, err
	}
	lat := &latencies{}
	pj, err := projection.New(projection.Config{
		Pool: cfg.Pool, Conn: cfg.Conn, Registry: store.Registry(), Projection: OrdersProjection(), Stream: Stream,
		Upcasters: demoschemas.Upcasters(), Logger: log, IdleWait: 200 * time.Millisecond,
		AfterCommit: func(evs []projection.Event) {
			for _, ev := range evs {
				lat.add(ev.Time, time.Since(ev.Time))
			}
		},
	})
	if err != nil {
		return Summary{}, err
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	failed := make(chan error, 2) // the relay or the projector stopped with an error
	wg.Go(func() {
		if err := rl.Run(runCtx); err != nil {
			failed <- fmt.Errorf("relay: %w", err)
		}
	})
	wg.Go(func() {
		if err := pj.Run(runCtx); err != nil {
			failed <- fmt.Errorf("projector: %w", err)
		}
	})

	// Appending starts once the relay holds its partitions and the projector has its
	// consumer: events appended before then wait for the pipeline to start, and made the
	// summary's p99 a measure of start-up (20-60 ms) rather than of the flow.
	if err := waitReady(ctx, rl, js, failed); err != nil {
		return Summary{}, err
	}
	// The warm-up ends on the database's clock, which stamps the events' times.
	var dbNow time.Time
	if err := cfg.Pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&dbNow); err != nil {
		return Summary{}, err
	}
	lat.measureFrom(dbNow.Add(cfg.WarmUp))
	var appended, conflicts atomic.Int64
	progress := func(final bool) (relayed, projected int) {
		relayed = streamMsgs(ctx, js)
		projected = lat.count()
		if cfg.Progress != nil {
			end := "\r"
			if final {
				end = "\n"
			}
			fmt.Fprintf(cfg.Progress, "\r  appended %6d   relayed %6d   projected %6d   %s", appended.Load(), relayed, projected, end)
		}
		return relayed, projected
	}
	ticker := time.NewTicker(500 * time.Millisecond)
	defer ticker.Stop()
	appendErr := make(chan error, 1)
	start := time.Now()
	go func() {
		appendErr <- appendOrders(runCtx, writerURL, cfg, &appended, &conflicts)
	}()
	var sum Summary
	for waiting := true; waiting; {
		select {
		case <-ctx.Done():
			return Summary{}, ctx.Err()
		case err := <-failed:
			return Summary{}, err
		case err := <-appendErr:
			if err != nil {
				return Summary{}, err
			}
			appendErr = nil // appending is done; now wait for the projector
		case <-ticker.C:
			_, projected := progress(false)
			if appendErr == nil && projected >= int(appended.Load()) {
				waiting = false
			}
		}
	}
	sum.Relayed, sum.Projected = progress(true)
	sum.Elapsed = time.Since(start)
	sum.Orders, sum.Appended, sum.Conflicts = cfg.Orders, int(appended.Load()), int(conflicts.Load())
	sum.P50, sum.P99, sum.Max, sum.WarmUpMax = lat.quantiles()
	sum.WarmUp = cfg.WarmUp
	sum.WriterURL = writerURL
	sum.Statuses = map[string]int{}
	rows, err := cfg.Pool.Query(ctx, `SELECT status, count(*) FROM demo.orders GROUP BY status`)
	if err != nil {
		return Summary{}, err
	}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return Summary{}, err
		}
		sum.Statuses[s] = n
	}
	if s, err := js.Stream(ctx, Stream); err == nil {
		if m, err := s.GetMsg(ctx, 1); err == nil {
			sum.SampleSubject = m.Subject
		}
	}
	return sum, rows.Err()
}

// waitReady waits, at most readyWithin, until rl has joined the relay group and the
// orders projection's consumer exists; it returns early with what comes on failed.
func waitReady(ctx context.Context, rl *relay.Relay, js jetstream.JetStream, failed <-chan error) error {
	deadline := time.Now().Add(readyWithin)
	for {
		relayErr := rl.Ready()
		lookup, cancel := context.WithTimeout(ctx, time.Second)
		_, consumerErr := js.Consumer(lookup, Stream, projection.ConsumerName(ProjectionName))
		cancel()
		if relayErr == nil && consumerErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("relay and projector not ready within %s: relay: %v; projector's consumer: %v", readyWithin, relayErr, consumerErr)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-failed:
			return err
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// readyWithin bounds the wait for the relay and the projector to start.
const readyWithin = 30 * time.Second

// appendOrders posts every order's events, one append per event with the exact expected
// version, as a service handling an order's life would.
func appendOrders(ctx context.Context, url string, cfg Config, appended, conflicts *atomic.Int64) error {
	gen := NewGenerator(cfg.Seed)
	orders := make(chan Order)
	limiter := rate.NewLimiter(rate.Limit(cfg.Rate), max(1, cfg.Rate/100))
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients}}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for range cfg.Clients {
		wg.Go(func() {
			for o := range orders {
				for i, ev := range o.Events {
					if err := limiter.Wait(ctx); err != nil {
						return
					}
					err := post(ctx, client, url, o.StreamID, int64(i), ev)
					if err == errConflict {
						conflicts.Add(1)
						continue
					}
					if err != nil {
						mu.Lock()
						firstErr = cmp.Or(firstErr, err)
						mu.Unlock()
						return
					}
					appended.Add(1)
				}
			}
		})
	}
	for range cfg.Orders {
		select {
		case orders <- gen.Order():
		case <-ctx.Done():
		}
	}
	close(orders)
	wg.Wait()
	return firstErr
}

var errConflict = fmt.Errorf("conflict")

func post(ctx context.Context, client *http.Client, url, stream string, expected int64, ev pgjet.EventData) error {
	body, err := json.Marshal(map[string]any{
		"expected_version": expected,
		"events":           []map[string]any{{"id": ev.ID, "type": ev.Type, "data": ev.Data, "metadata": ev.Metadata}},
	})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/streams/"+stream, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch resp.StatusCode {
	case http.StatusOK, http.StatusCreated:
		return nil
	case http.StatusConflict:
		return errConflict
	}
	return fmt.Errorf("appending to %s: %s: %s", stream, resp.Status, msg)
}

func streamMsgs(ctx context.Context, js jetstream.JetStream) int {
	s, err := js.Stream(ctx, Stream)
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return int(info.State.Msgs)
}

// latencies collects the end-to-end latencies of projected events, apart from those of
// the events appended before from.
type latencies struct {
	mu     sync.Mutex
	from   time.Time
	d      []time.Duration // of events appended at or after from
	warmUp time.Duration   // the largest of the others
	n      int
}

func (l *latencies) measureFrom(t time.Time) {
	l.mu.Lock()
	l.from = t
	l.mu.Unlock()
}

func (l *latencies) add(appended time.Time, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	if appended.Before(l.from) {
		l.warmUp = max(l.warmUp, d)
		return
	}
	l.d = append(l.d, d)
}

func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func (l *latencies) quantiles() (p50, p99, maxd, warmUp time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0, 0, 0, l.warmUp
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return at(0.50), at(0.99), s[len(s)-1], l.warmUp
}
