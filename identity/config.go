package identity

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// Config holds the decision thresholds and blocking limits. Scores are
// posterior log2-odds that the candidate is the member sought: the prior
// odds for one member of an index of N (about 1 in N) plus every field's
// match weight. A score of 10 is odds of 1024 to 1.
type Config struct {
	// MatchThreshold is the score at or above which the best candidate is
	// matched automatically, if it also clears Margin and no identity-critical
	// field (given name, birth date) disagrees outright.
	MatchThreshold float64
	// ReviewThreshold is the score at or above which a candidate that is not
	// matched goes to manual review; below it the query has no match.
	ReviewThreshold float64
	// Margin is how many points the best candidate must beat the runner-up
	// (a different person) by to be matched automatically.
	Margin float64
	// DuplicateThreshold is the score (of one index record against the
	// other) at or above which two top candidates with compatible given name
	// and birth date are taken for two records of one person, so that the
	// second does not count as a rival runner-up.
	DuplicateThreshold float64
	// MaxBlock is the largest block scanned; larger blocks (a very common
	// birth date or name) are too unselective and are skipped, other keys
	// still find the member.
	MaxBlock int
	// MaxReview caps the candidates listed for review.
	MaxReview int
	// RelativesVeto is the share of members living with a relative in the
	// index (Model.Relatives) from which a given name or birth date that
	// disagrees outright blocks an automatic match. Set it to 0 to veto
	// always. Below it (indexes without households) a record whose given
	// name or birth date was keyed wrongly can still be matched on the rest.
	RelativesVeto float64
	// TermFrequency adjusts exact name agreement for how common the name is
	// in the index (Smith counts less than Okonkwo).
	TermFrequency bool
}

// DefaultConfig is the tested default configuration. The match threshold
// of 6 (posterior odds 64:1) keeps match precision at 1.000 on FEBRL4 and
// FEBRL1 and on the generated US-style set (no relative or stranger
// matched), and 0.997 on fake_1000, whose records are corrupted far beyond
// what a payer's member file holds; 8 (256:1) costs fake_1000 six points
// of recall for no precision gained elsewhere. `make eval` prints the
// figures at 5 to 8.
func DefaultConfig() Config {
	return Config{
		MatchThreshold:     6,
		ReviewThreshold:    -6,
		Margin:             4,
		DuplicateThreshold: 2,
		MaxBlock:           500,
		MaxReview:          5,
		RelativesVeto:      0.001,
		TermFrequency:      true,
	}
}

// Validate reports a configuration whose bands cannot work: the review
// threshold must lie below the match threshold and the margin be positive.
func (c Config) Validate() error {
	switch {
	case math.IsNaN(c.MatchThreshold) || math.IsNaN(c.ReviewThreshold) || math.IsNaN(c.Margin):
		return errors.New("identity: thresholds must be numbers")
	case c.ReviewThreshold >= c.MatchThreshold:
		return fmt.Errorf("identity: the review threshold (%g) must be below the match threshold (%g)", c.ReviewThreshold, c.MatchThreshold)
	case c.Margin <= 0:
		return fmt.Errorf("identity: the margin (%g) must be positive", c.Margin)
	}
	return nil
}

// ConfigFromEnv is DefaultConfig with the decision thresholds that the
// environment sets: P2P_IDENTITY_MATCH_THRESHOLD, P2P_IDENTITY_REVIEW_THRESHOLD
// and P2P_IDENTITY_MARGIN (scores in log2-odds, see Config).
func ConfigFromEnv() (Config, error) {
	c := DefaultConfig()
	for _, v := range []struct {
		key string
		dst *float64
	}{
		{"P2P_IDENTITY_MATCH_THRESHOLD", &c.MatchThreshold},
		{"P2P_IDENTITY_REVIEW_THRESHOLD", &c.ReviewThreshold},
		{"P2P_IDENTITY_MARGIN", &c.Margin},
	} {
		raw := strings.TrimSpace(os.Getenv(v.key))
		if raw == "" {
			continue
		}
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return c, fmt.Errorf("%s: %q is not a number", v.key, raw)
		}
		*v.dst = f
	}
	return c, c.Validate()
}
