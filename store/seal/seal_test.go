package seal

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealOpen(t *testing.T) {
	k, err := NewKey(Derive([]byte("deployment secret of at least 32 bytes"), "test"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := k.Seal([]byte("token"), []byte("conn-1")), k.Seal([]byte("token"), []byte("conn-1"))
	if bytes.Equal(a, b) {
		t.Error("two seals of one value are equal: the nonce is not random")
	}
	if got, err := k.Open(a, []byte("conn-1")); err != nil || string(got) != "token" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := k.Open(a, []byte("conn-2")); !errors.Is(err, ErrOpen) {
		t.Errorf("open with other associated data: err = %v, want ErrOpen", err)
	}
	a[len(a)-1] ^= 1
	if _, err := k.Open(a, []byte("conn-1")); !errors.Is(err, ErrOpen) {
		t.Errorf("tampered value opened: err = %v", err)
	}
	if _, err := k.Open(a[:5], nil); !errors.Is(err, ErrOpen) {
		t.Errorf("short value: err = %v", err)
	}
	other, _ := NewKey(Derive([]byte("deployment secret of at least 32 bytes"), "other"))
	if _, err := other.Open(b, []byte("conn-1")); !errors.Is(err, ErrOpen) {
		t.Errorf("another purpose's key opened the value: err = %v", err)
	}
	if _, err := NewKey([]byte("short")); err == nil {
		t.Error("a 5-byte key was accepted")
	}
}

func TestDeriveSeparatesPurposes(t *testing.T) {
	s := []byte("secret")
	if bytes.Equal(Derive(s, "a"), Derive(s, "b")) || !bytes.Equal(Derive(s, "a"), Derive(s, "a")) {
		t.Error("Derive is not a per-purpose function")
	}
	if len(Derive(s, "a")) != KeySize {
		t.Errorf("derived key has %d bytes", len(Derive(s, "a")))
	}
}
