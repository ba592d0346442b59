package storetest

import (
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/p2p-payer/p2p/store"
)

// testClients: a client is created once, read back whole (scopes, keys,
// certificates, person), found by each of its certificates, listed,
// replaced by an upsert that keeps its creation time, and disabled for
// good: an upsert does not enable it again.
func testClients(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	if _, err := s.GetClient(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetClient(nobody) = %v, want ErrNotFound", err)
	}
	if _, err := s.ClientByCert(ctx, "ab"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ClientByCert(unknown) = %v, want ErrNotFound", err)
	}
	fpA, fpB := "AA01", "bb02"
	reviewer := store.Client{ID: "rev", Name: "Review tool", Scopes: []string{"review", "members:read"},
		JWKS: []byte(`{"keys":[]}`), CertSHA256: []string{fpA, fpB}, Person: "Pat Reviewer"}
	if err := s.CreateClient(ctx, reviewer); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateClient(ctx, store.Client{ID: "rev", Scopes: []string{"admin"}}); !errors.Is(err, store.ErrExists) {
		t.Fatalf("CreateClient of a taken id = %v, want ErrExists", err)
	}
	if err := s.CreateClient(ctx, store.Client{ID: "thief", CertSHA256: []string{"aa01"}}); err == nil {
		t.Fatal("a certificate registered to another client was registered again")
	}
	if _, err := s.GetClient(ctx, "thief"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused client was half registered: %v", err)
	}
	got, err := s.GetClient(ctx, "rev")
	if err != nil {
		t.Fatal(err)
	}
	created := got.CreatedAt
	if got.Name != "Review tool" || !reflect.DeepEqual(got.Scopes, []string{"review", "members:read"}) || string(got.JWKS) != `{"keys":[]}` ||
		!reflect.DeepEqual(got.CertSHA256, []string{"aa01", "bb02"}) || got.Person != "Pat Reviewer" || got.Disabled ||
		created.IsZero() || created.Location() != time.UTC || !got.UpdatedAt.Equal(created) {
		t.Errorf("GetClient = %+v", got)
	}
	for _, fp := range []string{"aa01", "BB02"} {
		if c, err := s.ClientByCert(ctx, fp); err != nil || c.ID != "rev" {
			t.Errorf("ClientByCert(%s) = %s, %v", fp, c.ID, err)
		}
	}

	// Upsert: a new client, then a replacement of rev.
	if err := s.UpsertClient(ctx, store.Client{ID: "intake", Scopes: []string{"transfers:write"}, JWKSURL: "https://intake.example/jwks"}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpsertClient(ctx, store.Client{ID: "rev", Name: "Review tool 2", Scopes: []string{"review"}, CertSHA256: []string{"cc03"}}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetClient(ctx, "rev")
	if got.Name != "Review tool 2" || !reflect.DeepEqual(got.Scopes, []string{"review"}) || got.JWKS != nil || got.Person != "" ||
		!reflect.DeepEqual(got.CertSHA256, []string{"cc03"}) || !got.CreatedAt.Equal(created) || got.UpdatedAt.Before(created) {
		t.Errorf("after upsert GetClient = %+v", got)
	}
	if _, err := s.ClientByCert(ctx, "aa01"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a certificate the upsert dropped still names a client: %v", err)
	}
	list, err := s.ListClients(ctx)
	if err != nil || len(list) != 2 || list[0].ID != "intake" || list[1].ID != "rev" ||
		!reflect.DeepEqual(list[1].CertSHA256, []string{"cc03"}) || list[0].JWKSURL != "https://intake.example/jwks" || list[0].CertSHA256 != nil {
		t.Errorf("ListClients = %+v, %v", list, err)
	}

	// Disable: for good.
	if err := s.DisableClient(ctx, "nobody", base); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DisableClient(nobody) = %v", err)
	}
	if err := s.DisableClient(ctx, "rev", base); err != nil {
		t.Fatal(err)
	}
	if err := s.DisableClient(ctx, "rev", base.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.UpsertClient(ctx, store.Client{ID: "rev", Scopes: []string{"review"}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetClient(ctx, "rev"); !got.Disabled || !got.DisabledAt.Equal(base) {
		t.Errorf("after disable and upsert: disabled %v at %v, want since %v", got.Disabled, got.DisabledAt, base)
	}
	if err := s.UpsertClient(ctx, store.Client{ID: "intake", Scopes: []string{"transfers:write"}, Disabled: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetClient(ctx, "intake"); !got.Disabled {
		t.Error("an upsert with Disabled did not disable")
	}
	if err := s.CreateClient(ctx, store.Client{}); err == nil {
		t.Error("a client without id was registered")
	}
}

// testAssertionReplay: an assertion's (client, jti) is taken once until
// it expires, per client; concurrent uses of one let exactly one through.
func testAssertionReplay(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	exp := base.Add(5 * time.Minute)
	steps := []struct {
		name        string
		client, jti string
		expires     time.Time
		now         time.Time
		want        bool
	}{
		{"first use", "v1:a", "j1", exp, base, true},
		{"replay", "v1:a", "j1", exp, base.Add(time.Minute), false},
		{"another client's jti", "v1:b", "j1", exp, base, true},
		{"another surface", "fhir:a", "j1", exp, base, true},
		{"another jti", "v1:a", "j2", exp, base, true},
		{"replay just before expiry", "v1:a", "j1", exp, exp, false},
		{"after expiry, forgotten", "v1:a", "j1", exp.Add(10 * time.Minute), exp.Add(time.Microsecond), true},
	}
	for _, st := range steps {
		got, err := s.UseAssertion(ctx, st.client, st.jti, st.expires, st.now)
		if err != nil || got != st.want {
			t.Errorf("%s: UseAssertion = %v, %v; want %v", st.name, got, err, st.want)
		}
	}
	if _, err := s.UseAssertion(ctx, "v1:a", "", exp, base); err == nil {
		t.Error("an assertion without jti was recorded")
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	fresh := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.UseAssertion(ctx, "v1:race", "same", exp, base)
			if err != nil {
				t.Errorf("use %d: %v", i, err)
			}
			if ok {
				mu.Lock()
				fresh++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if fresh != 1 {
		t.Errorf("%d concurrent uses of one assertion went through, want 1", fresh)
	}
}
