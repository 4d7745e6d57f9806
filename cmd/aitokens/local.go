package main

import (
	"context"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"aitokens/pkg/config"
	"aitokens/pkg/devtools/ddblocal"
	"aitokens/pkg/store"
)

// endpointFile is where `serve --dev` leaves the address of the DynamoDB Local it started, so
// that `invoke` uses the same database instead of opening the same files a second time.
func endpointFile(dataDir string) string { return filepath.Join(dataDir, "dynamodb.endpoint") }

// localDynamoDB returns the development database: $DYNAMODB_ENDPOINT, the one a running
// `serve --dev` started, or a new DynamoDB Local on DATA_DIR/dynamodb. It creates the table.
func localDynamoDB(ctx context.Context, log *slog.Logger, cfg config.Config) (endpoint string, stop func(), err error) {
	stop = func() {}
	dataDir, table := cfg.DataDir, cfg.TableName
	endpoint = cfg.DynamoDBEndpoint
	if endpoint == "" {
		if raw, err := os.ReadFile(endpointFile(dataDir)); err == nil && answers(strings.TrimSpace(string(raw))) {
			endpoint = strings.TrimSpace(string(raw))
		}
	}
	if endpoint == "" {
		dbPath := filepath.Join(dataDir, "dynamodb")
		log.Info("starting DynamoDB Local", "dbPath", dbPath)
		db, err := ddblocal.Start(ctx, ddblocal.Options{DBPath: dbPath, Jar: cfg.DynamoDBLocalJar})
		if err != nil {
			return "", stop, err
		}
		endpoint = db.Endpoint
		os.WriteFile(endpointFile(dataDir), []byte(endpoint), 0o600)
		stop = func() {
			os.Remove(endpointFile(dataDir))
			db.Stop()
		}
	}
	client, err := store.NewClient(ctx, endpoint, cfg.AWS)
	if err == nil {
		err = store.CreateTable(ctx, client, table)
	}
	if err != nil {
		stop()
		return "", func() {}, err
	}
	return endpoint, stop, nil
}

func answers(endpoint string) bool {
	u, err := url.Parse(endpoint)
	if err != nil {
		return false
	}
	conn, err := net.DialTimeout("tcp", u.Host, 500*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}
