// Package docscheck holds only tests: they fail when README.md or docs/
// drift from the repository — a relative link or anchor that leads nowhere,
// a make target or p2p subcommand that does not exist, a README longer than
// a newcomer reads, or set-up commands other than the two it promises.
package docscheck
