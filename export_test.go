package pgjet_test

import "github.com/pgjet/pgjet/internal/migrate"

func latestMigration() int { return migrate.Latest() }
