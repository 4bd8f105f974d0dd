package service

import (
	"net/url"
	"strings"
)

// redactedMark replaces a secret in redacted output; it is what pgx and net/url use too.
const redactedMark = "xxxxx"

// RedactDSN returns a Postgres connection string fit for logs: the password and
// sslpassword of a postgres:// URL (user info or query) or of a key=value DSN are masked,
// and everything else (host, database, sslmode, sslrootcert, ...) is kept. A string it
// cannot parse is replaced whole, so a malformed DSN never leaks its password.
func RedactDSN(dsn string) string {
	if dsn == "" {
		return ""
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "<unparsable database URL>"
		}
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), redactedMark)
			}
		}
		q := u.Query()
		masked := false
		for k := range q {
			if isPasswordKey(k) {
				q.Set(k, redactedMark)
				masked = true
			}
		}
		if masked {
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	pairs, ok := splitKeywordDSN(dsn)
	if !ok {
		return "<unparsable connection string>"
	}
	var b strings.Builder
	for i, kv := range pairs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(kv[0])
		b.WriteByte('=')
		if isPasswordKey(kv[0]) {
			b.WriteString(redactedMark)
			continue
		}
		b.WriteString(quoteKeywordValue(kv[1]))
	}
	return b.String()
}

func isPasswordKey(k string) bool {
	k = strings.ToLower(k)
	return k == "password" || k == "sslpassword"
}

// splitKeywordDSN splits a libpq key=value connection string ("host=db password='a b'")
// into its pairs, following libpq's quoting: a value is either single-quoted, with \' and
// \\ escapes, or runs to the next whitespace, with \ escaping the next character.
func splitKeywordDSN(s string) ([][2]string, bool) {
	var pairs [][2]string
	i := 0
	skip := func() {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	for {
		skip()
		if i == len(s) {
			return pairs, true
		}
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[start:i]
		skip()
		if key == "" || i == len(s) || s[i] != '=' {
			return nil, false
		}
		i++
		skip()
		var v strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					v.WriteByte(s[i+1])
					i += 2
					continue
				}
				i++
				if c == '\'' {
					closed = true
					break
				}
				v.WriteByte(c)
			}
			if !closed {
				return nil, false
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				v.WriteByte(s[i])
				i++
			}
		}
		pairs = append(pairs, [2]string{key, v.String()})
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func quoteKeywordValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\r\f\v'\\") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// RedactNATSURL returns NATS server URL(s), comma-separated as NATS_URL takes them, fit for
// logs: a password in the user info is masked, and so is a user info without a password,
// which nats.go sends as a token. A URL it cannot parse is replaced whole.
func RedactNATSURL(urls string) string {
	if urls == "" {
		return ""
	}
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if !strings.Contains(p, "@") {
			parts[i] = p
			continue
		}
		raw := p
		if !strings.Contains(raw, "://") {
			raw = "nats://" + raw
		}
		u, err := url.Parse(raw)
		if err != nil {
			parts[i] = "<unparsable NATS URL>"
			continue
		}
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), redactedMark)
			} else {
				u.User = url.User(redactedMark)
			}
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// scrubbedError is an error whose message has had secrets replaced; errors.Is and
// errors.As still see the original through Unwrap.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// scrub returns err with every occurrence of each secret in its message replaced by
// redactedMark. Libraries put connection strings in their errors (net/url quotes the whole
// URL it failed to parse); scrub keeps them out of logs. Empty secrets are ignored.
func scrub(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	changed := false
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			msg = strings.ReplaceAll(msg, s, redactedMark)
			changed = true
		}
	}
	if !changed {
		return err
	}
	return &scrubbedError{msg: msg, err: err}
}

// dsnSecrets returns the parts of a Postgres connection string that must not be logged:
// the whole string (it may be echoed verbatim) and its passwords.
func dsnSecrets(dsn string) []string {
	secrets := []string{dsn}
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		if p, ok := u.User.Password(); ok {
			secrets = append(secrets, p, url.QueryEscape(p), url.PathEscape(p))
		}
		for k, vs := range u.Query() {
			if isPasswordKey(k) {
				secrets = append(secrets, vs...)
			}
		}
		return secrets
	}
	if pairs, ok := splitKeywordDSN(dsn); ok {
		for _, kv := range pairs {
			if isPasswordKey(kv[0]) {
				secrets = append(secrets, kv[1])
			}
		}
	}
	return secrets
}

// natsURLSecrets returns the parts of NATS server URLs that must not be logged: each URL
// and the passwords or tokens in their user info.
func natsURLSecrets(urls string) []string {
	var secrets []string
	for p := range strings.SplitSeq(urls, ",") {
		p = strings.TrimSpace(p)
		if !strings.Contains(p, "@") {
			continue
		}
		secrets = append(secrets, p)
		raw := p
		if !strings.Contains(raw, "://") {
			raw = "nats://" + raw
		}
		if u, err := url.Parse(raw); err == nil && u.User != nil {
			if pw, ok := u.User.Password(); ok {
				secrets = append(secrets, pw, url.QueryEscape(pw), url.PathEscape(pw))
			} else {
				secrets = append(secrets, u.User.Username())
			}
			continue
		}
		// Unparsable: mask everything between the scheme and the last '@'.
		if at := strings.LastIndex(p, "@"); at >= 0 {
			ui := p[:at]
			if i := strings.Index(ui, "://"); i >= 0 {
				ui = ui[i+3:]
			}
			secrets = append(secrets, ui)
		}
	}
	return secrets
}

// Secret registers a string flag for a secret (a password or token) with an environment
// fallback. Unlike [Flags.String], the value taken from the environment is never shown as
// the flag's default in -h output. Prefer the environment to the flag for secrets: command
// lines are visible to every user of the machine (ps).
func (f *Flags) Secret(p *string, name, env, usage string) {
	f.StringVar(p, name, "", f.usage(env, usage))
	if v, ok := f.lookupEnv(name, env); ok {
		*p = v
	}
}

// redactDefault makes -h show the default of flag name (a connection string taken from the
// environment) redacted by redact.
func (f *Flags) redactDefault(name string, redact func(string) string) {
	if fl := f.Lookup(name); fl != nil {
		fl.DefValue = redact(fl.DefValue)
	}
}
