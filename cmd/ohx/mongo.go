package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/openhealthexchange/ohx/store"
)

func openMongo(ctx context.Context, cfg Config, log *slog.Logger) (store.Store, error) {
	return nil, errors.New("mongo store not wired yet")
}
