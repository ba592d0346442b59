package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/p2p-payer/p2p/identity"
	"github.com/p2p-payer/p2p/store"
)

// MinModelMembers is the fewest members an estimated model is stored for.
// u comes from random pairs of members: ten members give 45 pairs, and a
// birth date shared by chance looks a hundred times likelier than it is.
// Below it a process keeps its own estimate, unstored, as before models
// were data, until the store has a model (a start with more members, or
// `p2p identity train`).
const MinModelMembers = 1000

// ModelInForce gives ix the model in force in st and returns its id. On a
// store without a model it stores ix's own estimate first, by by (the
// first process to start wins, and every process gets the winner's
// model); 0 when there is none and ix has fewer than MinModelMembers
// members, and ix keeps its estimate.
func ModelInForce(ctx context.Context, st store.IdentityModels, ix *identity.Index, by string) (int64, error) {
	var (
		id  int64
		p   identity.ModelParams
		err error
	)
	if n := ix.Len(); n < MinModelMembers {
		id, p, err = st.LatestIdentityModel(ctx)
		if errors.Is(err, store.ErrNotFound) {
			return 0, nil
		}
	} else {
		id, p, err = st.InitIdentityModel(ctx, ix.Model().Params(identity.MethodEstimated, n, time.Now()), by)
	}
	if err != nil {
		return 0, fmt.Errorf("identity model: %w", err)
	}
	if err := ix.SetParams(p); err != nil {
		return 0, fmt.Errorf("identity model %d: %w", id, err)
	}
	return id, nil
}

// RefreshModel gives ix the model in force in st if it is not model known
// (someone retrained since), and returns the id of the model ix has. It
// reads one number when nothing changed. A store without a model leaves
// ix as it is.
func RefreshModel(ctx context.Context, st store.IdentityModels, ix *identity.Index, known int64) (int64, error) {
	id, err := st.IdentityModelID(ctx)
	if err != nil || id == known || id == 0 {
		return known, err
	}
	id, p, err := st.LatestIdentityModel(ctx)
	if err != nil {
		return known, fmt.Errorf("identity model: %w", err)
	}
	if err := ix.SetParams(p); err != nil {
		return known, fmt.Errorf("identity model %d: %w", id, err)
	}
	return id, nil
}
