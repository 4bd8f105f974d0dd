// Command schemas registers a directory of .avsc files with pgjet's schema registry, or
// checks them against it, for a service's CI.
//
//	schemas register [flags] DIR   register every .avsc of DIR (recursively, in path
//	                               order) under its record's full name; files already
//	                               registered change nothing, so it is safe to rerun
//	schemas check [flags] DIR      register nothing; exit 1 listing every .avsc that is
//	                               invalid or incompatible with what is registered under
//	                               its subject's compatibility level
//
// Files are taken in path order, as RegisterFS does, so older versions kept in a
// subdirectory such as history/ come first. check treats several new versions of one
// subject as if registered in that order: each is checked against the registered versions
// and the new ones before it.
package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"

	"go.uber.org/zap"

	"github.com/pgjet/pgjet/internal/registry"
	"github.com/pgjet/pgjet/internal/service"
)

const usage = "usage: schemas register|check [flags] DIR"

func main() {
	var c service.Common
	f := service.NewFlags("schemas")
	c.Register(f)
	f.Usage = func() {
		fmt.Fprintln(f.Output(), usage)
		f.PrintDefaults()
	}
	if len(os.Args) < 2 || (os.Args[1] != "register" && os.Args[1] != "check") {
		f.Usage()
		if len(os.Args) == 2 && service.IsHelp(os.Args[1]) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	cmd := os.Args[1]
	f.Check(func() error {
		if f.NArg() != 1 {
			return fmt.Errorf("want one directory, got %d arguments; %s", f.NArg(), usage)
		}
		return nil
	})
	service.Main("schemas", &c, f, os.Args[2:], func(ctx context.Context, log *zap.Logger) error {
		dir := f.Arg(0)
		// Before connecting: a mistyped directory must not pass a CI check vacuously.
		if err := hasSchemas(dir); err != nil {
			return err
		}
		var (
			pg  *service.Postgres
			err error
		)
		if cmd == "register" {
			pg, err = c.OpenMigrated(ctx, log)
		} else {
			pg, err = service.OpenPostgres(ctx, c.DatabaseURL, c.DataDir, c.MaxConns, log)
		}
		if err != nil {
			return err
		}
		defer pg.Close(context.WithoutCancel(ctx))
		if cmd == "check" {
			// check changes nothing, so it does not migrate: a database without the
			// registry is the wrong database, not one where everything can be registered.
			if err := service.MigrationsCheck(pg)(ctx); err != nil {
				return fmt.Errorf("checking against this database: %w", err)
			}
		}
		reg, err := registry.New(registry.Config{Pool: pg.Pool})
		if err != nil {
			return err
		}
		if cmd == "register" {
			return register(ctx, reg, dir, os.Stdout)
		}
		problems, err := check(ctx, reg, os.DirFS(dir))
		if err != nil {
			return err
		}
		for _, p := range problems {
			fmt.Fprintln(os.Stdout, p)
		}
		if len(problems) > 0 {
			// An error, not os.Exit: the deferred Close must stop a throwaway cluster.
			return fmt.Errorf("%d of the files in %s cannot be registered", len(problems), dir)
		}
		fmt.Fprintf(os.Stdout, "every schema in %s is registered or can be\n", dir)
		return nil
	})
}

// hasSchemas returns an error naming dir unless it is a directory holding at least one
// .avsc file (at any depth).
func hasSchemas(dir string) error {
	found := false
	err := fs.WalkDir(os.DirFS(dir), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && path.Ext(p) == ".avsc" {
			found = true
			return fs.SkipAll
		}
		return nil
	})
	switch {
	case err != nil:
		return fmt.Errorf("schemas directory %s: %w", dir, err)
	case !found:
		return fmt.Errorf("schemas directory %s holds no .avsc files", dir)
	}
	return nil
}

func register(ctx context.Context, reg *registry.Registry, dir string, out io.Writer) error {
	vs, err := reg.RegisterFS(ctx, os.DirFS(dir))
	if err != nil {
		return err
	}
	for _, v := range vs {
		fmt.Fprintf(out, "%s version %d id %d\n", v.Subject, v.Version, v.ID)
	}
	return nil
}
