package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
)

// modelParams is a real estimated model's parameters (probabilities with
// every digit a float64 has), told apart by its training size.
func modelParams(t *testing.T, size int) identity.ModelParams {
	t.Helper()
	ms := make([]member.Record, 0, 40)
	for i := range 40 {
		m := mem(fmt.Sprintf("M%02d", i), fmt.Sprintf("19%02d-0%d-1%d", 50+i, 1+i%9, i%10))
		m.Family = []string{"Lee", "Ray", "Diaz", "Ng"}[i%4]
		ms = append(ms, m)
	}
	p := identity.NewIndex(ms, identity.DefaultConfig()).Model().Params(identity.MethodEstimated, size, base)
	if _, err := p.Model(); err != nil {
		t.Fatalf("test model: %v", err)
	}
	return p
}

func testIdentityModels(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if id, _, err := s.LatestIdentityModel(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LatestIdentityModel of an empty store = %d, %v; want ErrNotFound", id, err)
	}
	if id, err := s.IdentityModelID(ctx); err != nil || id != 0 {
		t.Fatalf("IdentityModelID of an empty store = %d, %v; want 0", id, err)
	}
	p1 := modelParams(t, 40)
	id1, err := s.SaveIdentityModel(ctx, p1, "worker")
	if err != nil || id1 <= 0 {
		t.Fatalf("SaveIdentityModel = %d, %v", id1, err)
	}
	got := latest(t, s, id1)
	if !reflect.DeepEqual(got, p1) {
		t.Errorf("stored model differs from the one saved:\n got %+v\nwant %+v", got, p1)
	}
	if got.TrainedAt.Location().String() != "UTC" {
		t.Errorf("trained at %v, want UTC", got.TrainedAt)
	}

	p2 := modelParams(t, 41)
	p2.Method = identity.MethodTrained
	p2.M[identity.FieldGiven][identity.LevelExact] = 0.75
	id2, err := s.SaveIdentityModel(ctx, p2, "ops@example.org")
	if err != nil || id2 <= id1 {
		t.Fatalf("a retrain = %d, %v; want an id after %d", id2, err, id1)
	}
	if got := latest(t, s, id2); !reflect.DeepEqual(got, p2) {
		t.Errorf("model in force after a retrain = %+v, want %+v", got, p2)
	}
	// Init finds a model in force: it keeps it and stores nothing.
	id, cur, err := s.InitIdentityModel(ctx, modelParams(t, 99), "worker")
	if err != nil || id != id2 || !reflect.DeepEqual(cur, p2) {
		t.Errorf("InitIdentityModel with a model in force = %d, %+v, %v; want %d and its model", id, cur, err, id2)
	}
	latest(t, s, id2)

	bad := func(change func(p *identity.ModelParams)) identity.ModelParams {
		p := modelParams(t, 40)
		change(&p)
		return p
	}
	for name, p := range map[string]identity.ModelParams{
		"unknown method":    bad(func(p *identity.ModelParams) { p.Method = "guessed" }),
		"no members":        bad(func(p *identity.ModelParams) { p.N = 0 }),
		"not a probability": bad(func(p *identity.ModelParams) { p.U[identity.FieldFamily][identity.LevelExact] = 1.5 }),
		"unknown field":     bad(func(p *identity.ModelParams) { p.M["email"] = map[string]float64{identity.LevelExact: 0.9} }),
		"negative size":     bad(func(p *identity.ModelParams) { p.TrainingSize = -1 }),
		"no training time":  bad(func(p *identity.ModelParams) { p.TrainedAt = time.Time{} }),
	} {
		if id, err := s.SaveIdentityModel(ctx, p, "worker"); err == nil {
			t.Errorf("SaveIdentityModel accepted a model with %s (id %d)", name, id)
		}
	}
	if id, err := s.SaveIdentityModel(ctx, modelParams(t, 40), " "); err == nil {
		t.Errorf("SaveIdentityModel accepted a model stored by nobody (id %d)", id)
	}
	latest(t, s, id2)
}

// latest checks that the model in force has id, as both reads say, and
// returns it.
func latest(t *testing.T, s store.Store, want int64) identity.ModelParams {
	t.Helper()
	ctx := ctxT(t)
	id, p, err := s.LatestIdentityModel(ctx)
	if err != nil || id != want {
		t.Fatalf("LatestIdentityModel = %d, %v; want %d", id, err, want)
	}
	if n, err := s.IdentityModelID(ctx); err != nil || n != want {
		t.Fatalf("IdentityModelID = %d, %v; want %d", n, err, want)
	}
	return p
}

// testIdentityModelsInitConcurrent: processes starting together on a store
// without a model all get the same one, and it is the one in force.
func testIdentityModelsInitConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const starts = 6
	ids := make([]int64, starts)
	got := make([]identity.ModelParams, starts)
	params := make([]identity.ModelParams, starts)
	for i := range params {
		params[i] = modelParams(t, 100+i)
	}
	var wg sync.WaitGroup
	for i := range starts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			ids[i], got[i], err = s.InitIdentityModel(ctx, params[i], fmt.Sprintf("worker-%d", i))
			if err != nil {
				t.Errorf("InitIdentityModel %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	winner := -1
	for i := range params {
		if reflect.DeepEqual(got[0], params[i]) {
			winner = i
		}
	}
	if winner < 0 || ids[0] <= 0 {
		t.Fatalf("InitIdentityModel returned %d, %+v: none of the models offered", ids[0], got[0])
	}
	for i := 1; i < starts; i++ {
		if ids[i] != ids[0] || !reflect.DeepEqual(got[i], got[0]) {
			t.Errorf("start %d got model %d (size %d), start 0 got %d (size %d): concurrent starts disagree",
				i, ids[i], got[i].TrainingSize, ids[0], got[0].TrainingSize)
		}
	}
	if p := latest(t, s, ids[0]); !reflect.DeepEqual(p, params[winner]) {
		t.Errorf("model in force is not the one the starts agreed on")
	}
}
