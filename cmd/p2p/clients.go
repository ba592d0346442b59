package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/p2p-payer/p2p/app"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/dsn"
)

func init() {
	commands["clients add"] = command{"register a /v1 API client (its scopes, keys or certificates)", runClientsAdd}
	commands["clients list"] = command{"list the /v1 API clients", runClientsList}
	commands["clients disable"] = command{"disable a /v1 API client: no new token, its tokens stop working", runClientsDisable}
}

// repeated is a flag given any number of times.
type repeated []string

func (r *repeated) String() string { return strings.Join(*r, ",") }

// Set appends v.
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// clientsStore opens the store of the clients commands' --database-url.
func clientsStore(ctx context.Context, db string) (store.Store, error) {
	return dsn.Open(ctx, db)
}

func databaseFlag(fs *flag.FlagSet) *string {
	return fs.String("database-url", app.Env("P2P_DATABASE_URL", filepath.Join(defaultDataDir, "p2p.db")),
		"postgres://… or a SQLite file path (P2P_DATABASE_URL)")
}

// closeStore closes st, reporting a failure (it may have been written).
func closeStore(st store.Store, err *error) {
	if cerr := st.Close(); cerr != nil {
		*err = errors.Join(*err, cerr)
	}
}

func runClientsAdd(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("p2p clients add", flag.ContinueOnError)
	db := databaseFlag(fs)
	var spec app.ClientSpec
	var scopes, certs, certFiles repeated
	fs.StringVar(&spec.ID, "id", "", "client id: the iss and sub of its client assertions")
	fs.StringVar(&spec.Name, "name", "", "a name for people")
	fs.Var(&scopes, "scope", "a scope it may be granted (repeat): "+strings.Join(app.V1Scopes(), ", "))
	fs.StringVar(&spec.JWKSURL, "jwks-url", "", "where its assertion keys are published (https)")
	fs.StringVar(&spec.JWKSFile, "jwks-file", "", "its assertion keys: a public JWKS file, stored inline")
	fs.Var(&certs, "cert-sha256", "hex SHA-256 of a client certificate's DER it may present (repeat)")
	fs.Var(&certFiles, "cert-file", "a client certificate (PEM) it may present (repeat)")
	fs.StringVar(&spec.Person, "person", "", "the person acting through it (a reviewer), named in the audit log")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Errorf("clients add: unexpected arguments %v", fs.Args()))
	}
	spec.Scopes, spec.CertSHA256, spec.CertFile = scopes, certs, certFiles
	c, err := spec.Client("")
	if err != nil {
		return usageError(fmt.Errorf("clients add: %w", err))
	}
	st, err := clientsStore(ctx, *db)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	if err := st.CreateClient(ctx, c); errors.Is(err, store.ErrExists) {
		return fmt.Errorf("clients add: client %q exists (p2p clients list)", c.ID)
	} else if err != nil {
		return fmt.Errorf("clients add: %w", err)
	}
	fmt.Fprintf(stdout, "client %s registered with scopes %s\n", c.ID, strings.Join(c.Scopes, " "))
	return nil
}

func runClientsList(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("p2p clients list", flag.ContinueOnError)
	db := databaseFlag(fs)
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Errorf("clients list: unexpected arguments %v", fs.Args()))
	}
	st, err := clientsStore(ctx, *db)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	cs, err := st.ListClients(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0) // its write errors surface at Flush
	_, _ = fmt.Fprintln(tw, "ID\tSTATUS\tSCOPES\tKEYS\tCERTS\tPERSON")
	for _, c := range cs {
		status := "active"
		if c.Disabled {
			status = "disabled " + c.DisabledAt.Format(time.DateOnly)
		}
		keys := "-"
		switch {
		case c.JWKSURL != "":
			keys = c.JWKSURL
		case c.JWKS != nil:
			keys = "inline JWKS"
		}
		person := c.Person
		if person == "" {
			person = "-"
		}
		_, _ = fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", c.ID, status, strings.Join(c.Scopes, " "), keys, len(c.CertSHA256), person)
	}
	return tw.Flush()
}

func runClientsDisable(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("p2p clients disable", flag.ContinueOnError)
	db := databaseFlag(fs)
	id := fs.String("id", "", "the client to disable")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if *id == "" || fs.NArg() > 0 {
		return usageError(errors.New("clients disable: --id is required, and nothing else"))
	}
	st, err := clientsStore(ctx, *db)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	if err := st.DisableClient(ctx, *id, time.Now()); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("clients disable: no client %q", *id)
	} else if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "client %s disabled: it gets no token, and its tokens and certificates stop working now\n", *id)
	return nil
}
