package connectors

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseRegistry(t *testing.T) {
	const good = `
partners:
  - id: zeta
    name: Zeta Health
    push_url: https://p2p.zeta.example/exports
  - id: acme
    name: Acme Health
    push_url: http://127.0.0.1:9000/exports
    jwks_url: http://127.0.0.1:9000/.well-known/jwks.json
    timeout: 45s
`
	tests := []struct {
		name    string
		yaml    string
		wantIDs []string
		wantErr string
	}{
		{"valid", good, []string{"acme", "zeta"}, ""},
		{"empty document", "", nil, ""},
		{"empty list", "partners: []\n", nil, ""},
		{"duplicate id", "partners:\n- {id: a, push_url: 'https://a.example/x'}\n- {id: a, push_url: 'https://b.example/x'}\n", nil, "listed twice"},
		{"relative url", "partners:\n- {id: a, push_url: /exports}\n", nil, "absolute http"},
		{"ftp url", "partners:\n- {id: a, push_url: 'ftp://a.example/x'}\n", nil, "absolute http"},
		{"credentials in url", "partners:\n- {id: a, push_url: 'https://u:pw@a.example/x'}\n", nil, "credentials"},
		{"missing push url", "partners:\n- {id: a}\n", nil, "push_url: is required"},
		{"bad jwks url", "partners:\n- {id: a, push_url: 'https://a.example/x', jwks_url: 'nope'}\n", nil, "jwks_url"},
		{"bad id", "partners:\n- {id: 'a b', push_url: 'https://a.example/x'}\n", nil, "partner id"},
		{"negative timeout", "partners:\n- {id: a, push_url: 'https://a.example/x', timeout: -1s}\n", nil, "timeout"},
		{"huge timeout", "partners:\n- {id: a, push_url: 'https://a.example/x', timeout: 24h}\n", nil, "timeout"},
		{"timeout without unit", "partners:\n- {id: a, push_url: 'https://a.example/x', timeout: 30}\n", nil, "parse registry"},
		{"unknown key", "partners:\n- {id: a, pushurl: 'https://a.example/x'}\n", nil, "parse registry"},
		{"identifiers", "partners:\n- {id: a, push_url: 'https://a.example/x', identifiers: [{system: 'http://hl7.org/fhir/sid/us-npi', value: '0123456789'}]}\n", []string{"a"}, ""},
		{"identifier without value", "partners:\n- {id: a, push_url: 'https://a.example/x', identifiers: [{system: 'http://hl7.org/fhir/sid/us-npi'}]}\n", nil, "identifiers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRegistry([]byte(tt.yaml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(r.IDs(), tt.wantIDs) {
				t.Fatalf("ids %v, want %v", r.IDs(), tt.wantIDs)
			}
			if tt.name == "identifiers" {
				p, _ := r.Get("a")
				if want := []Identifier{{System: "http://hl7.org/fhir/sid/us-npi", Value: "0123456789"}}; !slices.Equal(p.Identifiers, want) {
					t.Errorf("identifiers %v, want %v", p.Identifiers, want)
				}
			}
		})
	}
}

func TestRegistryDefaultsAndLookups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "partners.yaml")
	if err := os.WriteFile(path, []byte("partners:\n- {id: b, name: B, push_url: 'https://b.example/x'}\n- {id: a, push_url: 'https://a.example/x', timeout: 5s}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := LoadRegistry(path)
	if err != nil {
		t.Fatal(err)
	}
	b, ok := r.Get("b")
	if !ok || b.Name != "B" || b.Timeout != DefaultTimeout {
		t.Fatalf("b = %+v, %v", b, ok)
	}
	if a, _ := r.Get("a"); a.Timeout != 5*time.Second {
		t.Fatalf("a timeout %v", a.Timeout)
	}
	if _, ok := r.Get("c"); ok {
		t.Fatal("unknown partner found")
	}
	ids := r.IDs()
	ids[0] = "mutated"
	if r.IDs()[0] != "a" {
		t.Fatal("IDs exposes the registry's slice")
	}

	// Adding the dev sandbox to a registry read from a file.
	r2, err := NewRegistry(append(r.Partners(), Partner{ID: "sandbox", PushURL: "http://127.0.0.1:1/exports"})...)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r2.IDs(), []string{"a", "b", "sandbox"}) {
		t.Fatalf("ids %v", r2.IDs())
	}

	if _, err := LoadRegistry(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("missing file: want an error")
	}
	var nilReg *Registry
	if _, ok := nilReg.Get("a"); ok || nilReg.IDs() != nil {
		t.Fatal("nil registry should be empty")
	}
}
