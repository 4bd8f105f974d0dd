package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/pgjet/pgjet/internal/avro"
	"github.com/pgjet/pgjet/internal/registry"
)

// problem is one file that cannot be registered.
type problem struct {
	File    string
	Subject string
	Reason  string
}

func (p problem) String() string {
	if p.Subject == "" {
		return fmt.Sprintf("%s: %s", p.File, p.Reason)
	}
	return fmt.Sprintf("%s: %s: %s", p.File, p.Subject, p.Reason)
}

// pending is a file that is not registered yet but would be, before the files after it.
type pending struct {
	file   string
	schema *avro.Schema
}

// check returns every .avsc of fsys that is invalid or that registering the files in path
// order would reject. It registers nothing.
func check(ctx context.Context, reg *registry.Registry, fsys fs.FS) ([]problem, error) {
	var names []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && path.Ext(p) == ".avsc" {
			names = append(names, p)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var problems []problem
	news := map[string][]pending{}
	for _, name := range names {
		text, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		err = avro.CheckNesting(string(text))
		var s *avro.Schema
		if err == nil {
			s, err = avro.Parse(string(text))
		}
		if err == nil {
			err = avro.CheckDefaults(string(text))
		}
		if err != nil {
			problems = append(problems, problem{File: name, Reason: err.Error()})
			continue
		}
		subject := s.FullName()
		_, err = reg.Lookup(ctx, subject, string(text))
		switch {
		case err == nil:
			continue // registered already
		case !errors.Is(err, registry.ErrSubjectNotFound) && !errors.Is(err, registry.ErrSchemaNotFound):
			return nil, err
		}
		level, err := reg.Compatibility(ctx, subject)
		if err != nil {
			return nil, err
		}
		transitive := strings.HasSuffix(string(level), "_TRANSITIVE")
		earlier := news[subject]
		var reasons []string
		if transitive || len(earlier) == 0 {
			var ierr *registry.IncompatibleError
			if err := reg.CheckCompatibility(ctx, subject, string(text)); errors.As(err, &ierr) {
				for _, b := range ierr.Breaks {
					reasons = append(reasons, b.String())
				}
			} else if err != nil {
				return nil, err
			}
		}
		if !transitive && len(earlier) > 0 {
			earlier = earlier[len(earlier)-1:]
		}
		for _, e := range earlier {
			reasons = append(reasons, breaks(level, s, e)...)
		}
		if len(reasons) > 0 {
			problems = append(problems, problem{File: name, Subject: subject,
				Reason: "incompatible under " + string(level) + ": " + strings.Join(reasons, "; ")})
		}
		news[subject] = append(news[subject], pending{file: name, schema: s})
	}
	return problems, nil
}

// breaks checks candidate against an earlier new file in the directions of level.
func breaks(level registry.Compatibility, candidate *avro.Schema, e pending) []string {
	l := string(level)
	backward := strings.HasPrefix(l, "BACKWARD") || strings.HasPrefix(l, "FULL")
	forward := strings.HasPrefix(l, "FORWARD") || strings.HasPrefix(l, "FULL")
	var out []string
	if backward {
		if err := registry.Readable(e.schema, candidate); err != nil {
			out = append(out, fmt.Sprintf("cannot read data written with %s: %v", e.file, err))
		}
	}
	if forward {
		if err := registry.Readable(candidate, e.schema); err != nil {
			out = append(out, fmt.Sprintf("%s cannot read data written with it: %v", e.file, err))
		}
	}
	return out
}
