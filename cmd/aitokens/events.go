package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"aitokens/pkg/config"
	"aitokens/pkg/devtools/streamreader"
	"aitokens/pkg/eventbus"
	"aitokens/pkg/store"
)

// startEventReader reads the table's stream in this process and publishes its audit events
// through the publish-events function's own handler: to EVENT_BUS_NAME through EventBridge
// (AWS_ENDPOINT_URL_EVENTBRIDGE points it at a local one) when it is set, else as one JSON line
// per event in the log. Its checkpoint in DATA_DIR lets a restarted server go on where it
// stopped (an event in flight at a stop is published again: at least once).
func startEventReader(ctx context.Context, log *slog.Logger, cfg config.Config) (stop func(), err error) {
	pub, err := eventbus.FromConfig(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	reader, err := streamreader.New(ctx, streamreader.Options{Endpoint: cfg.DynamoDBEndpoint, Table: cfg.TableName, Policy: cfg.AWS,
		Handler: pub.Handle, Log: log, Checkpoint: filepath.Join(cfg.DataDir, "events-"+cfg.TableName+".checkpoint.json")})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := reader.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("the event stream reader stopped: events are not published", "error", err.Error())
		}
	}()
	to := "log"
	if cfg.EventBusName != "" {
		to = cfg.EventBusName
	}
	log.Info("publishing lifecycle events", "to", to, "source", cfg.EventSource)
	return func() { cancel(); <-done }, nil
}

// backfill gives every token that has expiresAt but no expiryDay (written before the expiry
// index existed) its index key, so that the sweeper sees it; and with listing, every token
// without the list indexes' keys its keys and its place in the tenant's count. Run once against
// a stack deployed with the indexes; it writes no event and changes no version.
func backfill(listing bool) error {
	ctx := context.Background()
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		return err
	}
	client, err := store.NewClient(ctx, cfg.DynamoDBEndpoint, cfg.AWS)
	if err != nil {
		return err
	}
	n, err := store.BackfillExpiryDays(ctx, client, cfg.TableName)
	fmt.Fprintf(os.Stderr, "%s: %d tokens given their expiry day\n", cfg.TableName, n)
	if err != nil || !listing {
		return err
	}
	n, err = store.BackfillListing(ctx, client, cfg.TableName)
	fmt.Fprintf(os.Stderr, "%s: %d tokens given their list keys and counted\n", cfg.TableName, n)
	return err
}
