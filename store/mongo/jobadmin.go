package mongo

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/openhealthexchange/ohx/store"
)

// DiscardDeadJob implements store.Jobs: one deleteOne filtered on the dead flag, atomic on its
// document, so a dead letter retried by another handle just before (dead false) is left alone.
func (s *Store) DiscardDeadJob(ctx context.Context, id string) error {
	defer s.jobLock(jobsCollection)()
	res, err := s.jobs().DeleteOne(ctx, bson.D{{Key: fID, Value: id}, {Key: "dead", Value: true}})
	if err != nil {
		return fmt.Errorf("mongo: discard dead job %s: %w", id, err)
	}
	if res.DeletedCount == 0 {
		return fmt.Errorf("mongo: discard dead job %s: %w", id, store.ErrNotFound)
	}
	return nil
}
