package identity

// Field names as they appear in a rationale.
const (
	FieldMemberID  = "member_id"
	FieldGiven     = "given"
	FieldFamily    = "family"
	FieldBirthDate = "birth_date"
	FieldSex       = "sex"
	FieldAddress   = "address" // street, city, state and postal code together
	FieldStreet    = "street"
	FieldPostal    = "postal_code"
	FieldPhone     = "phone"
	FieldPrior     = "prior" // the prior odds that a given member is the one sought
)

// Comparison levels as they appear in a rationale.
const (
	LevelExact      = "exact"
	LevelNickname   = "nickname"
	LevelClose      = "close"      // Jaro–Winkler or edit distance within the close threshold
	LevelFuzzy      = "fuzzy"      // similar but beyond close
	LevelInitial    = "initial"    // one side is an initial of the other
	LevelSwapped    = "swapped"    // given and family names swapped
	LevelTransposed = "transposed" // day and month swapped
	LevelPartial    = "partial"    // part agrees (a name token, the city but not the postal code, ...)
	LevelDifferent  = "different"
	LevelNearby     = "nearby" // the postal code or the town agrees, not the street
	LevelMissing    = "missing"
	LevelYear       = "within_a_year"    // birth dates a year or less apart
	LevelDecade     = "within_ten_years" // birth dates ten years or less apart
)
