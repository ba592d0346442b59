package identity

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Ways a model's parameters were obtained (ModelParams.Method).
const (
	// MethodEstimated: u from random pairs of the index's members, m the
	// defaults (EstimateModel).
	MethodEstimated = "estimated"
	// MethodTrained: as estimated, then m (and u again) by EM over the
	// index's members matched against the index (Train with Dedup).
	MethodTrained = "trained"
)

// ModelParams are a scoring model as data: what the store keeps so that
// every process, and every restart, decides with the same weights until
// someone retrains (`p2p identity train`). Probabilities are keyed by the
// field and level names of a rationale, so a stored model outlives a
// change in the order of the comparison vector.
type ModelParams struct {
	// M and U are the m and u probabilities by field, then level.
	M map[string]map[string]float64 `json:"m"`
	U map[string]map[string]float64 `json:"u"`
	// N is the number of members the prior is for (Model.N).
	N int `json:"n"`
	// Expected is how many members a query is expected to match.
	Expected float64 `json:"expected"`
	// Relatives is the share of members living with a relative.
	Relatives float64 `json:"relatives"`
	// Method is MethodEstimated or MethodTrained.
	Method string `json:"method"`
	// TrainingSize is how many members the model was estimated or trained
	// on; TrainedAt, when.
	TrainingSize int       `json:"training_size"`
	TrainedAt    time.Time `json:"trained_at"`
}

// Params returns m's parameters as data, stamped with how and when it was
// obtained and on how many members.
func (m *Model) Params(method string, size int, at time.Time) ModelParams {
	p := ModelParams{M: map[string]map[string]float64{}, U: map[string]map[string]float64{},
		N: m.N, Expected: m.Expected, Relatives: m.Relatives, Method: method, TrainingSize: size, TrainedAt: at.UTC()}
	for f := range numFields {
		for l := range numLevels {
			if m.M[f][l] == 0 && m.U[f][l] == 0 {
				continue
			}
			put(p.M, fieldNames[f], levelNames[l], m.M[f][l])
			put(p.U, fieldNames[f], levelNames[l], m.U[f][l])
		}
	}
	return p
}

func put(dst map[string]map[string]float64, f, l string, v float64) {
	if dst[f] == nil {
		dst[f] = map[string]float64{}
	}
	dst[f][l] = v
}

// Model is the scoring model p describes. It refuses parameters that name
// an unknown field or level, or hold a value that is not a probability.
func (p ModelParams) Model() (*Model, error) {
	if p.N < 1 {
		return nil, fmt.Errorf("identity: model for %d members", p.N)
	}
	if math.IsNaN(p.Expected) || p.Expected < 0 || math.IsNaN(p.Relatives) || p.Relatives < 0 || p.Relatives > 1 {
		return nil, errors.New("identity: model's expected matches or relatives share out of range")
	}
	m := &Model{N: p.N, Expected: p.Expected, Relatives: p.Relatives}
	for _, t := range []struct {
		src map[string]map[string]float64
		dst *[numFields][numLevels]float64
	}{{p.M, &m.M}, {p.U, &m.U}} {
		for fn, levels := range t.src {
			f := indexOf(fieldNames[:], fn)
			if f < 0 {
				return nil, fmt.Errorf("identity: model names an unknown field %q", fn)
			}
			for ln, v := range levels {
				l := indexOf(levelNames[:], ln)
				if l < 0 {
					return nil, fmt.Errorf("identity: model names an unknown level %q of %s", ln, fn)
				}
				if math.IsNaN(v) || v < 0 || v > 1 {
					return nil, fmt.Errorf("identity: model's %s/%s = %v is not a probability", fn, ln, v)
				}
				t.dst[f][l] = v
			}
		}
	}
	return m.cache(), nil
}

func indexOf(names []string, n string) int {
	for i, x := range names {
		if x == n {
			return i
		}
	}
	return -1
}

// SetParams makes the model p describes the index's model. Which members
// live with a relative (what the relatives veto looks at) is found in the
// index as it is now; the share that switches the veto on is p's.
func (ix *Index) SetParams(p ModelParams) error {
	m, err := p.Model()
	if err != nil {
		return err
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	_, kin := relatives(ix)
	ix.setKin(kin)
	ix.model = m
	return nil
}
