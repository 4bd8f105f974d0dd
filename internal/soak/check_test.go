package soak

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/pgjet/pgjet"
)

// Postgres of the checker tests: a-1 v1..v2 and b-1 v1.
var committedPG = map[string]pgEvent{
	"e1": {"a-1", 1}, "e2": {"a-1", 2}, "e3": {"b-1", 1},
}

func requireViolation(t *testing.T, res *Result, want string) {
	t.Helper()
	require.False(t, res.OK(), "no violation; wanted %q", want)
	require.Contains(t, res.String(), want)
}

func TestCheckAttempts(t *testing.T) {
	t.Parallel()
	good := []attempt{
		{stream: "a-1", expected: pgjet.NoStream, ids: []string{"e1", "e2"}, outcome: outcomeCommitted},
		{stream: "b-1", expected: pgjet.Any, ids: []string{"e3"}, outcome: outcomeUnknown},
		{stream: "b-1", expected: pgjet.Exact(7), ids: []string{"x1"}, outcome: outcomeConflict},
		{stream: "a-1", expected: pgjet.Any, ids: []string{"x2"}, outcome: outcomeRolledBack},
	}
	res := &Result{}
	checkAttempts(good, committedPG, res)
	require.True(t, res.OK(), res.String())
	require.Equal(t, 4, res.Attempts)
	require.Equal(t, 1, res.Committed)
	require.Equal(t, 1, res.UnknownCommitted)

	for _, tc := range []struct {
		name     string
		attempts []attempt
		want     string
	}{
		{"acknowledged but lost", append(good[1:], attempt{stream: "a-1", ids: []string{"e1", "e2", "x9"}, outcome: outcomeCommitted}),
			"partly committed"},
		{"acknowledged, none in Postgres", append(good, attempt{stream: "c-1", expected: pgjet.Any, ids: []string{"x3"}, outcome: outcomeCommitted}),
			"acknowledged append to c-1 (expected any) lost"},
		{"rolled back but committed", append(good[1:], attempt{stream: "a-1", ids: []string{"e1", "e2"}, outcome: outcomeRolledBack}),
			"rolled back append to a-1"},
		{"conflict but committed", append(good[1:], attempt{stream: "a-1", ids: []string{"e1", "e2"}, outcome: outcomeConflict}),
			"conflict append to a-1"},
		{"never appended", good[:1], "event e3 (b-1 v1) in Postgres was never appended"},
	} {
		res := &Result{}
		checkAttempts(tc.attempts, committedPG, res)
		requireViolation(t, res, tc.want)
	}
}

func TestCheckDeliveries(t *testing.T) {
	t.Parallel()
	d1, d2, d3 := delivery{"e1", "a-1", 1, 1}, delivery{"e2", "a-1", 2, 2}, delivery{"e3", "b-1", 1, 3}
	res := &Result{}
	checkDeliveries("c", []delivery{d1, d3, d2}, committedPG, res) // streams interleave freely
	require.True(t, res.OK(), res.String())

	for _, tc := range []struct {
		name string
		ds   []delivery
		want string
	}{
		{"duplicate", []delivery{d1, d2, d2, d3}, "c: event e2 (a-1 v2, seq 2) delivered twice"},
		{"out of order", []delivery{d2, d1, d3}, "c: a-1 v2 (seq 2) delivered after v0"},
		{"gap", []delivery{d2, d3}, "c: a-1 v2 (seq 2) delivered after v0"},
		{"missing", []delivery{d1, d2}, "c: committed event e3 (b-1 v1) never delivered"},
		{"never committed", []delivery{d1, d2, d3, {"x1", "b-1", 2, 4}}, "c: event x1 (b-1 v2, seq 4) delivered but never committed"},
		{"misplaced", []delivery{d1, d2, {"e3", "b-1", 2, 3}}, "c: event e3 delivered as b-1 v2, committed as b-1 v1"},
		{"nothing", nil, "never delivered"},
	} {
		res := &Result{}
		checkDeliveries("c", tc.ds, committedPG, res)
		requireViolation(t, res, tc.want)
	}
}

func TestCheckGroup(t *testing.T) {
	t.Parallel()
	d1, d2, d3 := delivery{"e1", "a-1", 1, 1}, delivery{"e2", "a-1", 2, 2}, delivery{"e3", "b-1", 1, 3}
	res := &Result{}
	require.Equal(t, 3, checkGroup([]delivery{d2, d1, d2, d3}, committedPG, res), "at least once, in any order")
	require.True(t, res.OK(), res.String())

	res = &Result{}
	checkGroup([]delivery{d1, d3}, committedPG, res)
	requireViolation(t, res, "group: committed event e2 (a-1 v2) never handed to a member")
	res = &Result{}
	checkGroup([]delivery{d1, d2, d3, {"x1", "b-1", 2, 4}}, committedPG, res)
	requireViolation(t, res, "group: event x1 (b-1 v2, seq 4) handed to a member but never committed")
}

// A run that appended nothing, or injected no fault of some kind while it was meant to,
// fails: every other check would hold vacuously.
func TestCheckExercised(t *testing.T) {
	t.Parallel()
	cfg := Config{FaultInterval: time.Second, GroupMembers: 2}
	all := map[string]int{FaultRelayCrash: 1, FaultNATSRestart: 1, FaultTerminateSessions: 2, FaultProjectorKillIdle: 1, FaultMemberKill: 1}
	res := &Result{Committed: 10, Events: 20, Faults: all}
	checkExercised(cfg, res)
	require.True(t, res.OK(), res.String())

	res = &Result{Faults: all}
	checkExercised(cfg, res)
	requireViolation(t, res, "no append was acknowledged")
	requireViolation(t, res, "Postgres holds no event")

	res = &Result{Committed: 10, Events: 20, Faults: map[string]int{FaultRelayStart: 3, FaultNATSRestart: 1}}
	checkExercised(cfg, res)
	requireViolation(t, res, `no fault "relay stopped" or "relay crashed" was injected`)
	requireViolation(t, res, `no fault "postgres sessions terminated" was injected`)
	requireViolation(t, res, `no fault "projector killed mid-batch" or "projector killed between batches" was injected`)
	requireViolation(t, res, `no fault "group member killed mid-batch" or "group member killed between batches" was injected`)

	res = &Result{Committed: 10, Events: 20}
	checkExercised(Config{FaultInterval: -1}, res)
	require.True(t, res.OK(), "faults were not asked for: %s", res)
}

func TestConfigRefusesARunThatChecksNothing(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{{Relays: -1}, {Consumers: -2}, {Writers: -1}, {Streams: -1}, {MaxAppends: -5}} {
		c.DatabaseURL, c.NATSDir = "postgres://x", "/tmp/x"
		c.setDefaults()
		require.ErrorContains(t, c.validate(), "must be at least 1")
	}
}
