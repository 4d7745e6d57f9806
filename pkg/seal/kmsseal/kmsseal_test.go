package kmsseal_test

import (
	"bytes"
	"context"
	"maps"
	"os"
	"testing"
	"time"

	"aitokens/pkg/awsretry"
	"aitokens/pkg/config"
	"aitokens/pkg/devtools/kmstest"
	"aitokens/pkg/seal"
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
	sealed, err := k.Seal(ctx, acme, value)
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
	got, err := k.Open(ctx, acme, sealed)
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
	sealed, err := k.Seal(ctx, acme, []byte("sk-kms-secret"))
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
		name   string
		b      seal.Binding
		sealed token.Sealed
	}{
		{"context swapped to another tenant", seal.Binding{Tenant: "globex", ID: "openai"}, sealed},
		{"context swapped to another id", seal.Binding{Tenant: "acme", ID: "anthropic"}, sealed},
		{"an egress digest added", seal.Binding{Tenant: "acme", ID: "openai", Egress: egressA}, sealed},
		{"flipped ciphertext byte", acme, flipped},
		{"flipped wrapped key byte", acme, wrapped},
	} {
		if _, err := k.Open(ctx, c.b, c.sealed); err == nil {
			t.Errorf("%s: opened", c.name)
		}
	}
}

var (
	acme    = seal.Binding{Tenant: "acme", ID: "openai"}
	egressA = (token.Egress{AllowedHosts: []string{"api.openai.com"}, Inject: token.Inject{In: "header", Name: "Authorization", Template: "Bearer {{value}}"}}).Digest()
	egressB = (token.Egress{AllowedHosts: []string{"evil.example"}, Inject: token.Inject{In: "header", Name: "Authorization", Template: "Bearer {{value}}"}}).Digest()
)

// A token with an egress policy sends its digest as a third key of the encryption context (to
// GenerateDataKey and Decrypt alike), and its data key opens under that context only.
func TestEgressInEncryptionContext(t *testing.T) {
	ctx := context.Background()
	k, srv := newSealer(t)
	bound := seal.Binding{Tenant: "acme", ID: "openai", Egress: egressA}
	sealed, err := k.Seal(ctx, bound, []byte("sk-bound"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.Open(ctx, bound, sealed); err != nil || string(got) != "sk-bound" {
		t.Fatalf("Open: %q %v", got, err)
	}
	want := map[string]string{"tenant": "acme", "tokenId": "openai", "egress": egressA}
	for _, c := range srv.Contexts() {
		if !maps.Equal(c, want) {
			t.Fatalf("encryption context %v, want %v", c, want)
		}
	}
	for name, b := range map[string]seal.Binding{
		"another policy's digest": {Tenant: "acme", ID: "openai", Egress: egressB},
		"no policy":               acme,
	} {
		_, err := k.Open(ctx, b, sealed)
		if e := token.As(err); err == nil || e.Code != "InvalidCiphertextException" {
			t.Errorf("%s: %v, want the key service to refuse the context", name, err)
		}
	}
	// The test KMS admits what template.yaml's conditions admit: an unknown key or a malformed
	// digest is refused as AWS would (AccessDenied), before any key is made.
	_, err = k.Seal(ctx, seal.Binding{Tenant: "acme", ID: "openai", Egress: "not-a-digest"}, []byte("v"))
	if e := token.As(err); err == nil || e.Code != "AccessDeniedException" {
		t.Errorf("a malformed egress digest: %v, want AccessDenied", err)
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
			_, err := k.Seal(ctx, acme, []byte("v"))
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
		if _, err := k.Seal(context.Background(), acme, []byte("sk-proj-0123456789")); err != nil {
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
	sealed, err := k.Seal(context.Background(), acme, []byte("sk-stall"))
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
		"Seal": func() error { _, err := k.Seal(context.Background(), acme, []byte("sk-stall")); return err },
		"Open": func() error { _, err := k.Open(context.Background(), acme, sealed); return err },
	} {
		start := time.Now()
		err := call()
		if token.KindOf(err) != token.Unavailable || time.Since(start) > 5*time.Second {
			t.Fatalf("%s on a stalled KMS: %v after %v", name, err, time.Since(start))
		}
	}
}
