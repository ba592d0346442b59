package activities

import (
	"context"
	"net/url"
	"time"

	"go.temporal.io/sdk/activity"
)

// The details of audit events are declared in package transfer
// (events.go); activities fill them from ids, digests, rules and
// outcomes: nothing in them is PHI.

// endpointOf is the partner URL as the audit may show it: without user
// info, query or fragment, which could hold credentials.
func endpointOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "unparseable"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment = nil, "", false, ""
	return u.String()
}

// attempt is the activity's attempt number, 1 outside an activity.
func attempt(ctx context.Context) int32 {
	if activity.IsActivity(ctx) {
		return activity.GetInfo(ctx).Attempt
	}
	return 1
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
