// Package service holds what every pgjet binary does the same way: configuration from flags
// with environment fallbacks, logging, connecting to Postgres and NATS (with embedded
// fallbacks for a first run), and the operations HTTP server (/metrics, /healthz, /readyz).
// It also holds what keeps them secure: NATS credentials and TLS ([NATSSecurity]), the
// bearer-token guard of HTTP APIs ([BearerAuth]), and the redaction that keeps passwords
// and tokens out of logs ([RedactDSN], [RedactNATSURL], [Flags.Secret]); docs/security.md
// describes them.
package service
