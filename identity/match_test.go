package identity

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"

	"github.com/p2p-payer/p2p/identity/internal/synth"
	"github.com/p2p-payer/p2p/identity/normalize"
	"github.com/p2p-payer/p2p/identity/strsim"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/transfer"
)

// household is a small index of relatives and strangers: the Lees share
// surname, address and phone; Ann and Amy are twins; Robert Jr is his
// father's junior.
func household() []member.Record {
	addr := func(r member.Record) member.Record {
		r.Family, r.Street, r.City, r.State, r.PostalCode, r.Phone = "Lee", "12 Oak Street", "Springfield", "IL", "62704", "217-555-0101"
		return r
	}
	recs := []member.Record{
		addr(member.Record{ID: "H1", Given: "Robert", BirthDate: "1960-04-02", Sex: "M"}),
		addr(member.Record{ID: "H2", Given: "Susan", BirthDate: "1962-09-30", Sex: "F"}),
		addr(member.Record{ID: "H3", Given: "Ann", BirthDate: "1990-05-17", Sex: "F"}),
		addr(member.Record{ID: "H4", Given: "Amy", BirthDate: "1990-05-17", Sex: "F"}),
		addr(member.Record{ID: "H5", Given: "Robert", BirthDate: "1988-11-23", Sex: "M"}),
		addr(member.Record{ID: "H6", Given: "Donald", BirthDate: "2001-06-06", Sex: "M"}),
	}
	// Strangers, so that the index has a population to estimate u from,
	// and other households so that relatives are the normal case.
	given := []string{"James", "Mary", "John", "Patricia", "Michael", "Linda", "David", "Barbara", "Ronald", "Jennifer"}
	family := []string{"Smith", "Jones", "Brown", "Garcia", "Miller", "Davis", "Wilson", "Moore", "Taylor", "Clark"}
	for i := 0; i < 400; i++ {
		f := family[i/40]
		recs = append(recs, member.Record{
			ID: "S" + itoa(i), Given: given[i%10], Family: f,
			BirthDate: "19" + itoa2(40+i%60) + "-" + itoa2(1+i%12) + "-" + itoa2(1+i%28), Sex: []string{"M", "F"}[i%2],
			Street: itoa(100+i/3) + " Elm Street", City: "Springfield", State: "IL", PostalCode: "627" + itoa2(i%50),
			Phone: "217-555-" + itoa(1000+i/3),
		})
	}
	return recs
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func itoa2(i int) string {
	if i < 10 {
		return "0" + itoa(i)
	}
	return itoa(i)
}

func TestMatch(t *testing.T) {
	ix := NewIndex(household(), DefaultConfig())
	if r := ix.Model().Relatives; r < DefaultConfig().RelativesVeto {
		t.Fatalf("relatives share %.3f: the test index must look like one with households", r)
	}
	lee := func(given, dob, sex string) transfer.Demographics {
		return transfer.Demographics{Given: given, Family: "LEE", BirthDate: dob, Sex: sex, Phone: "(217) 555-0101",
			Address: transfer.Address{Street: "12 Oak St.", City: "Springfield", State: "Illinois", PostalCode: "62704-1234"}}
	}
	tests := []struct {
		name     string
		q        transfer.Demographics
		outcome  string
		memberID string
		notID    string // must not be matched to
	}{
		{"member in a household", lee("Susan", "1962-09-30", "F"), OutcomeMatch, "H2", ""},
		{"nickname", lee("Sue", "1962-09-30", "F"), OutcomeMatch, "H2", ""},
		{"transposed birth date", lee("Susan", "1962-09-30", ""), OutcomeMatch, "H2", ""},
		{"twin", lee("Ann", "1990-05-17", "F"), OutcomeMatch, "H3", "H4"},
		{"other twin", lee("Amy", "1990-05-17", "F"), OutcomeMatch, "H4", "H3"},
		{"junior", lee("Robert", "1988-11-23", "M"), OutcomeMatch, "H5", "H1"},
		{"senior", lee("Robert", "1960-04-02", "M"), OutcomeMatch, "H1", "H5"},
		{"absent twin never matches a relative", lee("Anna", "1990-05-17", "F"), "", "", "H3"},
		{"absent twin of another name", lee("Kate", "1990-05-17", "F"), "", "", "H3"},
		{"absent twin of a rhyming name", lee("Ronald", "2001-06-06", "M"), "", "", "H6"},
		{"typo in a household member's name", lee("Donlad", "2001-06-06", "M"), OutcomeMatch, "H6", ""},
		{"absent child never matches a relative", lee("Kevin", "1995-01-09", "M"), "", "", "H1"},
		{"junior with another birth date", lee("Robert", "1991-02-14", "M"), "", "", "H5"},
		{"stranger", transfer.Demographics{Given: "Zelda", Family: "Quince", BirthDate: "1977-07-07"}, OutcomeNoMatch, "", ""},
		{"member id rule", transfer.Demographics{MemberID: "H2", BirthDate: "1962-09-30"}, OutcomeMatch, "H2", ""},
		{"member id with another birth date is not the rule", transfer.Demographics{MemberID: "H2", BirthDate: "1971-01-01"}, "", "", "H2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := ix.Match(tt.q)
			if tt.outcome != "" && d.Outcome != tt.outcome {
				t.Fatalf("outcome %s (%s), want %s", d.Outcome, d.Rationale.Summary, tt.outcome)
			}
			if tt.memberID != "" && d.MemberID != tt.memberID {
				t.Fatalf("member %s, want %s", d.MemberID, tt.memberID)
			}
			if tt.notID != "" && d.Outcome == OutcomeMatch && d.MemberID == tt.notID {
				t.Fatalf("matched %s automatically: %s", tt.notID, d.Rationale.Summary)
			}
			checkRationale(t, d)
		})
	}
}

// checkRationale asserts what every decision owes its reader: the fields add
// up to the score, a rule and a summary, review candidates best first.
func checkRationale(t *testing.T, d Decision) {
	t.Helper()
	if d.Rationale.Rule == "" || d.Rationale.Summary == "" {
		t.Errorf("rationale without rule or summary: %+v", d.Rationale)
	}
	if len(d.Rationale.Fields) > 0 {
		if sum := sumWeights(d.Rationale.Fields); math.Abs(sum-d.Score) > 1e-9 {
			t.Errorf("fields add up to %v, score is %v", sum, d.Score)
		}
	}
	switch d.Outcome {
	case OutcomeReview:
		if len(d.Candidates) == 0 || d.Candidates[0] != d.MemberID {
			t.Errorf("review candidates %v must start with the best, %s", d.Candidates, d.MemberID)
		}
	case OutcomeNoMatch:
		if d.MemberID != "" {
			t.Errorf("no_match names member %s", d.MemberID)
		}
	}
	if ru := d.Rationale.RunnerUp; ru != nil && ru.Score > d.Score+1e-9 {
		t.Errorf("runner-up %v scores above the best %v", ru.Score, d.Score)
	}
}

// TestRationaleAddsUp checks every decision of the FEBRL evaluation.
func TestRationaleAddsUp(t *testing.T) {
	pop := household()
	ix := NewIndex(pop, DefaultConfig())
	for _, r := range pop[:60] {
		q := transfer.Demographics{Given: r.Given + "x", Family: r.Family, BirthDate: r.BirthDate, Phone: r.Phone,
			Address: transfer.Address{Street: r.Street, PostalCode: r.PostalCode}}
		checkRationale(t, ix.Match(q))
	}
}

func TestDefaultConfig(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil || c.MaxBlock <= 0 || c.MaxReview <= 0 {
		t.Fatalf("inconsistent defaults %+v: %v", c, err)
	}
	// A score is posterior log2-odds: the default match threshold asks at
	// least 98 % that the member is the one sought at the boundary (the
	// evaluation measures precision over all matches at 0.997 or more).
	if p := 1 / (1 + math.Exp2(-c.MatchThreshold)); p < 0.98 {
		t.Errorf("match threshold %.1f is only %.3f", c.MatchThreshold, p)
	}
}

func TestConfigFromEnv(t *testing.T) {
	tests := []struct {
		name                  string
		match, review, margin string
		want                  func(Config) bool
		err                   bool
	}{
		{"defaults", "", "", "", func(c Config) bool { return c == DefaultConfig() }, false},
		{"stricter", "9.5", "-4", "5", func(c Config) bool {
			return c.MatchThreshold == 9.5 && c.ReviewThreshold == -4 && c.Margin == 5 && c.MaxBlock == DefaultConfig().MaxBlock
		}, false},
		{"not a number", "high", "", "", nil, true},
		{"review above match", "4", "5", "", nil, true},
		{"margin zero", "", "", "0", nil, true},
		{"NaN", "NaN", "", "", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("P2P_IDENTITY_MATCH_THRESHOLD", tt.match)
			t.Setenv("P2P_IDENTITY_REVIEW_THRESHOLD", tt.review)
			t.Setenv("P2P_IDENTITY_MARGIN", tt.margin)
			c, err := ConfigFromEnv()
			if (err != nil) != tt.err {
				t.Fatalf("err %v, want error %v", err, tt.err)
			}
			if !tt.err && !tt.want(c) {
				t.Fatalf("config %+v", c)
			}
		})
	}
}

func TestIndexAdd(t *testing.T) {
	ix := NewIndex(household(), DefaultConfig())
	n := ix.Len()
	if err := ix.Add(member.Record{ID: "N1", Given: "Nora", Family: "Vance", BirthDate: "1999-03-03"}); err != nil {
		t.Fatal(err)
	}
	if err := ix.Add(member.Record{ID: "N1", Given: "Nora", Family: "Vance"}); err != ErrDuplicateID {
		t.Errorf("duplicate id: %v", err)
	}
	if err := ix.Add(member.Record{Given: "No", Family: "Id"}); err == nil {
		t.Error("empty id accepted")
	}
	ix.Reestimate()
	if ix.Len() != n+1 {
		t.Fatalf("Len %d, want %d", ix.Len(), n+1)
	}
	d := ix.Match(transfer.Demographics{Given: "Nora", Family: "Vance", BirthDate: "1999-03-03"})
	if d.Outcome != OutcomeMatch || d.MemberID != "N1" {
		t.Fatalf("added member not found: %s %s %s", d.Outcome, d.MemberID, d.Rationale.Summary)
	}
}

func TestConcurrentAddAndMatch(t *testing.T) {
	ix := NewIndex(household(), DefaultConfig())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			_ = ix.Add(member.Record{ID: "C" + itoa(i), Given: "Carl", Family: "Dunn", BirthDate: "1980-01-" + itoa2(1+i%28)})
		}
		ix.Reestimate()
	}()
	for i := 0; i < 200; i++ {
		ix.Match(transfer.Demographics{Given: "Carl", Family: "Dunn", BirthDate: "1980-01-05"})
	}
	<-done
	if d := ix.Match(transfer.Demographics{Given: "Carl", Family: "Dunn", BirthDate: "1980-01-05"}); d.Outcome == OutcomeNoMatch {
		t.Fatalf("added members not found: %s", d.Rationale.Summary)
	}
}

// TestShortcutsDecideAsExhaustive: Match with its shortcuts (levels
// memoised per query, only the best candidates ordered) decides every query
// exactly as without them, rationale and runner-up included, with the
// default limits and with limits that reach past the ordered prefix.
func TestShortcutsDecideAsExhaustive(t *testing.T) {
	pop := synth.GenerateMembers(60_000, 0.05, 31)
	members := pop.Index()
	qs := pop.Queries(4000, 8)
	for _, cfg := range []Config{DefaultConfig(), func() Config {
		c := DefaultConfig()
		c.MaxReview, c.Margin, c.ReviewThreshold = 40, 30, -40
		return c
	}()} {
		ix := NewIndex(members, cfg)
		for i, q := range qs {
			if i%4 == 0 {
				q.Demographics.MemberID = members[(i*31)%len(members)].ID // an id that names someone else
			}
			fast := ix.Match(q.Demographics)
			ix.exhaustive = true
			slow := ix.Match(q.Demographics)
			ix.exhaustive = false
			if !reflect.DeepEqual(fast, slow) {
				t.Fatalf("query %d (%s): with shortcuts %+v\nexhaustive %+v", i, q.Kind, fast, slow)
			}
		}
	}
}

// TestPhoneOneDigitIsOSA: the digit-wise test agrees with the edit
// distance it replaced.
func TestPhoneOneDigitIsOSA(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	digits := func(v uint64) string { return fmt.Sprintf("%010d", v) }
	for i := 0; i < 200_000; i++ {
		a := 2_000_000_000 + rng.Uint64N(7_999_999_999)
		d := []byte(digits(a))
		switch i % 4 {
		case 0:
			d[rng.IntN(10)] = byte('0' + rng.IntN(10))
		case 1:
			j := rng.IntN(9)
			d[j], d[j+1] = d[j+1], d[j]
		case 2:
			d[rng.IntN(10)], d[rng.IntN(10)] = byte('0'+rng.IntN(10)), byte('0'+rng.IntN(10))
		}
		b, _ := strconv.ParseUint(string(d), 10, 64)
		if got, want := phoneOneDigit(a, b), strsim.OSA(digits(a), digits(b), 1) <= 1; got != want {
			t.Fatalf("%s vs %s: %v, OSA says %v", digits(a), digits(b), got, want)
		}
	}
}

// TestLeadingNumberIsStreetParts: the shortcut finds the house number the
// full parse finds.
func TestLeadingNumberIsStreetParts(t *testing.T) {
	streets := []string{"", "12", "12 ", "12a main st", "main st", "apt 4", "12 apt 4", "0 x", "9", "1-3 high st apt 2"}
	for _, m := range synth.GenerateMembers(3000, 0.05, 3).Index() {
		streets = append(streets, normalize.Street(m.Street))
	}
	for _, s := range streets {
		if n, _, _ := normalize.StreetParts(s); leadingNumber(s) != n {
			t.Errorf("%q: %q, StreetParts %q", s, leadingNumber(s), n)
		}
	}
}
