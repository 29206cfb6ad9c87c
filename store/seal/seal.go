// Package seal encrypts small secrets kept at rest (vendor tokens, signing keys) and derives the
// per-purpose keys they are sealed with from the deployment's one secret. It is the only place
// in ohx that builds an AEAD: every sealed value is AES-256-GCM with a random nonce and
// associated data that binds it to its owner, so a ciphertext copied elsewhere does not open.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// KeySize is the key length: AES-256.
const KeySize = 32

// ErrOpen means a sealed value did not decrypt: wrong key, wrong associated data, or tampered.
var ErrOpen = errors.New("sealed value does not open")

// Derive returns the key of one purpose from the deployment secret: HMAC-SHA256(secret, purpose),
// a PRF, so keys of different purposes are independent (NIST SP 800-108 §4.1,
// https://csrc.nist.gov/pubs/sp/800/108/r1/upd1/final).
func Derive(secret []byte, purpose string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// Key seals and opens values with one AES-256-GCM key. It is safe for concurrent use.
type Key struct {
	aead cipher.AEAD
}

// NewKey returns the Key of a 32-byte key.
func NewKey(k []byte) (*Key, error) {
	if len(k) != KeySize {
		return nil, fmt.Errorf("seal: want a %d-byte key, got %d bytes", KeySize, len(k))
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return &Key{aead: aead}, nil
}

// NonceSize is the length of the nonce that starts every sealed value.
func (k *Key) NonceSize() int { return k.aead.NonceSize() }

// Seal encrypts plain bound to aad and returns nonce ‖ ciphertext. The nonce is random: with
// 96-bit nonces a key seals well under 2^32 values before the collision bound matters (NIST SP
// 800-38D §8.3, https://csrc.nist.gov/pubs/sp/800/38/d/final).
func (k *Key) Seal(plain, aad []byte) []byte {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	_, _ = rand.Read(nonce) // never fails (crypto/rand)
	return k.aead.Seal(nonce, nonce, plain, aad)
}

// Open decrypts a value Seal returned for the same aad. Errors match ErrOpen.
func (k *Key) Open(sealed, aad []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < n+k.aead.Overhead() {
		return nil, fmt.Errorf("seal: %w: too short", ErrOpen)
	}
	plain, err := k.aead.Open(nil, sealed[:n], sealed[n:], aad)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", ErrOpen)
	}
	return plain, nil
}
