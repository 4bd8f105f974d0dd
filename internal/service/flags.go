package service

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Flags registers flags whose defaults come from environment variables, so every setting
// can be given either way; a flag on the command line wins.
type Flags struct {
	*flag.FlagSet
	errs []error
}

// NewFlags returns a flag set named for the binary.
func NewFlags(name string) *Flags {
	return &Flags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError)}
}

func (f *Flags) usage(env, usage string) string {
	if env == "" {
		return usage
	}
	return fmt.Sprintf("%s (env %s)", usage, env)
}

// String registers a string flag with env fallback.
func (f *Flags) String(p *string, name, env, def, usage string) {
	if v, ok := os.LookupEnv(env); ok && env != "" {
		def = v
	}
	f.StringVar(p, name, def, f.usage(env, usage))
}

// Int registers an int flag with env fallback.
func (f *Flags) Int(p *int, name, env string, def int, usage string) {
	if v, ok := os.LookupEnv(env); ok && env != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("env %s: %q is not an integer", env, v))
		}
		def = n
	}
	f.IntVar(p, name, def, f.usage(env, usage))
}

// Duration registers a duration flag with env fallback.
func (f *Flags) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	if v, ok := os.LookupEnv(env); ok && env != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("env %s: %q is not a duration", env, v))
		}
		def = d
	}
	f.DurationVar(p, name, def, f.usage(env, usage))
}

// Bool registers a bool flag with env fallback.
func (f *Flags) Bool(p *bool, name, env string, def bool, usage string) {
	if v, ok := os.LookupEnv(env); ok && env != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("env %s: %q is not a boolean", env, v))
		}
		def = b
	}
	f.BoolVar(p, name, def, f.usage(env, usage))
}

// Parse parses args and reports bad environment values too.
func (f *Flags) Parse(args []string) error {
	if len(f.errs) > 0 {
		return f.errs[0]
	}
	return f.FlagSet.Parse(args)
}
