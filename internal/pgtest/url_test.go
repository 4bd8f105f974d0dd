package pgtest

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:5432/pgjet_t_x?sslmode=disable"},
		{"postgresql://u:p@h/", "postgresql://u:p@h/pgjet_t_x"},
		{"postgres://u@h:1", "postgres://u@h:1/pgjet_t_x"},
		{"host=h user=u dbname=postgres", "host=h user=u dbname=postgres dbname=pgjet_t_x"},
	}
	for _, tt := range tests {
		got, err := withDatabase(tt.in, "pgjet_t_x")
		require.NoError(t, err)
		require.Equal(t, tt.want, got)
	}
}
