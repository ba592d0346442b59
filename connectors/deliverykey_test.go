package connectors

import "testing"

// TestDeliveryKey pins the key: partners store deliveries under it, and
// receipts already issued name it, so its form must never change.
func TestDeliveryKey(t *testing.T) {
	for _, c := range []struct{ id, sha, want string }{
		{"tr-1", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "p2p-tr-1-0123456789abcdef0123456789abcdef"},
		{"tr-2", "abc", "p2p-tr-2-abc"},
		{"tr-3", "", "p2p-tr-3-"},
	} {
		if got := DeliveryKey(c.id, c.sha); got != c.want {
			t.Errorf("DeliveryKey(%q, %q) = %q, want %q", c.id, c.sha, got, c.want)
		}
	}
}
