package benchkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/p2p-payer/p2p/store"
	"github.com/p2p-payer/p2p/transfer"
)

// Transfers is what the P2P side reads of the store: which transfers
// completed, and when (the time the store recorded the complete state).
type Transfers interface {
	ListTransfers(ctx context.Context, f store.ListFilter) (store.TransferPage, error)
}

// P2P is p2p through its public API: a unit is POST /v1/transfers under
// an Idempotency-Key, accepted when it answers 202, complete when the
// store shows the transfer complete.
type P2P struct {
	url     string
	token   func(ctx context.Context) (string, error)
	request func(key string) []byte
	store   Transfers
	http    *http.Client

	mu       sync.Mutex
	answers  map[string][]byte    // key → the body of its first answer
	postedAt map[string]time.Time // transfer id → when it was posted
}

// NewP2P returns the P2P side of the API at url, called with the bearer
// tokens token hands out (scope transfers:write); request makes the body
// posted under a key, and st is the store the API and worker write.
func NewP2P(url string, token func(ctx context.Context) (string, error), request func(key string) []byte, st Transfers) *P2P {
	return &P2P{
		url: url, token: token, request: request, store: st,
		http:    &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}},
		answers: map[string][]byte{}, postedAt: map[string]time.Time{},
	}
}

// StaticToken hands out one token that does not expire.
func StaticToken(token string) func(ctx context.Context) (string, error) {
	return func(context.Context) (string, error) { return token, nil }
}

// ExportRequest returns request bodies of export transfers of one member
// (memberID born birthDate, who must match) to partnerID, each with an
// active consent of its own.
func ExportRequest(partnerID, memberID, birthDate string) func(key string) []byte {
	now := time.Now().UTC()
	period := map[string]any{"start": now.AddDate(0, -1, 0).Format(time.RFC3339), "end": now.AddDate(1, 0, 0).Format(time.RFC3339)}
	return func(key string) []byte {
		j, err := json.Marshal(map[string]any{
			"partner_id": partnerID,
			"member":     map[string]any{"member_id": memberID, "birth_date": birthDate},
			"consent":    map[string]any{"id": "consent-" + key, "status": "active", "scope": "regular", "period": period},
		})
		if err != nil {
			panic(err) // a map of strings always marshals
		}
		return j
	}
}

// Start posts the transfer of key and returns its id once accepted (202).
func (p *P2P) Start(ctx context.Context, key string) (string, error) {
	t0 := time.Now()
	status, replayed, body, err := p.post(ctx, key)
	if err != nil {
		return "", err
	}
	if status != http.StatusAccepted || replayed {
		return "", fmt.Errorf("POST /v1/transfers: %d (replayed %v): %.300s", status, replayed, body)
	}
	var tr struct{ ID string }
	if err := json.Unmarshal(body, &tr); err != nil || tr.ID == "" {
		return "", fmt.Errorf("POST /v1/transfers: no transfer id in %.300s", body)
	}
	p.mu.Lock()
	p.answers[key], p.postedAt[tr.ID] = body, t0
	p.mu.Unlock()
	return tr.ID, nil
}

// Replay posts key's request again, as a client retrying would, and
// checks that the answer is the first one replayed: 202,
// Idempotent-Replayed, the same body byte for byte.
func (p *P2P) Replay(ctx context.Context, key string) error {
	p.mu.Lock()
	first, ok := p.answers[key]
	p.mu.Unlock()
	if !ok {
		return fmt.Errorf("replay of %s: never accepted", key)
	}
	status, replayed, body, err := p.post(ctx, key)
	if err != nil {
		return err
	}
	if status != http.StatusAccepted || !replayed || !bytes.Equal(body, first) {
		return fmt.Errorf("replay of %s: %d, replayed %v, same body %v: %.300s", key, status, replayed, bytes.Equal(body, first), body)
	}
	return nil
}

func (p *P2P) post(ctx context.Context, key string) (status int, replayed bool, body []byte, err error) {
	token, err := p.token(ctx)
	if err != nil {
		return 0, false, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url+"/v1/transfers", bytes.NewReader(p.request(key)))
	if err != nil {
		return 0, false, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := p.http.Do(req)
	if err != nil {
		return 0, false, nil, err
	}
	defer res.Body.Close()
	body, err = io.ReadAll(res.Body)
	return res.StatusCode, res.Header.Get("Idempotent-Replayed") == "true", body, err
}

// listPage is the page size of the completion scan (the store's maximum).
const listPage = 200

// Completed pages through the complete transfers, newest first, until it
// has found ids or passed the oldest of them; a transfer of ids that
// failed is an error.
func (p *P2P) Completed(ctx context.Context, ids []string) (map[string]time.Time, error) {
	want := make(map[string]bool, len(ids))
	var oldest time.Time
	p.mu.Lock()
	for _, id := range ids {
		want[id] = true
		if at := p.postedAt[id]; oldest.IsZero() || at.Before(oldest) {
			oldest = at
		}
	}
	p.mu.Unlock()
	// The store stamps creation after the POST began; a second of slack
	// covers a store on another clock reading (PostgreSQL's now()).
	oldest = oldest.Add(-time.Second)

	failed, err := p.store.ListTransfers(ctx, store.ListFilter{State: transfer.StateFailed, Limit: listPage})
	if err != nil {
		return nil, err
	}
	for _, t := range failed.Items {
		if want[t.ID] {
			return nil, fmt.Errorf("transfer %s failed: %+v", t.ID, t.Error)
		}
	}
	got := map[string]time.Time{}
	f := store.ListFilter{State: transfer.StateComplete, Limit: listPage}
	for {
		page, err := p.store.ListTransfers(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, t := range page.Items {
			if want[t.ID] {
				got[t.ID] = t.UpdatedAt
			}
		}
		if len(got) == len(want) || page.NextCursor == "" || len(page.Items) == 0 || page.Items[len(page.Items)-1].CreatedAt.Before(oldest) {
			return got, nil
		}
		f.Cursor = page.NextCursor
	}
}
