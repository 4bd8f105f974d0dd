package opstest

import (
	"os"
	"testing"

	"github.com/pgjet/pgjet/internal/pgtest"
)

func TestMain(m *testing.M) {
	pgtest.Main(m)
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}
