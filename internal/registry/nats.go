package registry

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/avro"
)

// NATSStatusHeader is the header of every reply of the NATS registry API that holds the
// HTTP status the request would get over HTTP: 200 on success.
const NATSStatusHeader = "Pgjet-Status"

// NATSConfig configures the registry's NATS request-reply API.
type NATSConfig struct {
	// Registry answers the requests. Required.
	Registry *Registry
	// Conn is the NATS connection to serve on. Required; the service never closes it.
	Conn *nats.Conn
	// Prefix starts every subject: <Prefix>.schema.id, <Prefix>.schema.subject and
	// <Prefix>.validate. Default "pgjet.registry".
	Prefix string
	// Queue is the queue group: requests are spread over the services that share it.
	// Default "pgjet-registry".
	Queue string
	// Logger receives a log entry for every request answered with a 5xx status. Default: no
	// logs.
	Logger *zap.Logger
	// MaxRequestBytes caps a request; a larger one is answered with status 413. Default
	// 1 MiB.
	MaxRequestBytes int
}

// NATSService serves the registry over NATS request-reply, so that a client that speaks
// only NATS can fetch schemas to encode and decode, and validate data before sending it.
// Requests and replies are JSON; errors are Confluent's {"error_code": N, "message": "..."}
// with the codes of the HTTP API, plus "fields" for invalid data. Every reply carries
// NATSStatusHeader.
//
//	<prefix>.schema.id       {"id": 3}                                -> {"id": 3, "schema": "..."}
//	<prefix>.schema.subject  {"subject": "s", "version": 2}           -> {"subject", "version", "id", "schema"}
//	                         (version omitted or "latest": the newest)
//	<prefix>.validate        {"type": "s", "data": {...}}             -> {"valid": true, "subject", "version",
//	                         (optional "version")                         "id", "payload": base64 wire format}
//	                                                                  or 422 {"error_code": 42206, "message",
//	                                                                  "fields": [{"path","rule","message","value"}]}
//
// Validation applies the schema and its field rules, as an append would; domain hooks run
// only in the append path.
type NATSService struct {
	cfg NATSConfig
	log *zap.Logger
}

// CodeInvalidData is the error_code of a validate reply for data that does not fit the
// schema (HTTP status 422). Confluent has no such code; 42206 extends its 422xx family.
const CodeInvalidData = 42206

// NewNATSService returns a service; Run serves it.
func NewNATSService(cfg NATSConfig) (*NATSService, error) {
	cfg.Prefix = cmp.Or(cfg.Prefix, "pgjet.registry")
	cfg.Queue = cmp.Or(cfg.Queue, "pgjet-registry")
	cfg.Logger = cmp.Or(cfg.Logger, zap.NewNop())
	cfg.MaxRequestBytes = cmp.Or(cfg.MaxRequestBytes, 1<<20)
	switch {
	case cfg.Registry == nil:
		return nil, errors.New("registry: NATSConfig.Registry is required")
	case cfg.Conn == nil:
		return nil, errors.New("registry: NATSConfig.Conn is required")
	case strings.ContainsAny(cfg.Prefix, " \t\r\n*>") || strings.Contains(cfg.Prefix, ".."):
		return nil, fmt.Errorf("registry: NATSConfig.Prefix %q is not a valid subject prefix", cfg.Prefix)
	case cfg.MaxRequestBytes < 0:
		return nil, errors.New("registry: NATSConfig.MaxRequestBytes must not be negative")
	}
	return &NATSService{cfg: cfg, log: cfg.Logger.With(zap.String("prefix", cfg.Prefix))}, nil
}

// Subjects returns the subjects the service answers on.
func (s *NATSService) Subjects() (byID, bySubject, validate string) {
	return s.cfg.Prefix + ".schema.id", s.cfg.Prefix + ".schema.subject", s.cfg.Prefix + ".validate"
}

// Run answers requests until ctx ends, then drains its subscriptions and returns nil. It
// returns an error when it cannot subscribe.
func (s *NATSService) Run(ctx context.Context) error {
	byID, bySubject, validate := s.Subjects()
	handlers := map[string]func(context.Context, []byte) (any, error){
		byID: s.schemaByID, bySubject: s.schemaBySubject, validate: s.validate,
	}
	work := context.WithoutCancel(ctx)
	var subs []*nats.Subscription
	defer func() {
		for _, sub := range subs {
			_ = sub.Drain()
		}
	}()
	for subject, h := range handlers {
		sub, err := s.cfg.Conn.QueueSubscribe(subject, s.cfg.Queue, func(msg *nats.Msg) { s.serve(work, msg, h) })
		if err != nil {
			return fmt.Errorf("registry: subscribing to %q: %w", subject, err)
		}
		subs = append(subs, sub)
	}
	if err := s.cfg.Conn.Flush(); err != nil {
		s.log.Warn("confirming the subscriptions with the server", zap.Error(err))
	}
	s.log.Info("serving the registry over NATS")
	<-ctx.Done()
	return nil
}

func (s *NATSService) serve(ctx context.Context, msg *nats.Msg, h func(context.Context, []byte) (any, error)) {
	if msg.Reply == "" {
		return
	}
	var (
		status = http.StatusOK
		body   []byte
		v      any
		err    error
	)
	if len(msg.Data) > s.cfg.MaxRequestBytes {
		err = httpError(http.StatusRequestEntityTooLarge, fmt.Sprintf("request larger than %d bytes", s.cfg.MaxRequestBytes))
	} else {
		v, err = s.handle(ctx, msg, h)
	}
	if err == nil {
		body, err = json.Marshal(v)
	}
	if err != nil {
		var (
			ide *invalidDataError
			ae  *apiError
		)
		switch {
		case errors.As(err, &ide):
			status, body = http.StatusUnprocessableEntity, mustJSON(ide)
		case errors.As(err, &ae):
			status, body = ae.status, mustJSON(ae)
		default:
			ae = newAPIError(http.StatusInternalServerError, codeStore, backendErrorMessage)
			status, body = ae.status, mustJSON(ae)
		}
		if status >= 500 {
			s.log.Error("registry request failed", zap.String("subject", msg.Subject), zap.Error(err))
		}
	}
	reply := &nats.Msg{Subject: msg.Reply, Header: nats.Header{}, Data: body}
	reply.Header.Set(NATSStatusHeader, strconv.Itoa(status))
	if err := msg.RespondMsg(reply); err != nil {
		s.log.Warn("replying to a registry request", zap.String("subject", msg.Subject), zap.Error(err))
	}
}

// handle runs h on msg's data. A panic, which would end the process (nats.go runs
// handlers without recovering), is logged and answered as a server error, as the HTTP
// API does.
func (s *NATSService) handle(ctx context.Context, msg *nats.Msg, h func(context.Context, []byte) (any, error)) (v any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("registry: handler panicked", zap.String("subject", msg.Subject), zap.Any("panic", p), zap.Stack("stack"))
			v, err = nil, fmt.Errorf("registry: handler panicked: %v", p)
		}
	}()
	return h(ctx, msg.Data)
}

// decodeRequest reads a JSON object into v, rejecting unknown or repeated members and
// trailing data.
func decodeRequest(data []byte, v any) error {
	if !utf8.Valid(data) {
		// Go's decoder would turn the bad bytes into U+FFFD and answer for another subject.
		return httpError(http.StatusBadRequest, "malformed request: not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return httpError(http.StatusBadRequest, "malformed request: "+err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return httpError(http.StatusBadRequest, "malformed request: data after the JSON object")
	}
	if key, ok := repeatedMember(data); ok {
		// The decoder kept the last; another client's parser would have kept the first.
		return httpError(http.StatusBadRequest, fmt.Sprintf("malformed request: member %.64q is given twice", key))
	}
	return nil
}

type idRequest struct {
	ID int `json:"id"`
}

type idReply struct {
	ID     int    `json:"id"`
	Schema string `json:"schema"`
}

func (s *NATSService) schemaByID(ctx context.Context, data []byte) (any, error) {
	var req idRequest
	if err := decodeRequest(data, &req); err != nil {
		return nil, err
	}
	if req.ID <= 0 {
		return nil, newAPIError(http.StatusNotFound, codeSchemaNotFound, "Schema %d not found", req.ID)
	}
	text, err := s.cfg.Registry.SchemaText(ctx, req.ID)
	if err != nil {
		return nil, s.apiErr(err, target{id: req.ID})
	}
	return idReply{ID: req.ID, Schema: text}, nil
}

type subjectRequest struct {
	Subject string          `json:"subject"`
	Version json.RawMessage `json:"version,omitempty"`
}

// parseVersionMember parses an optional version member as the HTTP API parses a version
// path segment (see parseVersion): 1 to 2^31-1, "latest" or -1, as a number or a string;
// absent or null means the latest.
func parseVersionMember(raw json.RawMessage) (int, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return LatestVersion, nil
	}
	text := string(raw)
	if raw[0] == '"' && json.Unmarshal(raw, &text) != nil {
		return 0, invalidVersion(string(raw))
	}
	n, ae := parseVersion(text)
	if ae != nil {
		return 0, ae
	}
	return n, nil
}

func (s *NATSService) version(ctx context.Context, subject string, raw json.RawMessage) (Version, error) {
	if subject == "" {
		return Version{}, httpError(http.StatusBadRequest, "malformed request: subject is required")
	}
	if ae := checkSubject(subject); ae != nil {
		return Version{}, ae
	}
	n, err := parseVersionMember(raw)
	if err != nil {
		return Version{}, err
	}
	var v Version
	if n == LatestVersion {
		v, err = s.cfg.Registry.LatestCached(ctx, subject)
	} else {
		v, err = s.cfg.Registry.Version(ctx, subject, n)
	}
	if err != nil {
		return Version{}, s.apiErr(err, target{subject: subject, version: n})
	}
	return v, nil
}

func (s *NATSService) schemaBySubject(ctx context.Context, data []byte) (any, error) {
	var req subjectRequest
	if err := decodeRequest(data, &req); err != nil {
		return nil, err
	}
	v, err := s.version(ctx, req.Subject, req.Version)
	if err != nil {
		return nil, err
	}
	text, err := s.cfg.Registry.SchemaText(ctx, v.ID)
	if err != nil {
		return nil, s.apiErr(err, target{id: v.ID})
	}
	return schemaResponse{Subject: v.Subject, Version: v.Version, ID: v.ID, Schema: text}, nil
}

type validateRequest struct {
	Type    string          `json:"type"`
	Version json.RawMessage `json:"version,omitempty"`
	Data    json.RawMessage `json:"data"`
}

type validateReply struct {
	Valid   bool   `json:"valid"`
	Subject string `json:"subject"`
	Version int    `json:"version"`
	ID      int    `json:"id"`
	// Payload is the data in the Confluent wire format, base64: what an append stores.
	Payload string `json:"payload"`
}

// invalidDataError is the 422 reply of validate.
type invalidDataError struct {
	Code    int               `json:"error_code"`
	Message string            `json:"message"`
	Fields  []avro.FieldError `json:"fields"`
}

func (e *invalidDataError) Error() string { return e.Message }

func (s *NATSService) validate(ctx context.Context, data []byte) (any, error) {
	var req validateRequest
	if err := decodeRequest(data, &req); err != nil {
		return nil, err
	}
	if len(req.Data) == 0 {
		return nil, httpError(http.StatusBadRequest, "malformed request: data is required")
	}
	v, err := s.version(ctx, req.Type, req.Version)
	if err != nil {
		return nil, err
	}
	body, err := v.Schema.EncodeJSON(req.Data)
	var verr *avro.ValidationError
	if errors.As(err, &verr) {
		return nil, &invalidDataError{Code: CodeInvalidData,
			Message: fmt.Sprintf("data does not fit %s version %d", v.Subject, v.Version), Fields: verr.Fields}
	}
	if err != nil {
		return nil, &invalidDataError{Code: CodeInvalidData, Message: err.Error(), Fields: []avro.FieldError{}}
	}
	return validateReply{Valid: true, Subject: v.Subject, Version: v.Version, ID: v.ID,
		Payload: base64.StdEncoding.EncodeToString(avro.AppendWire(nil, uint32(v.ID), body))}, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(`{"error_code":50001,"message":"encoding the reply failed"}`)
	}
	return b
}

func (s *NATSService) apiErr(err error, t target) error {
	ae, _ := toAPIError(err, t)
	return fmt.Errorf("%w: %w", ae, err)
}
