package service

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// NATSSecurity is how a binary authenticates to NATS and secures the connection. At most
// one way to authenticate may be set: user and password, a token, an nkey seed file, or a
// creds file (a user JWT and its seed, for servers in operator/JWT mode). User and
// password (or a token) may also be given in NATS_URL (nats://user:pass@host); the URL's
// take precedence, as in nats.go. Settings are ignored for the embedded server, which has
// no authentication and plain TCP on loopback.
type NATSSecurity struct {
	// User and Password authenticate with a username and password. Default: none.
	User, Password string
	// Token authenticates with a token. Default: none.
	Token string
	// NKeySeedFile is a file holding an nkey seed (SU...); the server knows the public key.
	// Default: none.
	NKeySeedFile string
	// CredsFile is a .creds file (user JWT and nkey seed), as nsc generates. Default: none.
	CredsFile string
	// TLSCAFile is a PEM file of the CAs that verify the server's certificate. Default: the
	// system's roots.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are the client certificate and key for servers that
	// verify clients (mutual TLS). Default: none.
	TLSCertFile, TLSKeyFile string
	// TLSRequired refuses to connect without TLS. Default: false; TLS is used anyway when
	// the URL is tls://, a CA or a client certificate is given, or the server requires it.
	TLSRequired bool
}

// Register adds the NATS security flags to f. Passwords and tokens are [Flags.Secret]s:
// -h never shows them; nor does it show a password or token in the default of a
// -nats-url flag registered before.
func (s *NATSSecurity) Register(f *Flags) {
	f.redactDefault("nats-url", RedactNATSURL)
	f.String(&s.User, "nats-user", "NATS_USER", "", "NATS username (with -nats-password)")
	f.Secret(&s.Password, "nats-password", "NATS_PASSWORD", "NATS password; prefer the environment variable to the flag")
	f.Secret(&s.Token, "nats-token", "NATS_TOKEN", "NATS authentication token; prefer the environment variable to the flag")
	f.String(&s.NKeySeedFile, "nats-nkey-seed", "NATS_NKEY_SEED", "", "file holding the NATS nkey seed (SU...) to authenticate with")
	f.String(&s.CredsFile, "nats-creds", "NATS_CREDS", "", "NATS .creds file (user JWT and seed) to authenticate with")
	f.String(&s.TLSCAFile, "nats-tls-ca", "NATS_TLS_CA", "", "PEM file of CAs that verify the NATS server's certificate (default: system roots)")
	f.String(&s.TLSCertFile, "nats-tls-cert", "NATS_TLS_CERT", "", "client certificate (PEM) for NATS mutual TLS")
	f.String(&s.TLSKeyFile, "nats-tls-key", "NATS_TLS_KEY", "", "client key (PEM) for NATS mutual TLS")
	f.Bool(&s.TLSRequired, "nats-tls-required", "NATS_TLS_REQUIRED", false, "refuse to connect to NATS without TLS")
}

// IsZero reports whether nothing is set.
func (s *NATSSecurity) IsZero() bool { return *s == NATSSecurity{} }

// validate reports conflicting or incomplete settings, naming the flags.
func (s *NATSSecurity) validate() error {
	var errs []error
	var methods []string
	if s.User != "" || s.Password != "" {
		methods = append(methods, "-nats-user/-nats-password")
		if s.User == "" || s.Password == "" {
			errs = append(errs, errors.New("-nats-user and -nats-password go together"))
		}
	}
	if s.Token != "" {
		methods = append(methods, "-nats-token")
	}
	if s.NKeySeedFile != "" {
		methods = append(methods, "-nats-nkey-seed")
	}
	if s.CredsFile != "" {
		methods = append(methods, "-nats-creds")
	}
	if len(methods) > 1 {
		errs = append(errs, fmt.Errorf("give one way to authenticate to NATS, not %v", methods))
	}
	if (s.TLSCertFile == "") != (s.TLSKeyFile == "") {
		errs = append(errs, errors.New("-nats-tls-cert and -nats-tls-key go together"))
	}
	return errors.Join(errs...)
}

// Options returns the nats.go options for s. A missing file is reported here, before
// connecting; nats.go reads creds and certificates again on every (re)connect, so they can
// be rotated in place.
func (s *NATSSecurity) Options() ([]nats.Option, error) {
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("NATS security: %w", err)
	}
	for _, f := range []struct{ flag, path string }{
		{"-nats-nkey-seed", s.NKeySeedFile}, {"-nats-creds", s.CredsFile}, {"-nats-tls-ca", s.TLSCAFile},
		{"-nats-tls-cert", s.TLSCertFile}, {"-nats-tls-key", s.TLSKeyFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return nil, fmt.Errorf("NATS security: %s: %w", f.flag, err)
		}
	}
	var opts []nats.Option
	switch {
	case s.User != "":
		opts = append(opts, nats.UserInfo(s.User, s.Password))
	case s.Token != "":
		opts = append(opts, nats.Token(s.Token))
	case s.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(s.NKeySeedFile)
		if err != nil {
			// nats.go's message names the file, not the seed.
			return nil, fmt.Errorf("NATS nkey seed (-nats-nkey-seed): %w", err)
		}
		opts = append(opts, o)
	case s.CredsFile != "":
		opts = append(opts, nats.UserCredentials(s.CredsFile))
	}
	if s.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(s.TLSCAFile))
	}
	if s.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(s.TLSCertFile, s.TLSKeyFile))
	}
	if s.TLSRequired {
		opts = append(opts, nats.Secure())
	}
	return opts, nil
}

// ConnectNATS connects to NATS as [ConnectNATS] does, authenticating and securing the
// connection per c.NATSSecurity. Without a NATS URL it starts the embedded server and
// ignores the security settings, with a warning. More options come after c's.
func (c *Common) ConnectNATS(ctx context.Context, name string, log *zap.Logger, more ...nats.Option) (*NATS, error) {
	if c.NATSURL == "" {
		if !c.NATSSecurity.IsZero() {
			log.Warn("NATS credentials and TLS settings are ignored: there is no -nats-url, so an embedded server without authentication runs on loopback")
		}
		return ConnectNATS(ctx, "", c.DataDir, name, log, more...)
	}
	opts, err := c.NATSSecurity.Options()
	if err != nil {
		return nil, err
	}
	return ConnectNATS(ctx, c.NATSURL, c.DataDir, name, log, append(opts, more...)...)
}
