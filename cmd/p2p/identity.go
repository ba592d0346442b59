package main

import (
	"context"
	"io"

	"github.com/p2p-payer/p2p/identity"
)

func init() {
	commands["identity match"] = command{"match a queries CSV against an index CSV (evaluation)", runIdentityMatch}
}

func runIdentityMatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return identity.RunMatchCLI(ctx, args, stdout, stderr)
}
