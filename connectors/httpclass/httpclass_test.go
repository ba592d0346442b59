package httpclass

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/fault"
)

// TestError is the one table of the shared classification: every kind,
// its edges, the caller's reject class, and when Retry-After counts.
func TestError(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	types := Types{Auth: "t_auth", Throttled: "t_throttled", Unavailable: "t_unavailable", Rejected: "t_rejected", RejectClass: fault.Business, Unexpected: "t_unexpected"}
	asData := types
	asData.RejectClass = fault.Validation
	cases := []struct {
		code       int
		retryAfter string
		types      Types
		kind       Kind
		class      fault.Class
		typ        string
		wait       time.Duration
	}{
		{401, "", types, Auth, fault.Auth, "t_auth", 0},
		{403, "5", types, Auth, fault.Auth, "t_auth", 0}, // Retry-After only for downstream
		{429, "", types, Throttled, fault.Downstream, "t_throttled", 0},
		{429, "7", types, Throttled, fault.Downstream, "t_throttled", 7 * time.Second},
		{408, "", types, Unavailable, fault.Downstream, "t_unavailable", 0},
		{500, "junk", types, Unavailable, fault.Downstream, "t_unavailable", 0},
		// A 503 that says when to come back is throttling (KindOf reads
		// the code alone).
		{503, now.Add(90 * time.Second).Format(http.TimeFormat), types, Unavailable, fault.Downstream, "t_throttled", 90 * time.Second},
		{503, now.Add(-time.Minute).Format(http.TimeFormat), types, Unavailable, fault.Downstream, "t_throttled", 0},
		{503, "", types, Unavailable, fault.Downstream, "t_unavailable", 0},
		{502, "30", types, Unavailable, fault.Downstream, "t_unavailable", 30 * time.Second},
		{504, "99999999999", types, Unavailable, fault.Downstream, "t_unavailable", time.Hour}, // capped
		{599, "", types, Unavailable, fault.Downstream, "t_unavailable", 0},
		{600, "", types, Unavailable, fault.Downstream, "t_unavailable", 0},
		{400, "", types, Rejected, fault.Business, "t_rejected", 0},
		{404, "", types, Rejected, fault.Business, "t_rejected", 0},
		{422, "", asData, Rejected, fault.Validation, "t_rejected", 0},
		{499, "3", asData, Rejected, fault.Validation, "t_rejected", 0},
		{200, "", types, Unexpected, fault.Validation, "t_unexpected", 0},
		{204, "", types, Unexpected, fault.Validation, "t_unexpected", 0},
		{302, "", types, Unexpected, fault.Validation, "t_unexpected", 0},
		{399, "1", types, Unexpected, fault.Validation, "t_unexpected", 0},
		{100, "", types, Unexpected, fault.Validation, "t_unexpected", 0},
	}
	cause := errors.New("cause")
	for _, c := range cases {
		h := http.Header{}
		if c.retryAfter != "" {
			h.Set("Retry-After", c.retryAfter)
		}
		if k := KindOf(c.code); k != c.kind {
			t.Errorf("KindOf(%d) = %d, want %d", c.code, k, c.kind)
		}
		e := c.types.Error(c.code, h, now, "op", cause)
		if e.Class != c.class || e.Type != c.typ || e.Status != c.code || e.RetryAfter != c.wait || e.Msg != "op" || !errors.Is(e, cause) {
			t.Errorf("%d (Retry-After %q): %s/%s status %d after %v msg %q; want %s/%s status %d after %v msg \"op\" with the cause",
				c.code, c.retryAfter, e.Class, e.Type, e.Status, e.RetryAfter, e.Msg, c.class, c.typ, c.code, c.wait)
		}
		if c.class.Retryable() != (c.kind == Throttled || c.kind == Unavailable) {
			t.Errorf("%d: retryable %v for kind %d", c.code, c.class.Retryable(), c.kind)
		}
	}
	if e := types.Error(502, nil, now, "op", nil); e.Err != nil || e.Error() != "downstream/t_unavailable: op" {
		t.Errorf("without a cause or header: %v", e)
	}
}

func TestOutcome(t *testing.T) {
	type oo struct {
		ResourceType string
		Issue        []struct{ Code string }
	}
	const body = `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid"}]}`
	cases := []struct {
		name, contentType, body string
		want                    bool
	}{
		{"fhir+json", "application/fhir+json; charset=utf-8", body, true},
		{"no media type", "", body, true},
		{"another media type", "text/html", body, false},
		{"another resource", "application/json", `{"resourceType":"Parameters"}`, false},
		{"no resourceType", "application/json", `{"issue":[]}`, false},
		{"not JSON", "application/json", `<html>`, false},
		{"wrong shape", "application/json", `{"resourceType":"OperationOutcome","issue":"x"}`, false},
		{"empty", "application/json", ``, false},
	}
	for _, c := range cases {
		h := http.Header{}
		if c.contentType != "" {
			h.Set("Content-Type", c.contentType)
		}
		got := Outcome[oo](h, []byte(c.body))
		if (got != nil) != c.want {
			t.Errorf("%s: got %v, want an outcome: %v", c.name, got, c.want)
		}
		if got != nil && (len(got.Issue) != 1 || got.Issue[0].Code != "invalid") {
			t.Errorf("%s: decoded %+v", c.name, got)
		}
	}
}

// TestParseRetryAfter: delay-seconds, an HTTP-date (all three formats) or
// an absolute Unix time in seconds or milliseconds, capped; what is not a
// delay is no advice.
func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"later", 0, false},
		{"1.5", 0, false},
		{"0", 0, true},
		{"17", 17 * time.Second, true},
		{" 30 ", 30 * time.Second, true},
		{"-4", 0, true}, // the moment has passed
		{"3600", time.Hour, true},
		{"3601", MaxRetryAfter, true},
		{"7200", MaxRetryAfter, true},
		// Absolute Unix times, in seconds and in milliseconds (non-standard,
		// seen in the wild): the wait until then, capped; past is now.
		{"1748779500", 5 * time.Minute, true},
		{"1748779500000", 5 * time.Minute, true},
		{"1748779199750", 0, true},
		{"1748779200250", 250 * time.Millisecond, true},
		{"1748779100", 0, true},
		{"1748779100000", 0, true},
		{"1748800800", MaxRetryAfter, true},          // 6 h ahead: capped
		{"99999999999", MaxRetryAfter, true},         // neither a delay nor a time
		{"900000000", MaxRetryAfter, true},           // 1998: too early to be a time
		{"9223372036854775807", MaxRetryAfter, true}, // year 292 million in ms
		{"99999999999999999999999", MaxRetryAfter, true},
		{now.Add(45 * time.Second).Format(http.TimeFormat), 45 * time.Second, true},
		{now.Add(10 * time.Second).Format(time.RFC850), 10 * time.Second, true},
		{now.Add(50 * time.Second).Format(time.ANSIC), 50 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), MaxRetryAfter, true},
	}
	for _, tt := range tests {
		got, ok := ParseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	if got, ok := RetryAfter("1800", now, 10*time.Minute); got != 10*time.Minute || !ok {
		t.Errorf("RetryAfter above a 10 min limit = %v, %v", got, ok)
	}
}
