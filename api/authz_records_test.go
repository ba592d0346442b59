package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/p2p-payer/p2p/caller"
	"github.com/p2p-payer/p2p/member"
	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// TestTimelinePages: a walk of timeline pages shows every event once, in
// order, up to the read of its first page, however small the pages and
// however many reads they add; a new walk shows those reads.
func TestTimelinePages(t *testing.T) {
	e := newEnv(t)
	id := decode[Transfer](t, e.post(key, body("sandbox"))).Id
	for range 4 { // events 2..5: reads
		e.do(http.MethodGet, "/v1/transfers/"+id, "")
	}
	walk := func(limit int) []int64 {
		t.Helper()
		var seqs []int64
		path := fmt.Sprintf("/v1/transfers/%s/timeline?limit=%d", id, limit)
		for range 50 {
			w := e.do(http.MethodGet, path, "")
			if w.Code != http.StatusOK {
				t.Fatalf("GET %s = %d %s", path, w.Code, w.Body)
			}
			tl := decode[Timeline](t, w)
			if len(tl.Events) > limit {
				t.Fatalf("page of %d events, limit %d", len(tl.Events), limit)
			}
			for _, ev := range tl.Events {
				seqs = append(seqs, ev.Seq)
				if ev.Position == nil || ev.Hash == nil {
					t.Errorf("event %d without its audit-log place", ev.Seq)
				}
			}
			if tl.NextCursor == nil {
				return seqs
			}
			path = fmt.Sprintf("/v1/transfers/%s/timeline?limit=%d&cursor=%s", id, limit, url.QueryEscape(*tl.NextCursor))
		}
		t.Fatalf("a walk with limit %d does not end", limit)
		return nil
	}
	tests := []struct {
		limit     int
		last      int64 // the first page's read
		nextFirst int64 // the event count after the walk
	}{
		{1, 6, 11},    // 5 events, then 6 pages: 6 reads
		{2, 12, 17},   // 6 pages
		{100, 18, 18}, // 1 page
	}
	for _, tc := range tests {
		seqs := walk(tc.limit)
		if fmt.Sprint(seqs) != fmt.Sprint(seqsTo(tc.last)) {
			t.Errorf("limit %d: walk = %v, want 1..%d", tc.limit, seqs, tc.last)
		}
		tl, err := e.store.Timeline(context.Background(), id)
		if err != nil || int64(len(tl)) != tc.nextFirst {
			t.Errorf("limit %d: %d events after the walk (%v), want %d", tc.limit, len(tl), err, tc.nextFirst)
		}
	}

	base := "/v1/transfers/" + id + "/timeline"
	for _, bad := range []string{"?limit=0", "?limit=1001", "?cursor=garbage", "?cursor=" + encodeTimelineCursor(5, 5),
		"?cursor=" + encodeTimelineCursor(0, 3), "?cursor=MS4y%21"} {
		problem(t, e.do(http.MethodGet, base+bad, ""), http.StatusBadRequest, ProblemValidation)
	}
	// The default page is 100 events.
	for range 120 {
		e.do(http.MethodGet, "/v1/transfers/"+id, "")
	}
	if tl := decode[Timeline](t, e.do(http.MethodGet, base, "")); len(tl.Events) != defaultTimelineLimit || tl.NextCursor == nil {
		t.Errorf("default page = %d events, next %v; want %d and a next page", len(tl.Events), tl.NextCursor, defaultTimelineLimit)
	}
}

func seqsTo(n int64) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i) + 1
	}
	return out
}

// TestGetMember: a reviewer reads the members a transfer names, members:read
// any; each read is recorded on the transfer's timeline with the client,
// the person and the member before the member is answered.
func TestGetMember(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.store.UpsertMembers(ctx, []member.Record{
		{ID: "M1", Given: "Zelphina", Family: "Quarrington", BirthDate: "1984-07-19", Phone: "555-0199"},
		{ID: "M2", Given: "Other", Family: "Person", BirthDate: "1990-01-01"},
		{ID: "M3", Given: "Third", Family: "Person", BirthDate: "1991-01-01"},
	}); err != nil {
		t.Fatal(err)
	}
	id := decode[Transfer](t, e.post(key, body("sandbox"))).Id
	if _, err := e.store.ApplyChange(ctx, id, store.Change{
		Event: transfer.InReview(1).Stamped(e.srv.now()), State: transfer.StateManualReview,
		Identity: &transfer.IdentityOutcome{Status: transfer.IdentityAmbiguous, Candidates: []string{"M1"},
			Rationale: &transfer.Rationale{Rule: "score", RunnerUp: &transfer.RunnerUp{MemberID: "M2"}}},
	}); err != nil {
		t.Fatal(err)
	}
	reviewer := bearer("review-ui", "ann", caller.Review)
	reader := bearer("ops-tool", "", caller.MembersRead)
	tests := []struct {
		name, member, transfer, auth string
		status                       int
	}{
		{"candidate", "M1", id, reviewer, http.StatusOK},
		{"runner-up", "M2", id, reviewer, http.StatusOK},
		{"not named by the transfer", "M3", id, reviewer, http.StatusNotFound},
		{"members:read, any member", "M3", id, reader, http.StatusOK},
		{"unknown member", "M404", id, reader, http.StatusNotFound},
		{"unknown member, reviewer", "M404", id, reviewer, http.StatusNotFound},
		{"unknown transfer", "M1", "no-such-transfer", reader, http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.auditEntries())
			w := e.do(http.MethodGet, "/v1/members/"+tc.member+"?transfer_id="+tc.transfer, "", "Authorization", tc.auth)
			if tc.status != http.StatusOK {
				problem(t, w, tc.status, ProblemNotFound)
				if n := len(e.auditEntries()); n != before {
					t.Errorf("a refused read recorded %d events", n-before)
				}
				return
			}
			if w.Code != http.StatusOK || decode[Member](t, w).MemberId != tc.member {
				t.Fatalf("GET member = %d %s", w.Code, w.Body)
			}
			evs := e.auditEntries()
			if len(evs) != before+1 {
				t.Fatalf("%d events recorded, want 1", len(evs)-before)
			}
			ev := evs[len(evs)-1]
			client, person := "review-ui", "ann"
			if tc.auth == reader {
				client, person = "ops-tool", ""
			}
			d := ev.Event.Detail
			if ev.TransferID != id || ev.Event.Type != transfer.EventRead || ev.Event.Actor != "client:"+client ||
				d["route"] != routeMember || d["member_id"] != tc.member || d["request_id"] != w.Header().Get("X-Request-Id") ||
				(person == "" && d["person"] != nil) || (person != "" && d["person"] != person) {
				t.Errorf("recorded %+v on %s", ev.Event, ev.TransferID)
			}
		})
	}
	problem(t, e.do(http.MethodGet, "/v1/members/M1", "", "Authorization", reader), http.StatusBadRequest, ProblemValidation)
}

// TestReviewNamesPersonAndClient: the decision goes to the workflow as the
// person's (the client's when no person acts), and the answer is recorded
// as a read by the client, with the person.
func TestReviewNamesPersonAndClient(t *testing.T) {
	tests := []struct {
		name, person, wantReviewer string
	}{
		{"a person", "ann", "ann"},
		{"a system", "", "review-bot"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			id := decode[Transfer](t, e.post(key, body("sandbox"))).Id
			client := "review-ui"
			if tc.person == "" {
				client = "review-bot"
			}
			w := e.do(http.MethodPost, "/v1/transfers/"+id+"/review", `{"decision":"reject","reason":"not the member"}`,
				"Authorization", bearer(client, tc.person, caller.Review))
			if w.Code != http.StatusAccepted {
				t.Fatalf("review = %d %s", w.Code, w.Body)
			}
			e.engine.mu.Lock()
			reviews := e.engine.reviews
			e.engine.mu.Unlock()
			if len(reviews) != 1 || reviews[0].Reviewer != tc.wantReviewer {
				t.Errorf("reviews = %+v, want reviewer %s", reviews, tc.wantReviewer)
			}
			evs := e.auditEntries()
			ev := evs[len(evs)-1].Event
			if ev.Type != transfer.EventRead || ev.Actor != "client:"+client || ev.Detail["route"] != routeReview ||
				fmt.Sprint(ev.Detail["person"]) != fmt.Sprint(map[bool]any{true: nil, false: tc.person}[tc.person == ""]) {
				t.Errorf("last event = %+v, want a read of the review's answer by client:%s", ev, client)
			}
		})
	}
}
