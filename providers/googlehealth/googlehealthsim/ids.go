package googlehealthsim

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"

	"github.com/openhealthexchange/ohx/providers/sim"
)

// digest is a 64-bit FNV-1a hash of the world's seed and parts: identifiers derived from it are
// stable for one seed and differ between seeds, without any randomness outside the seed.
func (s *Simulator) digest(parts ...string) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(s.world.Seed))
	h.Write(b[:])
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// healthUserID is the person's Google Health user id: letters, digits and hyphens, 1–63 long, as
// getIdentity documents (https://developers.google.com/health/reference/rest/v4/users/getIdentity).
func (s *Simulator) healthUserID(p *sim.Person) string {
	return fmt.Sprintf("hu-%012x", s.digest("healthUserId", p.Key)>>16)
}

// pointName is a data point's resource name, users/{healthUserId}/dataTypes/{type}/dataPoints/{id}
// (https://developers.google.com/health/reference/rest/v4/users.dataTypes.dataPoints).
func (s *Simulator) pointName(p *sim.Person, dataType, key string) string {
	return fmt.Sprintf("users/%s/dataTypes/%s/dataPoints/%016x", s.ids[p.Key], dataType, s.digest("point", p.Key, dataType, key))
}

// deviceName is a paired device's resource name, users/{healthUserId}/pairedDevices/{id}.
func (s *Simulator) deviceName(p *sim.Person, device string) string {
	return fmt.Sprintf("users/%s/pairedDevices/%d", s.ids[p.Key], s.digest("device", p.Key, device)%1_000_000_000)
}
