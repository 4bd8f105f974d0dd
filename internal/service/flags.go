package service

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Flags registers flags whose defaults come from environment variables, so every setting
// can be given either way; a flag on the command line wins. An environment variable set to
// the empty string counts as unset (compose files and templates often pass one along
// empty), so it never replaces a default with nothing.
type Flags struct {
	*flag.FlagSet
	envErrs map[string]error  // flag name -> its environment variable's bad value
	env     map[string]string // flag name -> its environment variable
	checks  []func() error
}

// NewFlags returns a flag set named for the binary.
func NewFlags(name string) *Flags {
	return &Flags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), env: map[string]string{}, envErrs: map[string]error{}}
}

func (f *Flags) usage(env, usage string) string {
	if env == "" {
		return usage
	}
	return fmt.Sprintf("%s (env %s)", usage, env)
}

// lookupEnv returns the value of env for flag name, and whether it is set and not empty.
func (f *Flags) lookupEnv(name, env string) (string, bool) {
	if env == "" {
		return "", false
	}
	f.env[name] = env
	v, ok := os.LookupEnv(env)
	return v, ok && v != ""
}

// String registers a string flag with env fallback.
func (f *Flags) String(p *string, name, env, def, usage string) {
	if v, ok := f.lookupEnv(name, env); ok {
		def = v
	}
	f.StringVar(p, name, def, f.usage(env, usage))
}

// Int registers an int flag with env fallback.
func (f *Flags) Int(p *int, name, env string, def int, usage string) {
	if v, ok := f.lookupEnv(name, env); ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			f.envErrs[name] = fmt.Errorf("env %s: %q is not an integer", env, v)
		} else {
			def = n
		}
	}
	f.IntVar(p, name, def, f.usage(env, usage))
}

// Duration registers a duration flag with env fallback.
func (f *Flags) Duration(p *time.Duration, name, env string, def time.Duration, usage string) {
	if v, ok := f.lookupEnv(name, env); ok {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			f.envErrs[name] = fmt.Errorf("env %s: %q is not a duration (say 500ms, 30s, 2m)", env, v)
		} else {
			def = d
		}
	}
	f.DurationVar(p, name, def, f.usage(env, usage))
}

// Bool registers a bool flag with env fallback.
func (f *Flags) Bool(p *bool, name, env string, def bool, usage string) {
	if v, ok := f.lookupEnv(name, env); ok {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			f.envErrs[name] = fmt.Errorf("env %s: %q is not a boolean (true or false)", env, v)
		} else {
			def = b
		}
	}
	f.BoolVar(p, name, def, f.usage(env, usage))
}

// Check adds a check that Parse runs on the parsed values; its error is reported like a
// bad flag.
func (f *Flags) Check(check func() error) { f.checks = append(f.checks, check) }

// NonNegative makes Parse refuse a negative value of the named Int or Duration flags.
func (f *Flags) NonNegative(names ...string) {
	for _, name := range names {
		f.Check(func() error { return f.checkSign(name, false) })
	}
}

// Positive makes Parse refuse a value of the named Int or Duration flags that is not
// above zero.
func (f *Flags) Positive(names ...string) {
	for _, name := range names {
		f.Check(func() error { return f.checkSign(name, true) })
	}
}

func (f *Flags) checkSign(name string, positive bool) error {
	fl := f.Lookup(name)
	if fl == nil {
		return fmt.Errorf("no flag -%s to check", name)
	}
	var n int64
	switch v := fl.Value.(flag.Getter).Get().(type) {
	case int:
		n = int64(v)
	case time.Duration:
		n = int64(v)
	default:
		return fmt.Errorf("-%s is not a number or duration", name)
	}
	if n > 0 || (n == 0 && !positive) {
		return nil
	}
	want := "must not be negative"
	if positive {
		want = "must be more than zero"
	}
	return fmt.Errorf("%s %s, not %s", f.describe(name), want, fl.Value)
}

// describe names flag name and its environment variable, for errors.
func (f *Flags) describe(name string) string {
	if env := f.env[name]; env != "" {
		return fmt.Sprintf("-%s (env %s)", name, env)
	}
	return "-" + name
}

// NoArgs makes Parse refuse arguments after the flags. Flags end at the first argument
// that is not one, so without this `writer -log-level debug migrate` would ignore
// "migrate" and run the writer; usage is how the binary is called.
func (f *Flags) NoArgs(usage string) {
	f.Check(func() error {
		if f.NArg() == 0 {
			return nil
		}
		return fmt.Errorf("unexpected argument %q (flags end at the first argument that is not one); usage: %s", f.Arg(0), usage)
	})
}

// IsHelp reports whether arg asks for help as the flag package understands it (-h, -help,
// --help), for binaries that read a subcommand before their flags.
func IsHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--h" || arg == "--help"
}

// Parse parses args, then reports every bad environment value (of a flag not given on the
// command line, which wins) and every failed check together. -h (and -help) answers
// flag.ErrHelp after printing the usage.
func (f *Flags) Parse(args []string) error {
	if err := f.FlagSet.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	var errs []error
	f.VisitAll(func(fl *flag.Flag) {
		if err := f.envErrs[fl.Name]; err != nil && !set[fl.Name] {
			errs = append(errs, err)
		}
	})
	for _, check := range f.checks {
		if err := check(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
