package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os/user"
	"text/tabwriter"
	"time"

	"github.com/p2p-payer/p2p/activities"
	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/store/dsn"
	"github.com/p2p-payer/p2p/transfer"
)

func init() {
	commands["identity match"] = command{"match a queries CSV against an index CSV (evaluation)", runIdentityMatch}
	commands["identity train"] = command{"estimate (or train) the identity model from the member store and put it in force", runIdentityTrain}
}

func runIdentityMatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return identity.RunMatchCLI(ctx, args, stdout, stderr)
}

// trainSample is how many of the store's members EM trains on: Train's
// own default sample.
const trainSample = 5000

// modelFields are the fields of a model, in the order they are printed.
var modelFields = []string{identity.FieldMemberID, identity.FieldGiven, identity.FieldFamily, identity.FieldBirthDate,
	identity.FieldSex, identity.FieldAddress, identity.FieldPhone}

func runIdentityTrain(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("p2p identity train", flag.ContinueOnError)
	db := databaseFlag(fs)
	em := fs.Bool("em", false, "also train m by EM on a sample of the store's members matched against the others "+
		"(off by default: on a deduplicated member file with households it weakens disagreement, see docs/identity.md)")
	queries := fs.String("queries", "", "train m by EM on this CSV of partner queries instead (the format of identity match --queries)")
	by := fs.String("by", "", "who stores the model, kept with it (default: the login name)")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Errorf("identity train: unexpected arguments %v", fs.Args()))
	}
	if *em && *queries != "" {
		return usageError(errors.New("identity train: --em trains on the members, --queries on a file: give one"))
	}
	cfg, err := identity.ConfigFromEnv()
	if err != nil {
		return fmt.Errorf("identity train: %w", err)
	}
	var qs []transfer.Demographics
	if *queries != "" { // before the long load: a wrong path fails at once
		if qs, err = readTrainQueries(*queries, stderr); err != nil {
			return err
		}
	}
	st, err := dsn.Open(ctx, *db)
	if err != nil {
		return err
	}
	defer closeStore(st, &err)
	res, err := trainModel(ctx, st, cfg, trainRequest{em: *em, queries: qs, by: cmp.Or(*by, operator())}, stderr)
	if err != nil {
		return err
	}
	return res.print(stdout)
}

// operator names who runs the command: the login name, else "operator".
func operator() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "operator"
}

// trainRequest is how a model is to be trained.
type trainRequest struct {
	em      bool                    // EM on a sample of the members
	queries []transfer.Demographics // EM on these instead, if any
	by      string
}

// trainResult is what trainModel stored, and the model it replaced.
type trainResult struct {
	id, prevID  int64 // prevID 0: there was none
	p, prev     identity.ModelParams
	members     int
	trainedOn   int // queries or members EM saw; 0 without EM
	fromQueries bool
}

// modelStore is what identity train uses of the store.
type modelStore interface {
	store.Members
	store.IdentityModels
}

// trainModel estimates a model from st's members, trains it as req says,
// stores it as the model in force and returns it with the one it
// replaced.
func trainModel(ctx context.Context, st modelStore, cfg identity.Config, req trainRequest, progress io.Writer) (trainResult, error) {
	start := time.Now()
	ix, err := activities.LoadIndex(ctx, st, cfg)
	if err != nil {
		return trainResult{}, fmt.Errorf("identity train: loading the members: %w", err)
	}
	n := ix.Len()
	if n == 0 {
		return trainResult{}, errors.New("identity train: the member store is empty: import members first (p2p members import)")
	}
	fmt.Fprintf(progress, "identity train: %d members loaded and the model estimated in %v\n", n, time.Since(start).Round(time.Millisecond))
	if n < activities.MinModelMembers {
		fmt.Fprintf(progress, "identity train: warning: %d members are few to estimate from (a worker stores no model under %d); retrain when more are loaded\n",
			n, activities.MinModelMembers)
	}
	res := trainResult{members: n}
	model, method := ix.Model(), identity.MethodEstimated
	switch {
	case len(req.queries) > 0:
		qs := spread(req.queries, trainSample)
		res.trainedOn, res.fromQueries = len(qs), true
		model, method = ix.Train(qs, identity.TrainOptions{MaxQueries: len(qs)}), identity.MethodTrained
	case req.em:
		sample, err := memberSample(ctx, st, n, trainSample)
		if err != nil {
			return trainResult{}, fmt.Errorf("identity train: sampling the members: %w", err)
		}
		res.trainedOn = len(sample)
		model, method = ix.Train(sample, identity.TrainOptions{MaxQueries: len(sample), Dedup: true}), identity.MethodTrained
	}
	if res.trainedOn > 0 {
		fmt.Fprintf(progress, "identity train: trained by EM on %d queries in %v\n", res.trainedOn, time.Since(start).Round(time.Millisecond))
	}
	res.p = model.Params(method, n, time.Now())
	res.prevID, res.prev, err = st.LatestIdentityModel(ctx)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return trainResult{}, fmt.Errorf("identity train: reading the model in force: %w", err)
	}
	if res.id, err = st.SaveIdentityModel(ctx, res.p, req.by); err != nil {
		return trainResult{}, fmt.Errorf("identity train: storing the model: %w", err)
	}
	return res, nil
}

// spread is at most want of qs, evenly spaced.
func spread(qs []transfer.Demographics, want int) []transfer.Demographics {
	step := (len(qs) + want - 1) / want
	if step <= 1 {
		return qs
	}
	out := make([]transfer.Demographics, 0, want)
	for i := 0; i < len(qs); i += step {
		out = append(out, qs[i])
	}
	return out
}

// memberSample reads at most want of st's n members, evenly spaced in id
// order, as queries for EM in dedup mode (each with its member id, so that
// it is never paired with itself).
func memberSample(ctx context.Context, st store.Members, n, want int) ([]transfer.Demographics, error) {
	step := max(1, (n+want-1)/want)
	out := make([]transfer.Demographics, 0, min(n, want))
	after, i := "", 0
	for {
		page, err := st.ListMembers(ctx, after, 1000)
		if err != nil {
			return nil, err
		}
		for _, m := range page {
			if i%step == 0 && len(out) < want { // members added since the count stay out
				out = append(out, identity.DemographicsOf(m))
			}
			i++
		}
		if len(page) < 1000 {
			return out, nil
		}
		after = page[len(page)-1].ID
	}
}

// readTrainQueries reads the query CSV of --queries (identity.ReadQueries);
// a file with no usable query is an error.
func readTrainQueries(path string, report io.Writer) ([]transfer.Demographics, error) {
	_, qs, err := identity.ReadQueries(path, "identity train", report)
	if err == nil && len(qs) == 0 {
		err = fmt.Errorf("identity train: %s holds no usable query", path)
	}
	return qs, err
}

// print says what was stored, without PHI: ids, counts and each field's
// weight at exact agreement, before and after.
func (r trainResult) print(w io.Writer) error {
	how := "estimated from the members (u from random member pairs, m the defaults)"
	switch {
	case r.fromQueries:
		how = fmt.Sprintf("trained by EM on %d partner queries", r.trainedOn)
	case r.trainedOn > 0:
		how = fmt.Sprintf("trained by EM on %d of the members matched against the others", r.trainedOn)
	}
	fmt.Fprintf(w, "identity model %d in force: %s, %s, on %d members\n", r.id, r.p.Method, how, r.p.TrainingSize)
	if r.prevID == 0 {
		fmt.Fprintln(w, "it replaces no model (the first stored)")
	} else {
		fmt.Fprintf(w, "it replaces model %d (%s on %d members, %s)\n", r.prevID, r.prev.Method, r.prev.TrainingSize,
			r.prev.TrainedAt.Format(time.RFC3339))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight) // its write errors surface at Flush
	_, _ = fmt.Fprintln(tw, "field\texact weight\tbefore\tchange\t")
	for _, f := range modelFields {
		now := exactWeight(r.p, f)
		if r.prevID == 0 {
			_, _ = fmt.Fprintf(tw, "%s\t%.2f\t-\t-\t\n", f, now)
			continue
		}
		was := exactWeight(r.prev, f)
		_, _ = fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%+.2f\t\n", f, now, was, now-was)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.prevID != 0 {
		fmt.Fprintf(w, "members a query is expected to match: %.2f (before %.2f)\n", r.p.Expected, r.prev.Expected)
	}
	return nil
}

// exactWeight is a field's weight log2(m/u) at exact agreement in p; 0
// when p has no such level.
func exactWeight(p identity.ModelParams, field string) float64 {
	m, u := p.M[field][identity.LevelExact], p.U[field][identity.LevelExact]
	if m == 0 || u == 0 {
		return 0
	}
	return math.Log2(m / u)
}
