package connectors

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"strings"
	"testing"
)

func TestMatchesClientCert(t *testing.T) {
	spki := func() []byte {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		b, err := x509.MarshalPKIXPublicKey(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	key, otherKey := spki(), spki()
	sum := sha256.Sum256(key)
	pin := hex.EncodeToString(sum[:])
	var colons []string // AB:CD:…, as openssl prints fingerprints
	for i := 0; i < len(pin); i += 2 {
		colons = append(colons, strings.ToUpper(pin[i:i+2]))
	}
	withSAN := &x509.Certificate{DNSNames: []string{"p2p.acme.example", "alt.acme.example"}, Subject: pkix.Name{CommonName: "cn.acme.example"}, RawSubjectPublicKeyInfo: key}
	cnOnly := &x509.Certificate{Subject: pkix.Name{CommonName: "p2p.acme.example"}, RawSubjectPublicKeyInfo: key}
	otherKeyCert := &x509.Certificate{DNSNames: []string{"p2p.acme.example"}, RawSubjectPublicKeyInfo: otherKey}
	mtls := func(subject, sha string) Auth {
		return Auth{Type: AuthMTLS, ClientCertSubject: subject, ClientCertSHA256: sha}
	}
	tests := []struct {
		name string
		auth Auth
		cert *x509.Certificate
		want bool
	}{
		{"DNS SAN", mtls("p2p.acme.example", ""), withSAN, true},
		{"second DNS SAN, other case", mtls("ALT.acme.example", ""), withSAN, true},
		{"CN ignored when SANs exist", mtls("cn.acme.example", ""), withSAN, false},
		{"CN without SANs", mtls("p2p.acme.example", ""), cnOnly, true},
		{"other name", mtls("p2p.zeta.example", ""), withSAN, false},
		{"pin", mtls("", pin), cnOnly, true},
		{"pin with colons, upper case", mtls("", strings.Join(colons, ":")), withSAN, true},
		{"pin of another key", mtls("", pin), otherKeyCert, false},
		{"name and pin", mtls("p2p.acme.example", pin), withSAN, true},
		{"name right, pin wrong", mtls("p2p.acme.example", pin), otherKeyCert, false},
		{"pin right, name wrong", mtls("p2p.zeta.example", pin), withSAN, false},
		{"no identity", mtls("", ""), withSAN, false},
		{"not mtls", Auth{Type: AuthSMARTBackend, ClientCertSubject: "p2p.acme.example"}, withSAN, false},
		{"no certificate", mtls("p2p.acme.example", ""), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.auth.MatchesClientCert(tt.cert); got != tt.want {
				t.Errorf("MatchesClientCert = %v, want %v", got, tt.want)
			}
		})
	}
}
