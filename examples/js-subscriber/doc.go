// Package jssubscriber holds the test that runs the JavaScript example subscriber
// (subscriber.mjs) against an in-process NATS server and pgjet's registry HTTP API. The
// example itself is plain Node.js: see README.md.
package jssubscriber
