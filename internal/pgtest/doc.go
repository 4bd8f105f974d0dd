// Package pgtest gives each test its own fresh, empty PostgreSQL database,
// so tests that touch Postgres run in parallel without seeing each other.
//
// The server is chosen once per test binary:
//
//  1. TEST_DATABASE_URL, when set (a URL or key=value DSN of a role that may
//     create databases; its database is the maintenance database), except
//     that TEST_DATABASE_URL=throwaway goes straight to 3;
//  2. else postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable, when
//     it answers within a second;
//  3. else a throwaway cluster started with [pgcluster] from the machine's
//     PostgreSQL binaries.
//
// A package whose tests use pgtest should stop that throwaway cluster when
// its tests end, by running them through [Main]:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// Without Main the cluster still dies with the test binary (it receives
// SIGQUIT), but its temporary directory is left behind until the next
// throwaway cluster's start removes it.
//
// Each [DB] is named pgjet_t_<random>, created from template0 and dropped
// WITH (FORCE) when the test ends:
//
//	func TestSomething(t *testing.T) {
//		t.Parallel()
//		pool := pgtest.Pool(t) // or url := pgtest.DB(t)
//		...
//	}
package pgtest
