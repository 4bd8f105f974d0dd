package registry

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"

	"github.com/pgjet/pgjet/internal/avro"
)

// RegisterFS registers every .avsc file of fsys (recursively) under its record's full name,
// oldest file name first. Files already registered change nothing, so it is safe to run at
// every start.
func (r *Registry) RegisterFS(ctx context.Context, fsys fs.FS) ([]Version, error) {
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
	var out []Version
	for _, name := range names {
		text, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		s, err := avro.Parse(string(text))
		if err != nil {
			return nil, fmt.Errorf("%s: %w: %v", name, ErrInvalidSchema, err)
		}
		v, err := r.Register(ctx, s.FullName(), string(text))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, v)
	}
	return out, nil
}
