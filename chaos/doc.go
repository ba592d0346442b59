// Package chaos is p2p's fault suite on the production topology (make
// chaos): a real Temporal server on PostgreSQL, two `p2p api` and two
// `p2p worker` processes on the PostgreSQL store (internal/prodstack), and
// a partner that misbehaves on command: the sandbox partner behind a
// toxiproxy fault proxy, both in the test process.
//
// The suite is its test files, behind the build tag chaos, so that go
// test ./... (make test) never runs it; make chaos runs it with
// -tags chaos. docs/testing.md describes the scenarios and what each
// asserts.
package chaos
