package app

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Day and Year are the units ParseDuration adds to time.ParseDuration's;
// a year is 365.25 days, so "6y" covers six years whatever their leap days.
const (
	Day  = 24 * time.Hour
	Year = 8766 * time.Hour
)

// ParseDuration parses a Go duration ("10m", "36h") or a whole number of
// days or years ("30d", "6y"), for retention settings.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	for suffix, unit := range map[string]time.Duration{"d": Day, "y": Year} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseInt(n, 10, 32)
			if err != nil || v < 0 {
				return 0, fmt.Errorf("duration %q: want a whole number of %s", s, map[string]string{"d": "days", "y": "years"}[suffix])
			}
			return time.Duration(v) * unit, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want e.g. 10m, 36h, 30d or 6y", s)
	}
	return d, nil
}

// durationFlag is a flag.Value of ParseDuration.
type durationFlag struct{ d *time.Duration }

func (f durationFlag) String() string {
	if f.d == nil {
		return ""
	}
	return FormatDuration(*f.d)
}

func (f durationFlag) Set(s string) error {
	d, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*f.d = d
	return nil
}

// FormatDuration prints d in years or days when it is a whole number of
// them, else as Go does.
func FormatDuration(d time.Duration) string {
	switch {
	case d > 0 && d%Year == 0:
		return strconv.FormatInt(int64(d/Year), 10) + "y"
	case d > 0 && d%Day == 0:
		return strconv.FormatInt(int64(d/Day), 10) + "d"
	}
	return d.String()
}

// EnvDuration is the duration in the environment variable key, or def.
func EnvDuration(key string, def time.Duration) (time.Duration, error) {
	v := Env(key, "")
	if v == "" {
		return def, nil
	}
	d, err := ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", key, err)
	}
	return d, nil
}
