package subscription

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// Headers a dead letter carries beside the headers of the original event (all but the
// Nats-Batch-* ones of an atomic batch; see republished).
const (
	HeaderDeadSubject    = "pgjet-dl-subject"    // the event's original subject
	HeaderDeadStream     = "pgjet-dl-stream"     // the JetStream stream it came from
	HeaderDeadSequence   = "pgjet-dl-sequence"   // its sequence in that stream
	HeaderDeadGroup      = "pgjet-dl-group"      // the group (consumer) that gave up on it
	HeaderDeadReason     = "pgjet-dl-reason"     // the last handler or decoding error
	HeaderDeadDeliveries = "pgjet-dl-deliveries" // deliveries before it was given up
	HeaderDeadTime       = "pgjet-dl-time"       // when it was dead-lettered, RFC 3339

	// HeaderRedriveGroup marks a re-driven event: pgjet subscribers of other groups
	// acknowledge and skip it (counted as skipped); other consumers see a duplicate of an
	// event they already handled and dedupe it by (ce-subject, ce-streamversion).
	HeaderRedriveGroup = "pgjet-redrive-group"
)

// DeadLetterConfig names where dead letters live. The zero value is the default.
type DeadLetterConfig struct {
	// Stream is the JetStream stream of dead letters. Default "PGJET_DEADLETTERS".
	Stream string
	// Prefix is the subject prefix; a group's dead letters go to "<Prefix>.<group>".
	// Default "pgjet.deadletter".
	Prefix string
}

func (c DeadLetterConfig) withDefaults() DeadLetterConfig {
	c.Stream = cmp.Or(c.Stream, DefaultDeadLetterStream)
	c.Prefix = cmp.Or(c.Prefix, DefaultDeadLetterPrefix)
	return c
}

// DeadLetter is an event a group gave up on.
type DeadLetter struct {
	// Sequence is the dead letter's sequence in the dead-letter stream; Redrive takes it.
	Sequence uint64
	// Group is the group (or ephemeral consumer name) that gave up.
	Group string
	// Subject, Stream and StreamSequence locate the original event.
	Subject        string
	Stream         string
	StreamSequence uint64
	// Reason is the last error, Deliveries how often the event was delivered.
	Reason     string
	Deliveries int
	// Time is when the event was dead-lettered.
	Time time.Time
	// EventID, StreamID, Version and Type are the event's contract headers.
	EventID  string
	StreamID string
	Version  int64
	Type     string
	// Parked is set on the dead letters of ordered groups: the event parked its stream, or
	// (Held) was set aside behind the one that did. Partition is the stream's partition.
	// Redrive of such a dead letter replays the stream's parked events in order.
	Parked    bool
	Held      bool
	Partition int
	// Header and Data are the original headers (plus the dead-letter ones, less the
	// Nats-Batch-* ones) and payload.
	Header nats.Header
	Data   []byte
}

// EnsureDeadLetterStream creates the dead-letter stream if it does not exist (file
// storage, no limits: dead letters stay until re-driven or purged). An existing stream is
// left as it is, so operators may set limits, but it must take the dead letters' subjects
// (cfg.Prefix.>): otherwise every dead letter would fail and its event be redelivered for
// ever, so EnsureDeadLetterStream fails instead.
func EnsureDeadLetterStream(ctx context.Context, js jetstream.JetStream, cfg DeadLetterConfig) error {
	cfg = cfg.withDefaults()
	want := cfg.Prefix + ".>"
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "pgjet dead letters: events subscriptions gave up on",
		Subjects:    []string{want},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  2 * time.Minute,
	})
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("creating dead-letter stream %q: %w", cfg.Stream, err)
	}
	s, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		return fmt.Errorf("looking up dead-letter stream %q: %w", cfg.Stream, err)
	}
	for _, subj := range s.CachedInfo().Config.Subjects {
		if covers(subj, want) {
			return nil
		}
	}
	return fmt.Errorf("dead-letter stream %q takes %v, not the dead letters' subjects %s: set DeadLetterPrefix to match it, or add %s to it",
		cfg.Stream, s.CachedInfo().Config.Subjects, want, want)
}

// letter says where a dead letter comes from and where it goes.
type letter struct {
	dl      DeadLetterConfig
	group   string      // the group giving up
	to      string      // the dead-letter subject
	subject string      // the event's subject in the events stream
	stream  string      // the events stream
	header  nats.Header // headers to add
}

// republished returns a copy of h, the headers of a stored message, for a plain publish of
// it: without the Nats-Batch-* headers that JetStream keeps on a message stored in an atomic
// batch (the relay's with Config.AtomicPublish). JetStream takes any publish that carries
// Nats-Batch-Id for a part of an atomic batch: a stream that does not allow atomic publishes
// refuses it, and one that does stages it as a batch that never completes.
func republished(h nats.Header) nats.Header {
	out := make(nats.Header, len(h))
	for k, v := range h {
		out[k] = append([]string(nil), v...)
	}
	for _, k := range []string{jetstreamext.BatchIDHeader, jetstreamext.BatchSeqHeader, jetstreamext.BatchCommitHeader} {
		out.Del(k)
	}
	return out
}

// deadLetter publishes msg to l.to with the reason. Its message id (stream, group,
// sequence) makes a repeat after a crash a no-op within the window.
func deadLetter(ctx context.Context, js jetstream.JetStream, l letter, msg jetstream.Msg, reason error) error {
	md, err := msg.Metadata()
	if err != nil {
		return err
	}
	h := republished(msg.Headers())
	for k, v := range l.header {
		h[k] = append([]string(nil), v...)
	}
	h.Del(HeaderRedriveGroup)
	h.Set(HeaderDeadSubject, l.subject)
	h.Set(HeaderDeadStream, l.stream)
	h.Set(HeaderDeadSequence, strconv.FormatUint(md.Sequence.Stream, 10))
	h.Set(HeaderDeadGroup, l.group)
	h.Set(HeaderDeadReason, reason.Error())
	h.Set(HeaderDeadDeliveries, strconv.FormatUint(md.NumDelivered, 10))
	h.Set(HeaderDeadTime, time.Now().UTC().Format(time.RFC3339Nano))
	h.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s/%s/%d", l.stream, l.group, md.Sequence.Stream))
	_, err = js.PublishMsg(ctx, &nats.Msg{Subject: l.to, Header: h, Data: msg.Data()},
		jetstream.WithExpectStream(l.dl.withDefaults().Stream))
	if err != nil {
		return fmt.Errorf("publishing dead letter of sequence %d: %w", md.Sequence.Stream, err)
	}
	return nil
}

// ListDeadLetters returns the dead letters of group, or of every group when group is "",
// oldest first.
func ListDeadLetters(ctx context.Context, js jetstream.JetStream, cfg DeadLetterConfig, group string) ([]DeadLetter, error) {
	cfg = cfg.withDefaults()
	if group == "" {
		return listDeadLetters(ctx, js, cfg, cfg.Prefix+".>")
	}
	// An ordered group's dead letters are under "<prefix>.<group>.<stream token>".
	return listDeadLetters(ctx, js, cfg, cfg.Prefix+"."+group, cfg.Prefix+"."+group+".>")
}

// listDeadLetters returns the dead letters on the subjects filters, oldest first.
func listDeadLetters(ctx context.Context, js jetstream.JetStream, cfg DeadLetterConfig, filters ...string) ([]DeadLetter, error) {
	cfg = cfg.withDefaults()
	cons, err := js.OrderedConsumer(ctx, cfg.Stream, jetstream.OrderedConsumerConfig{FilterSubjects: filters})
	if err != nil {
		return nil, fmt.Errorf("reading dead-letter stream %q: %w", cfg.Stream, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading dead-letter stream %q: %w", cfg.Stream, err)
	}
	var out []DeadLetter
	for pending := info.NumPending; pending > 0; {
		// Asking for no more than is pending lets the fetch end as soon as it has them.
		batch, err := cons.Fetch(int(min(pending, 256)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return out, fmt.Errorf("reading dead letters: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			dl, err := deadLetterFrom(m.Subject(), m.Headers(), m.Data())
			if err != nil {
				return out, err
			}
			md, err := m.Metadata()
			if err != nil {
				return out, err
			}
			dl.Sequence = md.Sequence.Stream
			pending = md.NumPending
			out = append(out, dl)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return out, fmt.Errorf("reading dead letters: %w", err)
		}
		if n == 0 {
			break
		}
	}
	return out, nil
}

func deadLetterFrom(subj string, h nats.Header, data []byte) (DeadLetter, error) {
	dl := DeadLetter{
		Group: h.Get(HeaderDeadGroup), Subject: h.Get(HeaderDeadSubject), Stream: h.Get(HeaderDeadStream),
		Reason: h.Get(HeaderDeadReason), EventID: h.Get(HeaderID), StreamID: h.Get(HeaderStream),
		Type: h.Get(HeaderType), Header: h, Data: data,
	}
	if dl.Subject == "" || dl.Stream == "" {
		return dl, fmt.Errorf("message on %s is not a pgjet dead letter", subj)
	}
	dl.StreamSequence, _ = strconv.ParseUint(h.Get(HeaderDeadSequence), 10, 64)
	dl.Deliveries, _ = strconv.Atoi(h.Get(HeaderDeadDeliveries))
	dl.Version, _ = strconv.ParseInt(h.Get(HeaderStreamVersion), 10, 64)
	dl.Time, _ = time.Parse(time.RFC3339Nano, h.Get(HeaderDeadTime))
	if kind := h.Get(HeaderDeadParked); kind != "" {
		dl.Parked, dl.Held = true, kind == "held"
		dl.Partition, _ = strconv.Atoi(h.Get(HeaderDeadPartition))
	}
	return dl, nil
}

// Redrive publishes the dead letter at sequence seq of the dead-letter stream again to its
// original subject, then deletes the dead letter.
//
// The re-driven event keeps its contract headers but not its Nats-Msg-Id: the events
// stream would drop a re-publish of the event id inside its duplicate window. Its message
// id becomes "<event id>/redrive/<seq>", so re-driving the same dead letter twice in the
// window publishes once. It carries HeaderRedriveGroup: pgjet subscribers of other groups
// skip it; other consumers dedupe it by (ce-subject, ce-streamversion). It lands at the end
// of the events stream, after later events of its stream.
//
// The dead letter of an ordered group (DeadLetter.Parked) is not re-published: Redrive
// asks the group to replay its parked stream. The partition's owner hands the stream's
// dead letters (the one that parked it, then those held behind it) to the handler in
// order, deletes each once handled, and then unparks the stream, so the group sees the
// stream in version order. Re-driving any dead letter of a parked stream replays all of
// them.
func Redrive(ctx context.Context, js jetstream.JetStream, cfg DeadLetterConfig, seq uint64) (DeadLetter, error) {
	cfg = cfg.withDefaults()
	s, err := js.Stream(ctx, cfg.Stream)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("opening dead-letter stream %q: %w", cfg.Stream, err)
	}
	raw, err := s.GetMsg(ctx, seq)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("reading dead letter %d: %w", seq, err)
	}
	dl, err := deadLetterFrom(raw.Subject, raw.Header, raw.Data)
	if err != nil {
		return DeadLetter{}, err
	}
	dl.Sequence = seq
	if dl.Parked {
		if err := requestReplay(ctx, js, dl); err != nil {
			return dl, fmt.Errorf("asking for a replay of parked stream %q of group %s: %w", dl.StreamID, dl.Group, err)
		}
		return dl, nil
	}
	h := republished(raw.Header)
	for _, k := range []string{HeaderDeadSubject, HeaderDeadStream, HeaderDeadSequence, HeaderDeadGroup,
		HeaderDeadReason, HeaderDeadDeliveries, HeaderDeadTime} {
		h.Del(k)
	}
	h.Set(HeaderRedriveGroup, dl.Group)
	h.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s/redrive/%d", dl.EventID, seq))
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: dl.Subject, Header: h, Data: raw.Data},
		jetstream.WithExpectStream(dl.Stream)); err != nil {
		return dl, fmt.Errorf("re-driving dead letter %d to %s: %w", seq, dl.Subject, err)
	}
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return dl, fmt.Errorf("deleting re-driven dead letter %d: %w", seq, err)
	}
	return dl, nil
}
