// Command deadletters lists and re-drives the events pgjet subscriptions gave up on.
//
//	deadletters list    [-group G] [-json]              list dead letters, oldest first
//	deadletters redrive [-group G] (-seq N | -id ID | -all)  publish them again
//
// A subscription dead-letters an event after Config.MaxDeliver failed deliveries: it
// publishes it, with its original headers and the reason, to "pgjet.deadletter.<group>" in
// the PGJET_DEADLETTERS stream. Re-driving publishes the event again to its original
// subject, marked for its group (header pgjet-redrive-group): pgjet subscribers of other
// groups skip it, other consumers dedupe it by (ce-subject, ce-streamversion). The events
// stream would drop a re-publish under the original Nats-Msg-Id inside its duplicate
// window, so the copy's message id is "<event id>/redrive/<dead-letter seq>". The dead
// letter is deleted once the copy is stored.
//
// Dead letters of ordered groups (subscription.Config.Ordered) park their stream: the
// later events of the stream wait as "held" dead letters behind the one that failed.
// Re-driving any of them does not re-publish: it asks the group to replay the parked
// stream, and the member owning its partition hands the stream's dead letters to its
// handler in order, deletes each once handled, and unparks the stream.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/service"
	"github.com/pgjet/pgjet/subscription"
)

const usage = `usage:
  deadletters list    [-group G] [-json] [flags]
  deadletters redrive [-group G] (-seq N | -id EVENT_ID | -all) [flags]
run "deadletters list -h" for the flags`

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "list" && os.Args[1] != "redrive") {
		fmt.Fprintln(os.Stderr, usage)
		if len(os.Args) == 2 && service.IsHelp(os.Args[1]) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	cmd := os.Args[1]
	var (
		c        service.Common
		o        options
		dlStream string
		dlPrefix string
	)
	f := service.NewFlags("deadletters " + cmd)
	f.String(&c.NATSURL, "nats-url", "NATS_URL", "", "NATS URL(s), comma-separated; empty starts an embedded server on -data-dir")
	f.String(&c.DataDir, "data-dir", "PGJET_DATA_DIR", ".pgjet", "directory of the embedded NATS server's data")
	f.String(&c.LogFormat, "log-format", "LOG_FORMAT", "console", "log format: json or console")
	f.String(&c.LogLevel, "log-level", "LOG_LEVEL", "warn", "log level: debug, info, warn, error")
	c.NATSSecurity.Register(f)
	f.String(&dlStream, "stream", "PGJET_DEADLETTER_STREAM", subscription.DefaultDeadLetterStream, "JetStream stream of dead letters")
	f.String(&dlPrefix, "subject-prefix", "PGJET_DEADLETTER_PREFIX", subscription.DefaultDeadLetterPrefix, "subject prefix of dead letters")
	f.String(&o.group, "group", "", "", "only this group's dead letters (default: every group)")
	if cmd == "list" {
		f.Bool(&o.json, "json", "", false, "print one JSON object per line")
	} else {
		f.Int(&o.seq, "seq", "", 0, "re-drive the dead letter with this sequence (see list)")
		f.String(&o.id, "id", "", "", "re-drive the dead letters of this event id")
		f.Bool(&o.all, "all", "", false, "re-drive every dead letter (of -group)")
		f.NonNegative("seq")
	}
	f.NoArgs("deadletters " + cmd + " [flags]")
	service.Main("deadletters", &c, f, os.Args[2:], func(ctx context.Context, log *zap.Logger) error {
		nc, err := c.ConnectNATS(ctx, "pgjet-deadletters", log)
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc.Conn)
		if err != nil {
			return err
		}
		o.dl = subscription.DeadLetterConfig{Stream: dlStream, Prefix: dlPrefix}
		if cmd == "list" {
			return list(ctx, js, o, os.Stdout)
		}
		return redrive(ctx, js, o, os.Stdout)
	})
}

type options struct {
	dl    subscription.DeadLetterConfig
	group string
	json  bool
	seq   int
	id    string
	all   bool
}

// listed is a dead letter as list -json prints it.
type listed struct {
	Seq        uint64    `json:"seq"`
	Group      string    `json:"group"`
	EventID    string    `json:"event_id"`
	Stream     string    `json:"stream"`
	Version    int64     `json:"version"`
	Type       string    `json:"type"`
	Subject    string    `json:"subject"`
	Sequence   uint64    `json:"sequence"`
	Deliveries int       `json:"deliveries"`
	DeadAt     time.Time `json:"dead_at"`
	Reason     string    `json:"reason"`
	Parked     bool      `json:"parked,omitempty"` // an ordered group's: its stream is parked
	Held       bool      `json:"held,omitempty"`   // held behind the event that parked its stream
}

func list(ctx context.Context, js jetstream.JetStream, o options, out io.Writer) error {
	dls, err := subscription.ListDeadLetters(ctx, js, o.dl, o.group)
	if err != nil {
		return err
	}
	if o.json {
		enc := json.NewEncoder(out)
		for _, d := range dls {
			if err := enc.Encode(listed{d.Sequence, d.Group, d.EventID, d.StreamID, d.Version, d.Type, d.Subject,
				d.StreamSequence, d.Deliveries, d.Time, d.Reason, d.Parked, d.Held}); err != nil {
				return err
			}
		}
		return nil
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "SEQ\tGROUP\tEVENT ID\tSTREAM\tVERSION\tTYPE\tDELIVERIES\tDEAD AT\tPARKED\tREASON")
	for _, d := range dls {
		parked := "-"
		switch {
		case d.Held:
			parked = "held"
		case d.Parked:
			parked = "parked"
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\n", d.Sequence, d.Group, d.EventID, d.StreamID, d.Version,
			d.Type, d.Deliveries, d.Time.Format(time.RFC3339), parked, d.Reason)
	}
	return w.Flush()
}

func redrive(ctx context.Context, js jetstream.JetStream, o options, out io.Writer) error {
	chosen := 0
	for _, set := range []bool{o.seq > 0, o.id != "", o.all} {
		if set {
			chosen++
		}
	}
	if chosen != 1 {
		return errors.New("give exactly one of -seq, -id and -all")
	}
	dls, err := subscription.ListDeadLetters(ctx, js, o.dl, o.group)
	if err != nil {
		return err
	}
	picked := pick(dls, o)
	if len(picked) == 0 {
		return errors.New("no matching dead letters")
	}
	return redriveEach(ctx, js, o.dl, picked, out)
}

// pick returns the dead letters of dls that o selects, oldest first, with one dead letter
// per parked stream: re-driving one asks its group to replay them all, and the group
// deletes them as it goes, so re-driving the others would find them gone or ask for a
// second replay.
func pick(dls []subscription.DeadLetter, o options) []subscription.DeadLetter {
	var picked []subscription.DeadLetter
	parked := map[string]bool{}
	for _, d := range dls {
		byID := o.id != "" && d.EventID == o.id
		bySeq := o.seq > 0 && d.Sequence == uint64(o.seq)
		if !o.all && !byID && !bySeq {
			continue
		}
		if d.Parked {
			k := d.Group + "\x00" + d.StreamID
			if parked[k] {
				continue
			}
			parked[k] = true
		}
		picked = append(picked, d)
	}
	return picked
}

// redriveEach re-drives dls in order and says what it did. A dead letter gone since it was
// listed (re-driven by someone else, or replayed with its parked stream) is reported, not
// an error; on an error it says how many were re-driven before it.
func redriveEach(ctx context.Context, js jetstream.JetStream, dl subscription.DeadLetterConfig, dls []subscription.DeadLetter, out io.Writer) error {
	for i, want := range dls {
		d, err := subscription.Redrive(ctx, js, dl, want.Sequence)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			fmt.Fprintf(out, "dead letter %d is gone: re-driven or replayed since it was listed\n", want.Sequence)
			continue
		case err != nil:
			return fmt.Errorf("re-drove %d of the %d dead letters chosen; then %w", i, len(dls), err)
		case d.Parked:
			fmt.Fprintf(out, "released parked stream %s for ordered group %s: its dead letters are replayed in order\n", d.StreamID, d.Group)
		default:
			fmt.Fprintf(out, "re-drove %d: %s %s v%d for group %s\n", want.Sequence, d.EventID, d.StreamID, d.Version, d.Group)
		}
	}
	return nil
}
