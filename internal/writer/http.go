package writer

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet"
)

// Read limits of GET /streams/{stream}.
const (
	defaultReadLimit = 100
	maxReadLimit     = 1000
	// readChunk is how many events a read takes from the store at a time: the default
	// limit's page in one query, and at most this many events in memory beyond the reply's
	// budget (HandlerConfig.MaxReadBytes).
	readChunk = 100
	// eventOverhead approximates an event's bytes in a reply beside its data and metadata.
	eventOverhead = 256
)

// HandlerConfig configures the HTTP API.
type HandlerConfig struct {
	// Store appends and reads the events. Required.
	Store *pgjet.Store
	// Logger receives a log entry for every failure answered with a 5xx status, and a debug
	// entry for other failures. Default: no logs.
	Logger *zap.Logger
	// MaxBodyBytes caps the size of a request body; a larger one is answered with 413.
	// Default 4 MiB.
	MaxBodyBytes int64
	// MaxReadBytes bounds a read's reply: a read stops adding events once their data reach
	// it (a reply always holds at least one event), so it may return fewer than its limit
	// and the client pages on from the last version. Default 4 MiB.
	MaxReadBytes int64
	// TracerProvider starts a span per append, a child of the request's traceparent.
	// Default: no tracing (an incoming traceparent is still passed on).
	TracerProvider trace.TracerProvider
}

func (c *HandlerConfig) setDefaults() {
	c.Logger = cmp.Or(c.Logger, zap.NewNop())
	c.MaxBodyBytes = cmp.Or(c.MaxBodyBytes, 4<<20)
	c.MaxReadBytes = cmp.Or(c.MaxReadBytes, 4<<20)
}

func (c *HandlerConfig) validate() error {
	switch {
	case c.Store == nil:
		return errors.New("writer: HandlerConfig.Store is required")
	case c.MaxBodyBytes < 0:
		return errors.New("writer: HandlerConfig.MaxBodyBytes must not be negative")
	case c.MaxReadBytes < 0:
		return errors.New("writer: HandlerConfig.MaxReadBytes must not be negative")
	}
	return nil
}

// NewHandler returns the HTTP API of the writer:
//
//	POST /streams/{stream}   append events (body: expected_version, events)
//	GET  /streams/{stream}   read events (query: from, limit, direction)
//
// Every reply is JSON. Failures are {"error": {"code": ..., "message": ...}} with a status
// that depends on the cause only (see docs/api.md). An incoming W3C traceparent header is
// stored with the appended events and travels on with them to NATS.
func NewHandler(cfg HandlerConfig) (http.Handler, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	h := &handler{store: cfg.Store, log: cfg.Logger, maxBody: cfg.MaxBodyBytes, maxRead: cfg.MaxReadBytes, tracer: tracerOf(cfg.TracerProvider)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /streams/{stream}", h.append)
	mux.HandleFunc("GET /streams/{stream}", h.read)
	mux.HandleFunc("/streams/{stream}", h.methodNotAllowed)
	mux.HandleFunc("/", h.notFound)
	return mux, nil
}

type handler struct {
	store   *pgjet.Store
	log     *zap.Logger
	maxBody int64
	maxRead int64
	tracer  trace.Tracer
}

func (h *handler) append(w http.ResponseWriter, r *http.Request) {
	stream := r.PathValue("stream")
	if ct := r.Header.Get("Content-Type"); ct != "" && !isJSON(ct) {
		h.reply(w, r, http.StatusUnsupportedMediaType, errorEnvelope{Error: errorBody{
			Code: codeUnsupportedMediaType, Message: fmt.Sprintf("Content-Type %q is not JSON; send application/json", ct),
		}})
		return
	}
	req, err := decodeAppendRequest(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err == nil && req.Stream != "" && req.Stream != stream {
		err = invalidAt("stream", "is %q but the path names stream %q; leave it out of the body", req.Stream, stream)
	}
	if err != nil {
		h.fail(w, r, stream, err)
		return
	}
	ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	res, err := appendTo(ctx, h.tracer, "http", h.store, stream, req)
	if err != nil {
		h.fail(w, r, stream, err)
		return
	}
	h.reply(w, r, http.StatusOK, res)
}

// isJSON reports whether a Content-Type names JSON: application/json or a +json type.
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// readResponse is the body of GET /streams/{stream}.
type readResponse struct {
	Stream string          `json:"stream"`
	Events []eventResponse `json:"events"`
}

// eventResponse is a stored event with its data as natural JSON.
type eventResponse struct {
	ID        uuid.UUID         `json:"id"`
	Stream    string            `json:"stream"`
	Version   int64             `json:"version"`
	Type      string            `json:"type"`
	SchemaID  int               `json:"schema_id"`
	Position  int64             `json:"position"`
	CreatedAt time.Time         `json:"created_at"`
	Metadata  map[string]string `json:"metadata"`
	Data      json.RawMessage   `json:"data"`
}

func (h *handler) read(w http.ResponseWriter, r *http.Request) {
	stream := r.PathValue("stream")
	q, err := parseReadQuery(r)
	if err != nil {
		h.fail(w, r, stream, err)
		return
	}
	// The page is read in chunks and ends early once its events fill the reply's budget:
	// read whole, a page of large events held gigabytes (1000 events of 1 MiB, raw, decoded
	// and encoded) for one request.
	out := readResponse{Stream: stream, Events: []eventResponse{}}
	size := int64(0)
	for from := q.from; len(out.Events) < q.limit && size < h.maxRead; {
		n := min(q.limit-len(out.Events), readChunk)
		events, err := h.store.ReadStream(r.Context(), stream, q.dir, from, n)
		if err != nil {
			h.fail(w, r, stream, err)
			return
		}
		for _, e := range events {
			data, err := h.store.DecodeJSON(r.Context(), e)
			if err != nil {
				h.fail(w, r, stream, err)
				return
			}
			md := e.Metadata
			if md == nil {
				md = map[string]string{}
			}
			out.Events = append(out.Events, eventResponse{
				ID: e.ID, Stream: e.StreamID, Version: e.Version, Type: e.Type, SchemaID: e.SchemaID,
				Position: e.Position, CreatedAt: e.CreatedAt, Metadata: md, Data: data,
			})
			size += int64(len(data)) + eventOverhead
			for k, v := range md {
				size += int64(len(k) + len(v))
			}
			if size >= h.maxRead {
				break
			}
		}
		if len(events) < n {
			break // the stream's end
		}
		last := events[len(events)-1].Version
		if q.dir == pgjet.Backward {
			if from = last - 1; from < 1 {
				break
			}
		} else {
			from = last + 1
		}
	}
	h.reply(w, r, http.StatusOK, out)
}

type readQuery struct {
	dir   pgjet.Direction
	from  int64
	limit int
}

func parseReadQuery(r *http.Request) (readQuery, error) {
	v := r.URL.Query()
	q := readQuery{dir: pgjet.Forward, from: 1, limit: defaultReadLimit}
	bad := func(param, format string, args ...any) error {
		return &requestError{Code: codeInvalidQuery, Param: param, Message: param + ": " + fmt.Sprintf(format, args...)}
	}
	switch d := v.Get("direction"); d {
	case "", "forward":
	case "backward":
		q.dir, q.from = pgjet.Backward, pgjet.End
	default:
		return q, bad("direction", "must be forward or backward, got %s", quoteShort(d))
	}
	if s := v.Get("from"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			return q, bad("from", "must be a version (an integer >= 1), got %s", quoteShort(s))
		}
		q.from = n
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxReadLimit {
			return q, bad("limit", "must be an integer from 1 to %d, got %s", maxReadLimit, quoteShort(s))
		}
		q.limit = n
	}
	return q, nil
}

func (h *handler) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET, HEAD, POST")
	h.reply(w, r, http.StatusMethodNotAllowed, errorEnvelope{Error: errorBody{
		Code: codeMethodNotAllowed, Message: fmt.Sprintf("method %s is not allowed on a stream; use GET or POST", r.Method),
	}})
}

func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.reply(w, r, http.StatusNotFound, errorEnvelope{Error: errorBody{
		Code: codeNotFound, Message: fmt.Sprintf("no such endpoint: %s; see /streams/{stream}", r.URL.Path),
	}})
}

// fail answers with the error's status and body, and logs it.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, stream string, err error) {
	status, body := errorResponse(err)
	if r.Context().Err() != nil {
		// The client hung up (or its request's deadline passed) while the request ran: the
		// failure is the client's leaving, not the writer's trouble, and nobody reads the
		// answer. An append it interrupted may still commit; a retry with the same ids is
		// answered as one.
		h.log.Debug("client gone before the answer", zap.String("stream", stream), zap.String("method", r.Method), zap.Error(err))
		h.reply(w, r, status, errorEnvelope{Error: body})
		return
	}
	logFailure(h.log, status, body.Code, err, zap.String("stream", stream), zap.String("method", r.Method))
	h.reply(w, r, status, errorEnvelope{Error: body})
}

func (h *handler) reply(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		h.log.Error("encoding reply", zap.String("path", r.URL.Path), zap.Error(err))
		status = http.StatusInternalServerError
		b, _ = json.Marshal(errorEnvelope{Error: errorBody{Code: codeInternal, Message: "internal error; the writer logged the details"}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// logFailure logs a failed request: server faults as errors, client faults for debugging.
func logFailure(log *zap.Logger, status int, code string, err error, fields ...zap.Field) {
	fields = append(fields, zap.Int("status", status), zap.String("code", code), zap.Error(err))
	if status >= 500 {
		log.Error("request failed", fields...)
		return
	}
	log.Debug("request rejected", fields...)
}
