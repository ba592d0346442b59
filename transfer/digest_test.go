package transfer

import "testing"

// TestKeyedDigest pins KeyedDigest to HMAC-SHA256 (RFC 4231 test case 2)
// and checks that the key matters.
func TestKeyedDigest(t *testing.T) {
	const want = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
	if got := KeyedDigest([]byte("Jefe"), "what do ya want for nothing?"); got != want {
		t.Fatalf("KeyedDigest = %s, want %s", got, want)
	}
	if KeyedDigest([]byte("other"), "what do ya want for nothing?") == want {
		t.Fatal("the key does not change the digest")
	}
}
