package activities

import (
	"context"
	"net/url"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/p2p-payer/p2p/store"
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

// record appends an event (and the projection parts of ch) as the worker.
func (a *Activities) record(ctx context.Context, transferID string, ch store.Change) error {
	if ch.Event.At.IsZero() {
		ch.Event.At = a.now()
	}
	if ch.Event.Actor == "" {
		ch.Event.Actor = "workflow"
	}
	_, err := a.Store.ApplyChange(ctx, transferID, ch)
	return err
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }
