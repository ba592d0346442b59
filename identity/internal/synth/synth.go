// Package synth generates US-style member data with known truth for testing
// and benchmarking the matcher: households sharing surname, address and
// phone, twins, juniors, nicknames, typos, moves and married names. It is
// seeded and deterministic.
package synth

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/transfer"
)

// Roles of a person in a household.
const (
	RoleHead   = "head"
	RoleSpouse = "spouse"
	RoleChild  = "child"
	RoleTwin   = "twin"   // a child with a sibling of the same birth date
	RoleJunior = "junior" // a son with his father's given name
)

// Person is one generated person.
type Person struct {
	Record    member.Record
	Household int
	Role      string
	InIndex   bool // false: a relative the index does not hold
}

// Population is a generated set of people in households.
type Population struct {
	People []Person
	rng    *rand.Rand
}

type gen struct{ rng *rand.Rand }

// zipfTable precomputes a cumulative Zipf distribution for fast draws.
type zipfTable []float64

func newZipf(n int, s float64) zipfTable {
	t := make(zipfTable, n)
	c := 0.0
	for i := range t {
		c += 1 / math.Pow(float64(i+1), s)
		t[i] = c
	}
	return t
}

func (z zipfTable) draw(rng *rand.Rand) int {
	u := rng.Float64() * z[len(z)-1]
	lo, hi := 0, len(z)-1
	for lo < hi {
		m := (lo + hi) / 2
		if z[m] < u {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

var (
	femaleZ  = newZipf(len(femaleNames), 0.8)
	maleZ    = newZipf(len(maleNames), 0.8)
	surnameZ = newZipf(len(surnames), 0.9)
	cityZ    = newZipf(len(cities), 0.6)
)

func (g *gen) surname() string {
	// Half the surnames come from the common list, half from a long tail
	// built of syllables, as in a real population.
	if g.rng.IntN(2) == 0 {
		return surnames[surnameZ.draw(g.rng)]
	}
	n := 2 + g.rng.IntN(2)
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(syllables[g.rng.IntN(len(syllables))])
	}
	s := b.String()
	return strings.ToUpper(s[:1]) + s[1:]
}

func (g *gen) given(sex string) string {
	if sex == "F" {
		return femaleNames[femaleZ.draw(g.rng)]
	}
	return maleNames[maleZ.draw(g.rng)]
}

func (g *gen) sex() string {
	if g.rng.IntN(2) == 0 {
		return "F"
	}
	return "M"
}

func (g *gen) birth(minAge, maxAge int) time.Time {
	ref := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	days := minAge*365 + g.rng.IntN((maxAge-minAge)*365+1)
	return ref.AddDate(0, 0, -days)
}

type address struct{ street, city, state, zip string }

func (g *gen) address() address {
	c := cities[cityZ.draw(g.rng)]
	st := streetNames[g.rng.IntN(len(streetNames))]
	typ := streetTypes[g.rng.IntN(len(streetTypes))][0]
	street := fmt.Sprintf("%d %s %s", 1+g.rng.IntN(9899), st, typ)
	if g.rng.IntN(6) == 0 {
		street = fmt.Sprintf("%d %s %s %s", 1+g.rng.IntN(9899), directions[g.rng.IntN(4)][0], st, typ)
	}
	if g.rng.IntN(5) == 0 {
		street += fmt.Sprintf(" Apt %d", 1+g.rng.IntN(40))
	}
	return address{street: street, city: c.name, state: c.state, zip: fmt.Sprintf("%05d", c.zip+g.rng.IntN(90))}
}

func (g *gen) phone(area int) string {
	return fmt.Sprintf("(%03d) %03d-%04d", area, 200+g.rng.IntN(800), g.rng.IntN(10000))
}

func areaOf(state string) int {
	for _, c := range cities {
		if c.state == state {
			return c.area
		}
	}
	return 555
}

// Generate makes about n people in households. Some of the household members
// (about absent of them, chosen among spouses, twins, juniors and children)
// are left out of the index: queries for them must never match a relative.
func Generate(n int, absent float64, seed uint64) *Population {
	return generate(func(p *Population, _ int) bool { return len(p.People) < n }, absent, seed)
}

// GenerateMembers is Generate until the index holds at least n members
// (n people in the index, and the absent relatives besides).
func GenerateMembers(n int, absent float64, seed uint64) *Population {
	return generate(func(_ *Population, indexed int) bool { return indexed < n }, absent, seed)
}

func generate(more func(p *Population, indexed int) bool, absent float64, seed uint64) *Population {
	rng := rand.New(rand.NewPCG(seed, 0x51ed))
	g := &gen{rng: rng}
	pop := &Population{rng: rng}
	hh, indexed := 0, 0
	for more(pop, indexed) {
		hh++
		size := []int{1, 1, 1, 1, 2, 2, 2, 3, 3, 4, 4, 5}[rng.IntN(12)]
		addr := g.address()
		area := areaOf(addr.state)
		landline := ""
		if rng.IntN(2) == 0 {
			landline = g.phone(area)
		}
		family := g.surname()
		headSex := g.sex()
		head := g.person(g.given(headSex), family, headSex, g.birth(25, 90), addr, landline, area)
		members := []Person{{Record: head, Role: RoleHead}}
		if size >= 2 {
			sx := "F"
			if headSex == "F" {
				sx = "M"
			}
			fam := family
			if rng.IntN(5) == 0 {
				fam = g.surname() // kept her or his own name
			}
			hb, _ := time.Parse(time.DateOnly, head.BirthDate)
			sb := hb.AddDate(rng.IntN(11)-5, 0, rng.IntN(365)-182)
			members = append(members, Person{Record: g.person(g.given(sx), fam, sx, sb, addr, landline, area), Role: RoleSpouse})
		}
		hb, _ := time.Parse(time.DateOnly, head.BirthDate)
		for k := 2; k < size; k++ {
			age := 2026 - hb.Year() - 20 - rng.IntN(15)
			if age < 0 {
				age = rng.IntN(5)
			}
			cb := g.birth(max(age-1, 0), age)
			sx := g.sex()
			role := RoleChild
			given := g.given(sx)
			fam := family
			if headSex == "M" && sx == "M" && rng.IntN(6) == 0 {
				// A junior: his father's name; the suffix is written only sometimes.
				given, role = head.Given, RoleJunior
				if rng.IntN(2) == 0 {
					fam += " Jr"
				}
			}
			c := g.person(given, fam, sx, cb, addr, landline, area)
			members = append(members, Person{Record: c, Role: role})
			if k+1 < size && rng.IntN(6) == 0 {
				// Twins: same birth date, another given name.
				sx2 := g.sex()
				g2 := g.given(sx2)
				for g2 == given {
					g2 = g.given(sx2)
				}
				t := g.person(g2, family, sx2, cb, addr, landline, area)
				members[len(members)-1].Role = RoleTwin
				members = append(members, Person{Record: t, Role: RoleTwin})
				k++
			}
		}
		for i := range members {
			members[i].Household = hh
			members[i].InIndex = true
			if i > 0 && rng.Float64() < absent*3 {
				members[i].InIndex = false
			} else {
				indexed++
			}
			members[i].Record.ID = fmt.Sprintf("M%08d", len(pop.People)+1)
			pop.People = append(pop.People, members[i])
		}
	}
	return pop
}

func (g *gen) person(given, family, sex string, birth time.Time, a address, landline string, area int) member.Record {
	r := member.Record{Given: given, Family: family, BirthDate: birth.Format(time.DateOnly), Sex: sex,
		Street: a.street, City: a.city, State: a.state, PostalCode: a.zip, Phone: landline}
	if r.Phone == "" && g.rng.IntN(5) != 0 {
		r.Phone = g.phone(area) // an own mobile
	}
	return r
}

// Index is the members the index holds.
func (p *Population) Index() []member.Record {
	out := make([]member.Record, 0, len(p.People))
	for _, x := range p.People {
		if x.InIndex {
			out = append(out, x.Record)
		}
	}
	return out
}

// Kinds of query variation.
const (
	KindExact    = "exact"    // the member as the index has it, formatted differently
	KindTypo     = "typo"     // a typo in a name
	KindNickname = "nickname" // a nickname for the given name
	KindDOB      = "dob"      // day and month swapped or one digit wrong
	KindMoved    = "moved"    // a new address and phone
	KindMarried  = "married"  // a new family name, often a new address too
	KindMissing  = "missing"  // phone, address or sex left out
	KindMixed    = "mixed"    // a typo and a move
	KindRelative = "relative" // a household member the index does not hold
	KindStranger = "stranger" // someone unrelated the index does not hold
)

// Query is one generated query with its truth.
type Query struct {
	ID           string
	Demographics transfer.Demographics
	Truth        string // the member id sought, or "" when the index does not hold the person
	Kind         string
	Household    int
}

// Queries draws n queries: most for members with realistic variations, some
// for relatives the index does not hold and some for strangers.
func (p *Population) Queries(n int, seed uint64) []Query {
	rng := rand.New(rand.NewPCG(seed, 0x9e37))
	g := &gen{rng: rng}
	var absent []int
	for i, x := range p.People {
		if !x.InIndex {
			absent = append(absent, i)
		}
	}
	out := make([]Query, 0, n)
	for len(out) < n {
		var q Query
		switch r := rng.IntN(100); {
		case r < 6 && len(absent) > 0:
			x := p.People[absent[rng.IntN(len(absent))]]
			q = Query{Demographics: demographics(x.Record), Kind: KindRelative, Household: x.Household}
			g.format(&q.Demographics)
		case r < 9:
			sx := g.sex()
			rec := g.person(g.given(sx), g.surname(), sx, g.birth(0, 90), g.address(), "", 555)
			q = Query{Demographics: demographics(rec), Kind: KindStranger}
		default:
			x := p.People[rng.IntN(len(p.People))]
			if !x.InIndex {
				continue
			}
			q = Query{Demographics: demographics(x.Record), Truth: x.Record.ID, Household: x.Household}
			q.Kind = g.vary(&q.Demographics, x)
			g.format(&q.Demographics)
		}
		q.ID = fmt.Sprintf("Q%07d", len(out)+1)
		out = append(out, q)
	}
	return out
}

func demographics(r member.Record) transfer.Demographics {
	return transfer.Demographics{Given: r.Given, Family: r.Family, BirthDate: r.BirthDate, Sex: r.Sex, Phone: r.Phone,
		Address: transfer.Address{Street: r.Street, City: r.City, State: r.State, PostalCode: r.PostalCode}}
}

func (g *gen) vary(d *transfer.Demographics, x Person) string {
	switch r := g.rng.IntN(100); {
	case r < 30:
		return KindExact
	case r < 45:
		if g.rng.IntN(2) == 0 {
			d.Given = g.typo(d.Given)
		} else {
			d.Family = g.typo(d.Family)
		}
		return KindTypo
	case r < 55:
		if nn := nicknamesOf[d.Given]; len(nn) > 0 {
			d.Given = nn[g.rng.IntN(len(nn))]
			return KindNickname
		}
		return KindExact
	case r < 63:
		d.BirthDate = g.dobError(d.BirthDate)
		return KindDOB
	case r < 75:
		g.move(d)
		return KindMoved
	case r < 80:
		if x.Record.Sex == "F" && x.Role != RoleChild && x.Role != RoleTwin {
			d.Family = g.surname()
			if g.rng.IntN(2) == 0 {
				g.move(d)
			}
			return KindMarried
		}
		return KindExact
	case r < 92:
		switch g.rng.IntN(3) {
		case 0:
			d.Phone = ""
		case 1:
			d.Address = transfer.Address{}
		default:
			d.Sex, d.Phone = "", ""
		}
		return KindMissing
	default:
		d.Family = g.typo(d.Family)
		g.move(d)
		return KindMixed
	}
}

func (g *gen) move(d *transfer.Demographics) {
	a := g.address()
	d.Address = transfer.Address{Street: a.street, City: a.city, State: a.state, PostalCode: a.zip}
	if g.rng.IntN(3) != 0 {
		d.Phone = g.phone(areaOf(a.state))
	}
}

func (g *gen) typo(s string) string {
	if len(s) < 3 {
		return s
	}
	b := []byte(s)
	i := 1 + g.rng.IntN(len(b)-2)
	switch g.rng.IntN(4) {
	case 0: // substitution
		b[i] = byte('a' + g.rng.IntN(26))
	case 1: // deletion
		b = append(b[:i], b[i+1:]...)
	case 2: // transposition
		b[i], b[i+1] = b[i+1], b[i]
	default: // insertion
		b = append(b[:i], append([]byte{byte('a' + g.rng.IntN(26))}, b[i:]...)...)
	}
	return string(b)
}

func (g *gen) dobError(s string) string {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return s
	}
	if t.Day() <= 12 && t.Day() != int(t.Month()) && g.rng.IntN(2) == 0 {
		return fmt.Sprintf("%04d-%02d-%02d", t.Year(), t.Day(), int(t.Month()))
	}
	for {
		b := []byte(s)
		i := []int{2, 3, 6, 8, 9}[g.rng.IntN(5)]
		b[i] = byte('0' + g.rng.IntN(10))
		if v, err := time.Parse(time.DateOnly, string(b)); err == nil && string(b) != s && v.Year() >= 1900 && v.Before(time.Now()) {
			return string(b)
		}
	}
}

// format changes how, not what: case, ZIP+4, phone punctuation, street
// abbreviations.
func (g *gen) format(d *transfer.Demographics) {
	if g.rng.IntN(3) == 0 {
		d.Given, d.Family = strings.ToUpper(d.Given), strings.ToUpper(d.Family)
	}
	if d.Address.PostalCode != "" && g.rng.IntN(3) == 0 {
		d.Address.PostalCode += fmt.Sprintf("-%04d", g.rng.IntN(10000))
	}
	if d.Phone != "" && g.rng.IntN(2) == 0 {
		digits := strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, d.Phone)
		d.Phone = "+1 " + digits[:3] + "." + digits[3:6] + "." + digits[6:]
	}
	if g.rng.IntN(2) == 0 {
		for _, t := range streetTypes {
			d.Address.Street = strings.Replace(d.Address.Street, " "+t[0], " "+t[1], 1)
		}
		for _, t := range directions {
			d.Address.Street = strings.Replace(d.Address.Street, " "+t[0]+" ", " "+t[1]+". ", 1)
		}
	}
	if g.rng.IntN(4) == 0 {
		d.Address.State = strings.ToLower(d.Address.State)
	}
}
