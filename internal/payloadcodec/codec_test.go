package payloadcodec

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"
)

func newCodec(t testing.TB, ks *KeySet) *Codec {
	t.Helper()
	c, err := New(ks)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newKeySet(t testing.TB) *KeySet {
	t.Helper()
	ks, err := NewKeySet()
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// secret is a value as a workflow carries it: a member id and a file URL.
type secret struct {
	MemberID string
	URL      string
}

var alice = secret{MemberID: "M100001", URL: "https://old.example/fhir/bulkfiles/job1/0"}

// TestRoundTrip: a value through the data converter comes back equal; on
// the wire it is encrypted (encoding, key id, no plain text), and the
// same value encrypts differently each time (a fresh nonce).
func TestRoundTrip(t *testing.T) {
	c := newCodec(t, newKeySet(t))
	dc := c.DataConverter()
	p1, err := dc.ToPayload(alice)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := dc.ToPayload(alice)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(p1.Metadata[converter.MetadataEncoding]); got != EncodingEncrypted {
		t.Errorf("encoding %q, want %q", got, EncodingEncrypted)
	}
	if got := string(p1.Metadata[MetadataKeyID]); got != c.ActiveKeyID() {
		t.Errorf("key id %q, want %q", got, c.ActiveKeyID())
	}
	if len(p1.Metadata) != 2 {
		t.Errorf("metadata %v: want the encoding and the key id only", p1.Metadata)
	}
	wire, _ := proto.Marshal(p1)
	for _, plain := range []string{alice.MemberID, alice.URL, "json/plain"} {
		if bytes.Contains(wire, []byte(plain)) {
			t.Errorf("the encrypted payload holds %q in plain text", plain)
		}
	}
	if bytes.Equal(p1.Data, p2.Data) {
		t.Error("the same value encrypted twice gives the same bytes: the nonce is not fresh")
	}
	var back secret
	if err := dc.FromPayload(p1, &back); err != nil {
		t.Fatal(err)
	}
	if back != alice {
		t.Errorf("decoded %+v, want %+v", back, alice)
	}
	// The original encoding travels inside.
	dec, err := c.Decode([]*commonpb.Payload{p1})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(dec[0].Metadata[converter.MetadataEncoding]); got != converter.MetadataEncodingJSON {
		t.Errorf("decoded encoding %q, want %q", got, converter.MetadataEncodingJSON)
	}
}

// TestDecodeRefuses: what does not decrypt is an error naming the key id
// at most; a payload never encrypted (history from before the codec)
// passes unchanged.
func TestDecodeRefuses(t *testing.T) {
	c := newCodec(t, newKeySet(t))
	enc, err := c.Encode([]*commonpb.Payload{{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"M100001"`)}})
	if err != nil {
		t.Fatal(err)
	}
	good := enc[0]
	tampered := proto.Clone(good).(*commonpb.Payload)
	tampered.Data[len(tampered.Data)-1] ^= 1
	otherKey := proto.Clone(good).(*commonpb.Payload)
	otherKey.Metadata[MetadataKeyID] = []byte("unknown-key-id00")
	short := proto.Clone(good).(*commonpb.Payload)
	short.Data = short.Data[:5]
	plain := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"x"`)}

	tests := []struct {
		name    string
		in      *commonpb.Payload
		wantErr string
	}{
		{"encrypted", good, ""},
		{"not encrypted", plain, ""},
		{"tampered", tampered, "damaged or forged"},
		{"cut short", short, "damaged or forged"},
		{"another key", otherKey, `"unknown-key-id00", which this process does not hold`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := c.Decode([]*commonpb.Payload{tt.in})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "M100001") {
					t.Errorf("the error shows the payload: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.in == plain && out[0] != plain {
				t.Error("an unencrypted payload was changed")
			}
		})
	}
}

// TestRotation: a prepared key decrypts before it encrypts; after a
// rotation the new key encrypts and the retired one still decrypts; a
// process that never loaded the new key cannot read what it encrypts,
// which is why rotations go through --prepare.
func TestRotation(t *testing.T) {
	ks := newKeySet(t)
	before := newCodec(t, ks)
	old, err := before.Encode([]*commonpb.Payload{{Data: []byte("old")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Prepare(); err != nil {
		t.Fatal(err)
	}
	prepared := newCodec(t, ks)
	if prepared.ActiveKeyID() != before.ActiveKeyID() {
		t.Fatal("preparing changed the key that encrypts")
	}
	kid, err := ks.Rotate(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	after := newCodec(t, ks)
	if after.ActiveKeyID() != kid || kid == before.ActiveKeyID() {
		t.Fatalf("after rotation the active key is %s (rotate said %s, before %s)", after.ActiveKeyID(), kid, before.ActiveKeyID())
	}
	fresh, err := after.Encode([]*commonpb.Payload{{Data: []byte("new")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		c    *Codec
		in   *commonpb.Payload
		want string // "" fails
	}{
		{"the rotated set reads the old key's payload", after, old[0], "old"},
		{"the rotated set reads its own", after, fresh[0], "new"},
		{"a prepared process reads the new key's payload", prepared, fresh[0], "new"},
		{"a process without the new key cannot", before, fresh[0], ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := tt.c.Decode([]*commonpb.Payload{tt.in})
			if tt.want == "" {
				if err == nil {
					t.Fatal("decoded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(out[0].Data) != tt.want {
				t.Errorf("decoded %q, want %q", out[0].Data, tt.want)
			}
		})
	}
	if len(ks.Retired) != 1 || ks.Retired[0].Key.ID != before.ActiveKeyID() {
		t.Errorf("retired %+v, want the old key", ks.Retired)
	}
}

// TestFailureMessagesEncrypted: an error's message and stack trace go to
// Temporal encrypted, and come back whole.
func TestFailureMessagesEncrypted(t *testing.T) {
	c := newCodec(t, newKeySet(t))
	fc := c.FailureConverter()
	err := temporal.NewApplicationError("download "+alice.URL+": 410", "file_expired")
	f := fc.ErrorToFailure(err)
	wire, _ := proto.Marshal(f)
	if bytes.Contains(wire, []byte(alice.URL)) {
		t.Errorf("the failure holds the URL in plain text: %v", f)
	}
	if f.GetEncodedAttributes() == nil || string(f.GetEncodedAttributes().Metadata[converter.MetadataEncoding]) != EncodingEncrypted {
		t.Errorf("encoded attributes %v, want an encrypted payload", f.GetEncodedAttributes())
	}
	back := fc.FailureToError(f)
	var app *temporal.ApplicationError
	if !errors.As(back, &app) || app.Type() != "file_expired" || !strings.Contains(app.Error(), alice.URL) {
		t.Errorf("round trip: %v", back)
	}
}

func TestNewNeedsKeys(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Fatal("a codec without keys")
	}
}

// BenchmarkCodec is the codec's cost per payload of a typical size (an
// activity result of about 1 KB), encrypt then decrypt.
func BenchmarkCodec(b *testing.B) {
	c := newCodec(b, newKeySet(b))
	p := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: bytes.Repeat([]byte("x"), 1024)}
	in := []*commonpb.Payload{p}
	b.ReportAllocs()
	b.SetBytes(int64(len(p.Data)))
	for b.Loop() {
		enc, err := c.Encode(in)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Decode(enc); err != nil {
			b.Fatal(err)
		}
	}
}
