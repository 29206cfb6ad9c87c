package main

import (
	"context"
	"log/slog"

	"github.com/openhealthexchange/ohx/store"
	"github.com/openhealthexchange/ohx/store/mongo"
)

// openMongo opens the MongoDB store named by OHX_MONGODB_URI and OHX_MONGODB_DATABASE.
func openMongo(ctx context.Context, cfg Config, log *slog.Logger) (store.Store, error) {
	return mongo.Open(ctx, cfg.MongoURI, cfg.MongoDatabase, mongo.Options{HistoryVersions: cfg.HistoryVersions}, log)
}
