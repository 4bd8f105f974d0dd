package service

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// An environment variable set to "" counts as unset: the default stays, and an empty
// number, duration or boolean is no error.
func TestFlagsEmptyEnvIsUnset(t *testing.T) {
	for _, env := range []string{"T_ADDR", "T_N", "T_D", "T_B", "T_SECRET"} {
		t.Setenv(env, "")
	}
	var (
		addr, secret string
		n            int
		d            time.Duration
		b            bool
	)
	f := NewFlags("t")
	f.String(&addr, "http-addr", "T_ADDR", ":8080", "")
	f.Int(&n, "n", "T_N", 7, "")
	f.Duration(&d, "d", "T_D", time.Second, "")
	f.Bool(&b, "b", "T_B", true, "")
	f.Secret(&secret, "secret", "T_SECRET", "")
	require.NoError(t, f.Parse(nil))
	require.Equal(t, ":8080", addr)
	require.Equal(t, 7, n)
	require.Equal(t, time.Second, d)
	require.True(t, b)
	require.Empty(t, secret)
}

// Every bad environment value is reported at once, naming its variable; a flag given on
// the command line replaces a bad value and its error.
func TestFlagsBadEnv(t *testing.T) {
	t.Setenv("T_N", "ten")
	t.Setenv("T_D", "5")
	t.Setenv("T_B", "yes please")
	var (
		n int
		d time.Duration
		b bool
	)
	newFlags := func() *Flags {
		f := NewFlags("t")
		f.Int(&n, "n", "T_N", 7, "")
		f.Duration(&d, "d", "T_D", time.Second, "")
		f.Bool(&b, "b", "T_B", true, "")
		return f
	}
	err := newFlags().Parse(nil)
	require.ErrorContains(t, err, `env T_N: "ten" is not an integer`)
	require.ErrorContains(t, err, `env T_D: "5" is not a duration`)
	require.ErrorContains(t, err, `env T_B: "yes please" is not a boolean`)

	require.NoError(t, newFlags().Parse([]string{"-n", "3", "-d", "2s", "-b=false"}))
	require.Equal(t, 3, n)
	require.Equal(t, 2*time.Second, d)
	require.False(t, b)
}

// NonNegative and Positive refuse values out of range, from a flag or from the
// environment, naming both.
func TestFlagsRanges(t *testing.T) {
	var (
		n, m int
		d, e time.Duration
	)
	newFlags := func() *Flags {
		f := NewFlags("t")
		f.Int(&n, "n", "T_N", 0, "")
		f.Int(&m, "m", "", 1, "")
		f.Duration(&d, "d", "T_D", 0, "")
		f.Duration(&e, "e", "T_E", time.Second, "")
		f.NonNegative("n", "d")
		f.Positive("m", "e")
		return f
	}
	require.NoError(t, newFlags().Parse(nil), "zero is not negative")
	require.NoError(t, newFlags().Parse([]string{"-n", "5", "-d", "1s", "-m", "2", "-e", "1ms"}))

	err := newFlags().Parse([]string{"-n", "-1", "-d", "-1s", "-m", "0", "-e", "0s"})
	require.ErrorContains(t, err, "-n (env T_N) must not be negative, not -1")
	require.ErrorContains(t, err, "-d (env T_D) must not be negative, not -1s")
	require.ErrorContains(t, err, "-m must be more than zero, not 0")
	require.ErrorContains(t, err, "-e (env T_E) must be more than zero, not 0s")

	t.Setenv("T_E", "-5s")
	require.ErrorContains(t, newFlags().Parse(nil), "-e (env T_E) must be more than zero, not -5s")
}

// A binary's own -log-level default (the tools' warn) is set before Register, so that
// LOG_LEVEL still overrides it and -h shows it; assigned after, it overwrote LOG_LEVEL.
func TestCommonLogLevelDefault(t *testing.T) {
	for _, tc := range []struct{ env, want string }{{"", "warn"}, {"debug", "debug"}} {
		t.Setenv("LOG_LEVEL", tc.env)
		c := Common{LogLevel: "warn"}
		f := NewFlags("t")
		c.Register(f)
		require.NoError(t, f.Parse(nil))
		require.Equal(t, tc.want, c.LogLevel, "LOG_LEVEL=%q", tc.env)
		if tc.env == "" {
			require.Equal(t, "warn", f.Lookup("log-level").DefValue, "what -h shows")
		}
	}
	t.Setenv("LOG_LEVEL", "")
	var c Common
	c.Register(NewFlags("t"))
	require.Equal(t, "info", c.LogLevel, "the services' default")
}
