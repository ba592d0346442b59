// Package payloadcodec encrypts what p2p hands Temporal: every payload of
// workflow and activity inputs, results, signals, updates, queries,
// markers, memos and heartbeats (a converter.PayloadCodec), and the
// message and stack trace of every failure (a failure converter that
// encodes them into a payload). Temporal's history and database then
// hold no member id, partner member identifier or file URL in plain text.
//
// Payloads are AES-256-GCM encrypted with a fresh random nonce each,
// their original encoding and metadata sealed inside (the whole payload,
// protobuf-serialised, is the plaintext); the metadata outside names
// only the encoding (binary/encrypted) and the key id. Decoding picks the
// key by that id, so keys rotate (KeySet): the newest encrypts, every
// kept one decrypts. The format is that of Temporal's encryption samples
// (encryption-key-id; nonce, ciphertext and tag in that order), so their
// codec servers and tools read it too.
//
// Server serves the codec-server protocol (POST …/encode, …/decode) that
// Temporal's Web UI and CLI call to show decoded payloads, to
// authenticated callers holding a scope.
package payloadcodec

import (
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/proto"
)

// The metadata of an encrypted payload.
const (
	// EncodingEncrypted is its encoding.
	EncodingEncrypted = "binary/encrypted"
	// MetadataKeyID names the key that encrypted it.
	MetadataKeyID = "encryption-key-id"
)

// Codec encrypts payloads with the active key of a key set and decrypts
// them with any of its keys. It is safe for concurrent use.
type Codec struct {
	active string
	aeads  map[string]cipher.AEAD
}

// New returns the codec of ks.
func New(ks *KeySet) (*Codec, error) {
	if ks == nil {
		return nil, errors.New("payloadcodec: no payload keys")
	}
	c := &Codec{active: ks.Active.ID, aeads: map[string]cipher.AEAD{}}
	for _, k := range ks.Keys() {
		block, err := aes.NewCipher(k.secret)
		if err != nil {
			return nil, fmt.Errorf("payloadcodec: key %s: %w", k.ID, err)
		}
		// A 96-bit random nonce per payload, prepended to the
		// ciphertext: no counter to keep across processes.
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, fmt.Errorf("payloadcodec: key %s: %w", k.ID, err)
		}
		c.aeads[k.ID] = aead
	}
	return c, nil
}

// ActiveKeyID is the id of the key that encrypts.
func (c *Codec) ActiveKeyID() string { return c.active }

// Encode encrypts each payload with the active key.
func (c *Codec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	aead := c.aeads[c.active]
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		plain, err := proto.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("payloadcodec: serialise payload: %w", err)
		}
		out[i] = &commonpb.Payload{
			Metadata: map[string][]byte{
				converter.MetadataEncoding: []byte(EncodingEncrypted),
				MetadataKeyID:              []byte(c.active),
			},
			Data: aead.Seal(nil, nil, plain, nil),
		}
	}
	return out, nil
}

// Decode decrypts each encrypted payload with the key it names. A
// payload that is not encrypted passes unchanged: histories written
// before the codec was on still replay.
func (c *Codec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		if string(p.GetMetadata()[converter.MetadataEncoding]) != EncodingEncrypted {
			out[i] = p
			continue
		}
		kid := string(p.GetMetadata()[MetadataKeyID])
		aead, ok := c.aeads[kid]
		if !ok {
			return nil, fmt.Errorf("payloadcodec: payload encrypted with key %q, which this process does not hold (a key rotated in without --prepare, or dropped from the key set)", kid)
		}
		plain, err := aead.Open(nil, nil, p.GetData(), nil)
		if err != nil {
			return nil, fmt.Errorf("payloadcodec: payload encrypted with key %q does not decrypt: damaged or forged", kid)
		}
		var dec commonpb.Payload
		if err := proto.Unmarshal(plain, &dec); err != nil {
			return nil, fmt.Errorf("payloadcodec: decrypted payload does not parse: %w", err)
		}
		out[i] = &dec
	}
	return out, nil
}

// DataConverter is Temporal's default data converter with c applied to
// every payload.
func (c *Codec) DataConverter() converter.DataConverter {
	return converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), c)
}

// FailureConverter converts failures as Temporal's default does, but
// moves each failure's message and stack trace into an encrypted payload
// (EncodeCommonAttributes): an error's text may name a URL or an id.
func (c *Codec) FailureConverter() converter.FailureConverter {
	return temporal.NewDefaultFailureConverter(temporal.DefaultFailureConverterOptions{
		DataConverter: c.DataConverter(), EncodeCommonAttributes: true,
	})
}

var _ converter.PayloadCodec = (*Codec)(nil)
