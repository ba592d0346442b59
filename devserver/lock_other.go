//go:build !unix

package devserver

// lockDir does nothing where flock is missing: the caller must not start two
// servers on one data dir.
func lockDir(string) (func(), error) { return func() {}, nil }
