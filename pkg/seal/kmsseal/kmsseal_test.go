package kmsseal_test

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"aitokens/pkg/awsretry"
	"aitokens/pkg/config"
	"aitokens/pkg/devtools/kmstest"
	"aitokens/pkg/seal/kmsseal"
	"aitokens/pkg/token"
)

func newSealer(t *testing.T) (*kmsseal.KMS, *kmstest.Server) {
	t.Helper()
	srv := kmstest.New()
	t.Cleanup(srv.Close)
	srv.UseFromEnv(t)
	t.Setenv("KMS_KEY_ID", "alias/ai-tokens")
	s, err := kmsseal.FromConfig(context.Background(), envConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	k, ok := s.(*kmsseal.KMS)
	if !ok {
		t.Fatalf("KMS_KEY_ID set, got %T", s)
	}
	return k, srv
}

func TestRoundTripAndContext(t *testing.T) {
	ctx := context.Background()
	k, srv := newSealer(t)
	value := []byte("sk-kms-secret")
	sealed, err := k.Seal(ctx, "acme", "openai", value)
	if err != nil {
		t.Fatal(err)
	}
	if sealed.Algorithm != kmsseal.Algorithm || sealed.KeyID != kmstest.KeyARN {
		t.Fatalf("sealed with %q %q", sealed.Algorithm, sealed.KeyID)
	}
	for _, dk := range srv.DataKeys() {
		if bytes.Contains(sealed.WrappedKey, dk) || bytes.Contains(sealed.Ciphertext, dk) {
			t.Fatal("the plaintext data key is in the sealed value")
		}
	}
	got, err := k.Open(ctx, "acme", "openai", sealed)
	if err != nil || string(got) != string(value) {
		t.Fatalf("Open: %q %v", got, err)
	}
	for _, c := range srv.Contexts() {
		if len(c) != 2 || c["tenant"] != "acme" || c["tokenId"] != "openai" {
			t.Fatalf("encryption context %v, want exactly tenant and tokenId", c)
		}
	}
	if calls := srv.Calls(); calls["GenerateDataKey"] != 1 || calls["Decrypt"] != 1 {
		t.Fatalf("calls %v", calls)
	}
}

func TestValueDoesNotOpenElsewhere(t *testing.T) {
	ctx := context.Background()
	k, _ := newSealer(t)
	sealed, err := k.Seal(ctx, "acme", "openai", []byte("sk-kms-secret"))
	if err != nil {
		t.Fatal(err)
	}
	flipped := sealed
	flipped.Ciphertext = bytes.Clone(sealed.Ciphertext)
	flipped.Ciphertext[3] ^= 0x40
	wrapped := sealed
	wrapped.WrappedKey = bytes.Clone(sealed.WrappedKey)
	wrapped.WrappedKey[len(wrapped.WrappedKey)-1] ^= 1
	for _, c := range []struct {
		name, tenant, id string
		sealed           token.Sealed
	}{
		{"context swapped to another tenant", "globex", "openai", sealed},
		{"context swapped to another id", "acme", "anthropic", sealed},
		{"flipped ciphertext byte", "acme", "openai", flipped},
		{"flipped wrapped key byte", "acme", "openai", wrapped},
	} {
		if _, err := k.Open(ctx, c.tenant, c.id, c.sealed); err == nil {
			t.Errorf("%s: opened", c.name)
		}
	}
}

func TestFaults(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name     string
		setup    func(*kmstest.Server)
		wantKind token.Kind
		calls    int
	}{
		{"throttled twice, then served", func(s *kmstest.Server) { s.Throttle(2) }, "", 3},
		{"throttled forever", func(s *kmstest.Server) { s.Throttle(-1) }, token.Unavailable, 4},
		{"access denied", func(s *kmstest.Server) { s.Refuse("AccessDeniedException") }, token.Dependency, 1},
		{"disabled key", func(s *kmstest.Server) { s.Refuse("DisabledException") }, token.Dependency, 1},
		{"KMS down", func(s *kmstest.Server) { s.Close() }, token.Unavailable, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k, srv := newSealer(t)
			c.setup(srv)
			_, err := k.Seal(ctx, "acme", "openai", []byte("v"))
			if c.wantKind == "" && err != nil || c.wantKind != "" && token.KindOf(err) != c.wantKind {
				t.Fatalf("err %v, want kind %q", err, c.wantKind)
			}
			if got := srv.Calls()["GenerateDataKey"]; got != c.calls {
				t.Fatalf("%d calls, want %d", got, c.calls)
			}
		})
	}
}

// envConfig is the configuration the environment gives, with the test policy (no backoff).
func envConfig(t testing.TB) config.Config {
	t.Helper()
	cfg, err := config.Load(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	cfg.AWS.Backoff = awsretry.NoBackoff
	return cfg
}

func TestFromConfigWithoutKMSUsesLocalSealer(t *testing.T) {
	t.Setenv("KMS_KEY_ID", "")
	t.Setenv("MASTER_KEY_FILE", t.TempDir()+"/master.key")
	s, err := kmsseal.FromConfig(context.Background(), envConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.(*kmsseal.KMS); ok {
		t.Fatal("KMS sealer without KMS_KEY_ID")
	}
	t.Setenv("MASTER_KEY_FILE", "")
	if _, err := kmsseal.FromConfig(context.Background(), envConfig(t)); err == nil {
		t.Fatal("no sealer configured, no error")
	}
}

func BenchmarkSealWithTestKMS(b *testing.B) {
	srv := kmstest.New()
	defer srv.Close()
	srv.UseFromEnv(b)
	client, _ := kmsseal.NewClient(context.Background(), envConfig(b).AWS)
	k := kmsseal.New(client, "alias/x")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Seal(context.Background(), "acme", "openai", []byte("sk-proj-0123456789")); err != nil {
			b.Fatal(err)
		}
	}
}

// A stalled KMS costs at most the attempts' deadlines: Seal and Open end unavailable, so the
// request gets its 503 instead of hanging.
func TestStalledKMSIsUnavailableInTime(t *testing.T) {
	srv := kmstest.New()
	t.Cleanup(srv.Close)
	srv.UseFromEnv(t)
	policy := envConfig(t).AWS
	policy.AttemptTimeout, policy.MaxAttempts = 200*time.Millisecond, 2
	client, err := kmsseal.NewClient(context.Background(), policy)
	if err != nil {
		t.Fatal(err)
	}
	k := kmsseal.New(client, "alias/ai-tokens")
	sealed, err := k.Seal(context.Background(), "acme", "openai", []byte("sk-stall"))
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	defer close(release)
	srv.OnCall(func(string) {
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
	})
	for name, call := range map[string]func() error{
		"Seal": func() error { _, err := k.Seal(context.Background(), "acme", "openai", []byte("sk-stall")); return err },
		"Open": func() error { _, err := k.Open(context.Background(), "acme", "openai", sealed); return err },
	} {
		start := time.Now()
		err := call()
		if token.KindOf(err) != token.Unavailable || time.Since(start) > 5*time.Second {
			t.Fatalf("%s on a stalled KMS: %v after %v", name, err, time.Since(start))
		}
	}
}
