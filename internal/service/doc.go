// Package service holds what every pgjet binary does the same way: configuration from flags
// with environment fallbacks, logging, connecting to Postgres and NATS (with embedded
// fallbacks for a first run), and the operations HTTP server (/metrics, /healthz, /readyz).
package service
