//go:build nodev

package main

// defaultDataDir is where `p2p dev` would keep everything; production
// builds (-tags nodev) have no dev command but keep the default for tools.
const defaultDataDir = ".p2p"
