// Package rfc6962 is a small, independent implementation of the RFC 6962 /
// RFC 9162 Merkle tree hash and inclusion- and consistency-proof checks,
// written from the RFCs for tests: our audit log (package audit, on
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

// VerifyConsistency checks a consistency proof between the tree of the
// first first leaves (root firstHash) and of the first second leaves
// (root secondHash), RFC 9162 §2.1.4.2; equal sizes take the empty proof
// and equal roots (RFC 6962 §2.1.2).
func VerifyConsistency(first, second uint64, firstHash, secondHash [32]byte, path [][32]byte) bool {
	switch {
	case first == 0 || first > second:
		return false
	case first == second:
		return len(path) == 0 && firstHash == secondHash
	case len(path) == 0:
		return false
	}
	if first&(first-1) == 0 { // a power of 2: its root is the first node
		path = append([][32]byte{firstHash}, path...)
	}
	fn, sn := first-1, second-1
	for fn&1 == 1 {
		fn >>= 1
		sn >>= 1
	}
	fr, sr := path[0], path[0]
	for _, c := range path[1:] {
		if sn == 0 {
			return false
		}
		if fn&1 == 1 || fn == sn {
			fr, sr = node(c, fr), node(c, sr)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			sr = node(sr, c)
		}
		fn >>= 1
		sn >>= 1
	}
	return fr == firstHash && sr == secondHash && sn == 0
}
