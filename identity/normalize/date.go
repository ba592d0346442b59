package normalize

import (
	"strings"
	"time"
)

// Date is a birth date packed as year*10000 + month*100 + day (19710624).
// The zero Date means missing or not a plausible birth date.
type Date int32

// Year, Month and Day are the parts of d.
func (d Date) Year() int { return int(d) / 10000 }

// Month is the month of d (1–12).
func (d Date) Month() int { return int(d) / 100 % 100 }

// Day is the day of the month of d.
func (d Date) Day() int { return int(d) % 100 }

// String is d in YYYY-MM-DD form, or "" for the zero Date.
func (d Date) String() string {
	if d == 0 {
		return ""
	}
	return time.Date(d.Year(), time.Month(d.Month()), d.Day(), 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
}

// BirthDate parses a birth date given as YYYY-MM-DD, YYYYMMDD or the US
// MM/DD/YYYY and checks that it is a real calendar date between 1900 and
// tomorrow. Anything else is the zero Date: an implausible date is treated
// as missing rather than compared.
func BirthDate(s string) Date {
	s = strings.TrimSpace(s)
	var y, m, d int
	var ok bool
	switch {
	case len(s) == 10 && (s[4] == '-' || s[4] == '/') && s[7] == s[4]:
		y, ok = digits(s[0:4])
		m, ok = digitsAnd(ok, s[5:7])
		d, ok = digitsAnd(ok, s[8:10])
	case len(s) == 8:
		y, ok = digits(s[0:4])
		m, ok = digitsAnd(ok, s[4:6])
		d, ok = digitsAnd(ok, s[6:8])
	case len(s) == 10 && s[2] == '/' && s[5] == '/':
		m, ok = digits(s[0:2])
		d, ok = digitsAnd(ok, s[3:5])
		y, ok = digitsAnd(ok, s[6:10])
	}
	if !ok || !validDate(y, m, d) {
		return 0
	}
	return Date(y*10000 + m*100 + d)
}

func validDate(y, m, d int) bool {
	if y < 1900 || m < 1 || m > 12 || d < 1 {
		return false
	}
	t := time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC)
	if t.Day() != d || t.After(time.Now().AddDate(0, 0, 1)) {
		return false
	}
	return true
}

func digits(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, len(s) > 0
}

func digitsAnd(ok bool, s string) (int, bool) {
	if !ok {
		return 0, false
	}
	return digits(s)
}

// Transposed reports whether a and b are the same date with day and month
// swapped (03/04 keyed as 04/03), the commonest date entry error.
func Transposed(a, b Date) bool {
	return a != 0 && b != 0 && a != b && a.Year() == b.Year() && a.Month() == b.Day() && a.Day() == b.Month()
}

// DigitEdits is the number of the eight YYYYMMDD digits in which a and b
// differ, counting an adjacent swap of two digits as one edit. It is 8 when
// either is missing.
func DigitEdits(a, b Date) int {
	if a == 0 || b == 0 {
		return 8
	}
	var da, db [8]byte
	x, y := int(a), int(b)
	for i := 7; i >= 0; i-- {
		da[i], db[i] = byte(x%10), byte(y%10)
		x, y = x/10, y/10
	}
	n := 0
	for i := 0; i < 8; i++ {
		if da[i] == db[i] {
			continue
		}
		if i < 7 && da[i] == db[i+1] && da[i+1] == db[i] {
			i++
		}
		n++
	}
	return n
}

// DaysApart is the number of days between a and b, or a large number when
// either is missing.
func DaysApart(a, b Date) int {
	if a == 0 || b == 0 {
		return 1 << 30
	}
	d := a.days() - b.days()
	if d < 0 {
		d = -d
	}
	return d
}

// days is the number of days from 1 March of year 0 to d in the proleptic
// Gregorian calendar (H. Hinnant's days_from_civil): plain arithmetic,
// where time.Date took a sixth of a match's comparison time. A day past the
// month's end counts on into the next month, as time.Date normalises it.
func (d Date) days() int {
	y, m := d.Year(), d.Month()
	if m <= 2 {
		y--
	}
	era := y / 400 // years are positive
	yoe := y - era*400
	mp := (m + 9) % 12 // March = 0
	doy := (153*mp+2)/5 + d.Day() - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe
}
