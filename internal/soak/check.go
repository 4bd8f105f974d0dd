package soak

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/pgjet/pgjet/internal/verify"
)

// Result is the outcome of a run: counts, and every violation found.
type Result struct {
	Attempts, Committed, RolledBack, Conflicts, Unknown int
	// UnknownCommitted counts appends with an unknown outcome that Postgres shows committed.
	UnknownCommitted            int
	Events, Published, Consumed int
	// ModelStreams and ModelEvents are the read model's rows and the events they count.
	ModelStreams, ModelEvents int
	// GroupDeliveries counts the events handed to the subscription group's members,
	// redeliveries included; GroupEvents the distinct (stream, version) pairs among them.
	GroupDeliveries, GroupEvents int
	Faults                       map[string]int
	Violations                   []string
}

func (r *Result) violate(format string, args ...any) {
	r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
}

// OK reports whether the run found no violation.
func (r *Result) OK() bool { return len(r.Violations) == 0 }

// String prints the counts, the faults and up to 50 violations.
func (r *Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "appends: %d attempted, %d committed, %d rolled back, %d conflicts, %d unknown (%d of them committed)\n",
		r.Attempts, r.Committed, r.RolledBack, r.Conflicts, r.Unknown, r.UnknownCommitted)
	fmt.Fprintf(&b, "events: %d committed, %d published, %d consumed per consumer\n", r.Events, r.Published, r.Consumed)
	fmt.Fprintf(&b, "read model: %d streams, %d events (compared row by row with a rebuild from Postgres)\n", r.ModelStreams, r.ModelEvents)
	fmt.Fprintf(&b, "subscription group: %d deliveries, %d distinct events (%d redelivered)\n",
		r.GroupDeliveries, r.GroupEvents, r.GroupDeliveries-r.GroupEvents)
	for _, k := range slices.Sorted(maps.Keys(r.Faults)) {
		fmt.Fprintf(&b, "fault %q: %d\n", k, r.Faults[k])
	}
	fmt.Fprintf(&b, "violations: %d\n", len(r.Violations))
	for i, v := range r.Violations {
		if i == 50 {
			fmt.Fprintf(&b, "  ... %d more\n", len(r.Violations)-50)
			break
		}
		fmt.Fprintf(&b, "  %s\n", v)
	}
	return b.String()
}

// check compares the writers' history, Postgres, JetStream, the consumers' and the
// group's deliveries, and the read model against a rebuild from Postgres.
func check(ctx context.Context, s *system, h *history, cs []*consumer, res *Result) error {
	// Postgres is the truth of what committed.
	inPG := map[string]pgEvent{}
	rows, err := s.pool.Query(ctx, `SELECT event_id::text, stream_id, version FROM pgjet.events`)
	if err != nil {
		return fmt.Errorf("soak: reading events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var e pgEvent
		if err := rows.Scan(&id, &e.stream, &e.version); err != nil {
			return fmt.Errorf("soak: reading events: %w", err)
		}
		inPG[id] = e
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("soak: reading events: %w", err)
	}
	res.Events = len(inPG)

	// The writers' view against Postgres.
	h.mu.Lock()
	attempts := slices.Clone(h.attempts)
	h.mu.Unlock()
	checkAttempts(attempts, inPG, res)

	// JetStream against Postgres: missing, duplicates, order, rolled-back events visible.
	rep, err := verify.Check(ctx, verify.Config{Pool: s.pool, JetStream: s.js})
	if err != nil {
		return err
	}
	res.Published = rep.JetStream
	for _, e := range rep.Missing {
		res.violate("committed event not in JetStream: %s", e)
	}
	for _, e := range rep.Duplicates {
		res.violate("duplicate in JetStream: %s", e)
	}
	for _, e := range rep.OutOfOrder {
		res.violate("out of stream order in JetStream: %s", e)
	}
	for _, e := range rep.Unexpected {
		res.violate("in JetStream without a committed event (rolled back?): %s", e)
	}
	if rep.Pending > 0 {
		res.violate("%d events still in the outbox", rep.Pending)
	}

	// Each consumer: exactly the committed events, once, per-stream in version order.
	for i, c := range cs {
		ds := c.deliveries()
		if i == 0 {
			res.Consumed = len(ds)
		}
		checkDeliveries(c.name, ds, inPG, res)
	}

	// The group: at least once; deduplicated by (stream, version), exactly the committed
	// events.
	if s.cfg.GroupMembers > 0 {
		ds := s.group.deliveries()
		res.GroupDeliveries = len(ds)
		res.GroupEvents = checkGroup(ds, inPG, res)
	}

	// The read model against the same projection computed from Postgres alone.
	model, err := readModel(ctx, s.pool)
	if err != nil {
		return err
	}
	rebuilt, err := s.rebuildModel(ctx, res)
	if err != nil {
		return err
	}
	compareModel(model, rebuilt, res)
	checkExercised(s.cfg, res)
	return nil
}

// pgEvent is a committed event as Postgres has it, by event id.
type pgEvent struct {
	stream  string
	version int64
}

// checkAttempts checks the writers' history against Postgres: an append is all in or all
// out; acknowledged appends are in; rolled-back and conflicting ones are not; nothing is
// in Postgres that no writer appended. It counts the outcomes into res.
func checkAttempts(attempts []attempt, inPG map[string]pgEvent, res *Result) {
	attempted := map[string]bool{}
	for _, a := range attempts {
		res.Attempts++
		committed := 0
		for _, id := range a.ids {
			attempted[id] = true
			if _, ok := inPG[id]; ok {
				committed++
			}
		}
		if committed != 0 && committed != len(a.ids) {
			res.violate("append to %s (expected %s) partly committed: %d of %d events %v", a.stream, a.expected, committed, len(a.ids), a.ids)
		}
		switch a.outcome {
		case outcomeCommitted:
			res.Committed++
			if committed == 0 {
				res.violate("acknowledged append to %s (expected %s) lost: events %v not in Postgres", a.stream, a.expected, a.ids)
			}
		case outcomeRolledBack, outcomeConflict:
			if a.outcome == outcomeRolledBack {
				res.RolledBack++
			} else {
				res.Conflicts++
			}
			if committed > 0 {
				res.violate("%s append to %s (expected %s) is in Postgres: events %v", a.outcome, a.stream, a.expected, a.ids)
			}
		case outcomeUnknown:
			res.Unknown++
			if committed > 0 {
				res.UnknownCommitted++
			}
		default:
			res.violate("append to %s (expected %s) has no known outcome %q", a.stream, a.expected, a.outcome)
		}
	}
	for id, e := range inPG {
		if !attempted[id] {
			res.violate("event %s (%s v%d) in Postgres was never appended", id, e.stream, e.version)
		}
	}
}

// checkDeliveries checks what one consumer received, in arrival order: every committed
// event once, as committed, each stream's versions one after the other from 1.
func checkDeliveries(name string, ds []delivery, inPG map[string]pgEvent, res *Result) {
	seen := map[string]bool{}
	last := map[string]int64{}
	for _, d := range ds {
		e, ok := inPG[d.id]
		switch {
		case seen[d.id]:
			res.violate("%s: event %s (%s v%d, seq %d) delivered twice", name, d.id, d.stream, d.version, d.seq)
			continue
		case !ok:
			res.violate("%s: event %s (%s v%d, seq %d) delivered but never committed", name, d.id, d.stream, d.version, d.seq)
		case e.stream != d.stream || e.version != d.version:
			res.violate("%s: event %s delivered as %s v%d, committed as %s v%d", name, d.id, d.stream, d.version, e.stream, e.version)
		case d.version != last[d.stream]+1:
			res.violate("%s: %s v%d (seq %d) delivered after v%d", name, d.stream, d.version, d.seq, last[d.stream])
		}
		seen[d.id] = true
		last[d.stream] = max(last[d.stream], d.version)
	}
	for id, e := range inPG {
		if !seen[id] {
			res.violate("%s: committed event %s (%s v%d) never delivered", name, id, e.stream, e.version)
		}
	}
}

// checkGroup checks what the subscription group's members were handed, redeliveries
// included: deduplicated by (stream, version), exactly the committed events. It returns
// how many distinct (stream, version) pairs there were.
func checkGroup(ds []delivery, inPG map[string]pgEvent, res *Result) int {
	got := map[streamVersion]bool{}
	for _, d := range ds {
		e, ok := inPG[d.id]
		switch {
		case !ok:
			res.violate("group: event %s (%s v%d, seq %d) handed to a member but never committed", d.id, d.stream, d.version, d.seq)
		case e.stream != d.stream || e.version != d.version:
			res.violate("group: event %s handed over as %s v%d, committed as %s v%d", d.id, d.stream, d.version, e.stream, e.version)
		}
		got[streamVersion{d.stream, d.version}] = true
	}
	for id, e := range inPG {
		if !got[streamVersion{e.stream, e.version}] {
			res.violate("group: committed event %s (%s v%d) never handed to a member", id, e.stream, e.version)
		}
	}
	return len(got)
}

// checkExercised reports a run that proves nothing: with no acknowledged append or no
// event in Postgres every other check holds vacuously, and a run meant to inject faults
// must have injected every kind (a relay stopped or crashed, nats-server restarted,
// Postgres sessions terminated, the projector and, with a group, a member killed).
func checkExercised(cfg Config, res *Result) {
	if res.Committed == 0 {
		res.violate("no append was acknowledged: the run checked nothing")
	}
	if res.Events == 0 {
		res.violate("Postgres holds no event: the run checked nothing")
	}
	if cfg.FaultInterval <= 0 {
		return
	}
	kinds := [][]string{
		{FaultRelayStop, FaultRelayCrash},
		{FaultNATSRestart},
		{FaultTerminateSessions},
		{FaultProjectorKill, FaultProjectorKillIdle},
	}
	if cfg.GroupMembers > 0 {
		kinds = append(kinds, []string{FaultMemberKill, FaultMemberKillIdle})
	}
	for _, kind := range kinds {
		n := 0
		for _, f := range kind {
			n += res.Faults[f]
		}
		if n == 0 {
			res.violate(`no fault "%s" was injected`, strings.Join(kind, `" or "`))
		}
	}
}
