// Package rfc6962 is a small, independent implementation of the RFC 6962 /
// RFC 9162 Merkle tree hash and inclusion-proof check, written from the
// RFCs for tests: our audit log (package audit, on
// golang.org/x/mod/sumdb/tlog) is checked against it, so that an error
// shared by the library and our use of it would still be caught.
package rfc6962

import (
	"bytes"
	"crypto/sha256"
)

// LeafHash is SHA-256(0x00 || data), RFC 6962 §2.1.
func LeafHash(data []byte) [32]byte { return sha256.Sum256(append([]byte{0}, data...)) }

// node is SHA-256(0x01 || left || right).
func node(l, r [32]byte) [32]byte {
	return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
}

// MTH is the Merkle Tree Hash of hashed leaves, RFC 6962 §2.1.
func MTH(leaves [][32]byte) [32]byte {
	switch n := len(leaves); n {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return leaves[0]
	default:
		k := 1
		for k*2 < n {
			k *= 2
		}
		return node(MTH(leaves[:k]), MTH(leaves[k:]))
	}
}

// VerifyInclusion checks an inclusion proof, RFC 9162 §2.1.3.2.
func VerifyInclusion(index, size uint64, leaf [32]byte, path [][32]byte, root [32]byte) bool {
	if index >= size {
		return false
	}
	fn, sn, r := index, size-1, leaf
	for _, p := range path {
		if sn == 0 {
			return false
		}
		if fn&1 == 1 || fn == sn {
			r = node(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = node(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	return sn == 0 && bytes.Equal(r[:], root[:])
}
