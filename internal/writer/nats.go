package writer

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet"
)

// StatusHeader is the header of every NATS reply that holds the HTTP status the same request
// would get over HTTP: 200 on success.
const StatusHeader = "Pgjet-Status"

// NATSConfig configures the NATS request-reply API.
type NATSConfig struct {
	// Store appends the events. Required.
	Store *pgjet.Store
	// Conn is the NATS connection to serve on. Required; the service never closes it.
	Conn *nats.Conn
	// Subject is the subject requests are sent to. Default "pgjet.api.append".
	Subject string
	// Queue is the queue group: requests are spread over the writers that share it.
	// Default "pgjet-writer".
	Queue string
	// Logger receives a log entry for every failure answered with a 5xx status, and a debug
	// entry for other failures. Default: no logs.
	Logger *zap.Logger
	// MaxRequestBytes caps the size of a request; a larger one is answered with status 413.
	// (The NATS server's max_payload, 1 MiB by default, also applies.) Default 4 MiB.
	MaxRequestBytes int64
	// Concurrency caps the requests one service handles at once. Default 16.
	Concurrency int
	// Timeout bounds the handling of one request, including requests still running when
	// Run's context ends. Default 30s.
	Timeout time.Duration
	// TracerProvider starts a span per append, a child of the request's traceparent
	// header. Default: no tracing (an incoming traceparent is still passed on).
	TracerProvider trace.TracerProvider
}

func (c *NATSConfig) setDefaults() {
	c.Subject = cmp.Or(c.Subject, "pgjet.api.append")
	c.Queue = cmp.Or(c.Queue, "pgjet-writer")
	c.Logger = cmp.Or(c.Logger, zap.NewNop())
	c.MaxRequestBytes = cmp.Or(c.MaxRequestBytes, 4<<20)
	c.Concurrency = cmp.Or(c.Concurrency, 16)
	c.Timeout = cmp.Or(c.Timeout, 30*time.Second)
}

func (c *NATSConfig) validate() error {
	switch {
	case c.Store == nil:
		return errors.New("writer: NATSConfig.Store is required")
	case c.Conn == nil:
		return errors.New("writer: NATSConfig.Conn is required")
	case strings.ContainsAny(c.Subject, " \t\r\n") || strings.Contains(c.Subject, ".."):
		return fmt.Errorf("writer: NATSConfig.Subject %q is not a valid subject", c.Subject)
	case strings.ContainsAny(c.Queue, " \t\r\n"):
		return fmt.Errorf("writer: NATSConfig.Queue %q is not a valid queue name", c.Queue)
	case c.MaxRequestBytes < 0:
		return errors.New("writer: NATSConfig.MaxRequestBytes must not be negative")
	case c.Concurrency < 0:
		return errors.New("writer: NATSConfig.Concurrency must not be negative")
	case c.Timeout < 0:
		return errors.New("writer: NATSConfig.Timeout must not be negative")
	}
	return nil
}

// NATSService is the append API over NATS request-reply. A request is the HTTP append body
// plus a "stream" member; the reply is the HTTP reply's body (errors carry "status" inside
// "error" too) with the StatusHeader header. The same request gets the same answer over both.
type NATSService struct {
	cfg    NATSConfig
	log    *zap.Logger
	tracer trace.Tracer
}

// NewNATSService returns a service; Run serves it.
func NewNATSService(cfg NATSConfig) (*NATSService, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &NATSService{cfg: cfg, log: cfg.Logger.With(zap.String("subject", cfg.Subject)), tracer: tracerOf(cfg.TracerProvider)}, nil
}

// Run subscribes to the subject in the queue group and answers requests until ctx ends.
// Then it drains the subscription: requests already received are still answered (each
// within Timeout) before Run returns nil. It returns an error when it cannot subscribe, or
// when the subscription ends before ctx does (the connection was closed).
//
// A request without a reply subject is ignored: nobody would learn whether it was
// appended.
func (s *NATSService) Run(ctx context.Context) error {
	var (
		inflight sync.WaitGroup
		slots    = make(chan struct{}, s.cfg.Concurrency)
		done     = make(chan struct{})
		doneOnce sync.Once
	)
	// Requests outlive ctx: a drained request is answered, not cancelled.
	work := context.WithoutCancel(ctx)
	sub, err := s.cfg.Conn.QueueSubscribe(s.cfg.Subject, s.cfg.Queue, func(msg *nats.Msg) {
		// Blocking here when all slots are taken lets NATS buffer (and, past its pending
		// limits, drop) requests rather than this process growing without bound.
		slots <- struct{}{}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			defer func() { <-slots }()
			s.serve(work, msg)
		}()
	})
	if err != nil {
		return fmt.Errorf("writer: subscribing to %q: %w", s.cfg.Subject, err)
	}
	// The closed handler runs once the subscription has delivered its last message and that
	// message's callback has returned, so no inflight.Add can follow it.
	sub.SetClosedHandler(func(string) { doneOnce.Do(func() { close(done) }) })
	if !sub.IsValid() {
		doneOnce.Do(func() { close(done) })
	}
	if err := s.cfg.Conn.Flush(); err != nil {
		s.log.Warn("confirming the subscription with the server", zap.Error(err))
	}
	s.log.Info("serving NATS append requests", zap.String("queue", s.cfg.Queue))

	select {
	case <-ctx.Done():
	case <-done:
		inflight.Wait()
		return fmt.Errorf("writer: subscription to %q ended: NATS connection closed", s.cfg.Subject)
	}
	switch {
	case !s.cfg.Conn.IsConnected():
		// A drain waits for the server to confirm it (about 10 s in vain while the client
		// reconnects); no request can arrive meanwhile anyway.
		_ = sub.Unsubscribe()
	default:
		if err := sub.Drain(); err != nil {
			s.log.Warn("draining the subscription; unsubscribing instead", zap.Error(err))
			_ = sub.Unsubscribe()
		}
	}
	<-done
	inflight.Wait()
	s.log.Info("stopped serving NATS append requests")
	return nil
}

// serve answers one request.
func (s *NATSService) serve(ctx context.Context, msg *nats.Msg) {
	if msg.Reply == "" {
		s.log.Warn("ignoring an append request without a reply subject")
		return
	}
	ctx, cancel := context.WithTimeout(traceContext(ctx, msg.Header), s.cfg.Timeout)
	defer cancel()
	status, body := http.StatusOK, []byte(nil)
	stream, res, err := s.handle(ctx, msg.Data)
	if err == nil {
		body, err = json.Marshal(res)
	}
	var eb errorBody
	if err != nil {
		status, eb = errorResponse(err)
		eb.Status = status
		logFailure(s.log, status, eb.Code, err, zap.String("stream", stream))
		body = s.errorReply(eb)
	}
	reply := &nats.Msg{Subject: msg.Reply, Header: nats.Header{}, Data: body}
	reply.Header.Set(StatusHeader, strconv.Itoa(status))
	if err != nil {
		// The nats.go micro package's error headers, for clients that look for them.
		reply.Header.Set("Nats-Service-Error", eb.Code)
		reply.Header.Set("Nats-Service-Error-Code", strconv.Itoa(status))
	}
	if err := msg.RespondMsg(reply); err != nil {
		s.log.Warn("replying to an append request", zap.String("stream", stream), zap.Int("status", status), zap.Error(err))
	}
}

func (s *NATSService) handle(ctx context.Context, data []byte) (string, appendResponse, error) {
	if int64(len(data)) > s.cfg.MaxRequestBytes {
		return "", appendResponse{}, &bodyTooLargeError{Limit: s.cfg.MaxRequestBytes}
	}
	req, err := decodeAppendRequest(bytes.NewReader(data))
	if err != nil {
		return "", appendResponse{}, err
	}
	res, err := appendTo(ctx, s.tracer, "nats", s.cfg.Store, req.Stream, req)
	return req.Stream, res, err
}

// errorReply encodes an error body that fits in one NATS message, dropping validation
// failures from the end of the list if there are too many.
func (s *NATSService) errorReply(eb errorBody) []byte {
	limit := int(s.cfg.Conn.MaxPayload()) - 1024 // room for the headers
	all := len(eb.Fields)
	for {
		b, err := json.Marshal(errorEnvelope{Error: eb})
		if err != nil || len(b) <= limit || len(eb.Fields) <= 1 || limit <= 0 {
			return b
		}
		eb.Fields = eb.Fields[:len(eb.Fields)/2]
		eb.Message = fmt.Sprintf("event data does not match its schema (%d failures; the first %d are listed)", all, len(eb.Fields))
	}
}

// traceContext returns ctx with the W3C trace context of a request's headers. NATS headers
// keep their case, so the keys are matched without it.
func traceContext(ctx context.Context, h nats.Header) context.Context {
	if len(h) == 0 {
		return ctx
	}
	c := propagation.MapCarrier{}
	for k, v := range h {
		if len(v) > 0 {
			c[strings.ToLower(k)] = v[0]
		}
	}
	return propagation.TraceContext{}.Extract(ctx, c)
}
