package evolve

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRegisterRejects(t *testing.T) {
	t.Parallel()
	id := func(d map[string]any) (map[string]any, error) { return d, nil }
	for _, c := range []struct {
		u    Upcaster
		want string
	}{
		{Upcaster{FromVersion: 1, Func: id}, "without a type"},
		{Upcaster{Type: "t.T", FromVersion: 0, Func: id}, "versions start at 1"},
		{Upcaster{Type: "t.T", FromVersion: 1}, "has no Func"},
	} {
		_, err := New(nil, c.u)
		require.ErrorContains(t, err, c.want)
	}
	_, err := New(nil, Upcaster{Type: "t.T", FromVersion: 1, Func: id}, Upcaster{Type: "t.T", FromVersion: 1, Func: id})
	require.ErrorContains(t, err, "two upcasters of t.T from version 1")
	d, err := New(nil, Upcaster{Type: "t.T", FromVersion: 1, Func: id}, Upcaster{Type: "t.T", FromVersion: 2, Func: id})
	require.NoError(t, err)
	require.NotNil(t, d.upcaster("t.T", 2))
	require.Nil(t, d.upcaster("t.T", 3))
}
