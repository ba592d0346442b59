package activities

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store/sqlite"
)

// synthMembers are n synthetic members (no real person), varied enough for
// a model to be estimated from them.
func synthMembers(n int) []member.Record {
	given := []string{"Ann", "Bo", "Cy", "Dee", "Eve", "Fay", "Gus", "Hal", "Ida", "Jo", "Kim", "Lou", "Max"}
	family := []string{"Lee", "Ray", "Diaz", "Ng", "Okafor", "Smith", "Berg", "Cruz", "Hale", "Ito", "Khan"}
	out := make([]member.Record, n)
	for i := range out {
		out[i] = member.Record{ID: fmt.Sprintf("M%06d", i), Given: given[i%len(given)], Family: family[(i/7)%len(family)],
			BirthDate: fmt.Sprintf("%d-%02d-%02d", 1940+i%60, 1+i%12, 1+(i/3)%28), Sex: []string{"F", "M"}[i%2],
			Street: fmt.Sprintf("%d Elm St", 1+i%500), City: "Testville", State: "TS", PostalCode: fmt.Sprintf("%05d", i%97),
			Phone: fmt.Sprintf("555-%04d", i)}
	}
	return out
}

// TestModelInForce: the first start stores its index's estimate; a start
// on a slightly different member set decides with the stored model, not
// its own estimate; a retrain reaches a running process through
// RefreshModel.
func TestModelInForce(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "p2p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	members := synthMembers(1500)
	params := func(ix *identity.Index) identity.ModelParams {
		return ix.Model().Params(identity.MethodEstimated, 0, time.Time{})
	}

	tiny := identity.NewIndex(members[:10], identity.DefaultConfig())
	own := params(tiny)
	if id, err := ModelInForce(ctx, st, tiny, "worker"); err != nil || id != 0 {
		t.Fatalf("ModelInForce on 10 members = %d, %v; want 0, nothing stored", id, err)
	}
	if n, _ := st.IdentityModelID(ctx); n != 0 || !reflect.DeepEqual(params(tiny), own) {
		t.Fatalf("a model of 10 members was stored (id %d) or the index's estimate changed", n)
	}

	first := identity.NewIndex(members[:1400], identity.DefaultConfig())
	stored := params(first)
	id1, err := ModelInForce(ctx, st, first, "worker")
	if err != nil || id1 == 0 {
		t.Fatalf("ModelInForce = %d, %v", id1, err)
	}
	if _, p, _ := st.LatestIdentityModel(ctx); p.Method != identity.MethodEstimated || p.TrainingSize != 1400 || p.N != 1400 {
		t.Errorf("stored model: method %q, size %d, N %d; want estimated on 1400", p.Method, p.TrainingSize, p.N)
	}

	// A restart on more members: its own estimate differs, the model it
	// decides with does not.
	restart := identity.NewIndex(members, identity.DefaultConfig())
	if reflect.DeepEqual(params(restart), stored) {
		t.Fatal("the test needs member sets whose estimates differ")
	}
	if id, err := ModelInForce(ctx, st, restart, "worker"); err != nil || id != id1 {
		t.Fatalf("ModelInForce on restart = %d, %v; want %d", id, err, id1)
	}
	if !reflect.DeepEqual(params(restart), stored) {
		t.Error("the restarted index does not decide with the stored model")
	}
	// Fewer members than MinModelMembers still take a stored model.
	if id, err := ModelInForce(ctx, st, tiny, "worker"); err != nil || id != id1 || !reflect.DeepEqual(params(tiny), stored) {
		t.Errorf("ModelInForce on 10 members with a model stored = %d, %v; want %d and its model", id, err, id1)
	}

	if id, err := RefreshModel(ctx, st, restart, id1); err != nil || id != id1 {
		t.Errorf("RefreshModel with nothing new = %d, %v", id, err)
	}
	retrained := stored
	retrained.Method, retrained.TrainingSize, retrained.TrainedAt = identity.MethodTrained, 1500, time.Now()
	retrained.M = map[string]map[string]float64{}
	for f, levels := range stored.M {
		retrained.M[f] = map[string]float64{}
		for l, v := range levels {
			retrained.M[f][l] = v
		}
	}
	retrained.M[identity.FieldGiven][identity.LevelExact] = 0.5
	id2, err := st.SaveIdentityModel(ctx, retrained, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if id, err := RefreshModel(ctx, st, restart, id1); err != nil || id != id2 {
		t.Fatalf("RefreshModel after a retrain = %d, %v; want %d", id, err, id2)
	}
	if got := params(restart).M[identity.FieldGiven][identity.LevelExact]; got != 0.5 {
		t.Errorf("after RefreshModel given/exact m = %v, want the retrained 0.5", got)
	}
}
