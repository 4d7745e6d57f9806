package testenv

import (
	"context"
	"testing"
	"time"

	"aitokens/pkg/config"
	"aitokens/pkg/devtools/kmstest"
	"aitokens/pkg/seal"
	"aitokens/pkg/seal/kmsseal"
	"aitokens/pkg/service"
	"aitokens/pkg/store"
)

// KMSService is the real service as the relay and resolve-token functions run it, for one
// test: a fresh table on DynamoDB Local, the KMS sealer against a test KMS (closed when t ends)
// and opened values behind the resolve cache. Its store and service take the time from now
// (time.Now unless a test steps it). The relay's tests and benchmark and the relay client's
// end-to-end tests build it here, so they all test the same wiring.
func KMSService(t testing.TB, now func() time.Time) (*service.Service, *kmstest.Server, config.Config) {
	t.Helper()
	kms := kmstest.New()
	t.Cleanup(kms.Close)
	kms.UseFromEnv(t)
	cfg, err := config.Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.TableName, cfg.DynamoDBEndpoint, cfg.AWS, cfg.KMSKeyID = NewTable(t), Endpoint(), Policy, "alias/ai-tokens"
	sealer, err := kmsseal.FromConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := service.New(store.New(Client(), cfg.TableName).WithClock(now), seal.NewCache(sealer, 100, time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	return svc, kms, cfg
}
