package fitbitsim

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/openhealthexchange/ohx/providers/sim"
)

// hash64 is a stable hash of its parts: ids derived from it are the same in every run.
func hash64(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return h.Sum64()
}

// userID is a person's Fitbit encodedId: six characters of [0-9A-Z], as Fitbit's are ("ABC123",
// "22BWR7"), derived from the person's stable Key so that a demo's users keep their ids.
func userID(p *sim.Person) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	h := hash64("fitbit-user", p.Key)
	var b strings.Builder
	for range 6 {
		b.WriteByte(alphabet[h%36])
		h /= 36
	}
	return b.String()
}

// deviceID is the numeric id Fitbit gives a paired device ("816713257"), stable per person, device
// and seed.
func (s *Simulator) deviceID(p *sim.Person, device string) string {
	return fmt.Sprint(100000000 + hash64("fitbit-device", fmt.Sprint(s.w.Seed), p.Key, device)%900000000)
}

// deviceMAC is a device's MAC address as devices.json writes it (12 hex digits, no separators).
func (s *Simulator) deviceMAC(p *sim.Person, device string) string {
	return fmt.Sprintf("%012X", hash64("fitbit-mac", fmt.Sprint(s.w.Seed), p.Key, device)&0xFFFFFFFFFFFF)
}

// secret is an opaque random string for tokens, codes and nonces: credentials, not data, so
// crypto/rand and not the world's seed.
func secret() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
