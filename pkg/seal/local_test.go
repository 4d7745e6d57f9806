package seal

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"aitokens/pkg/token"
)

func TestLocalRoundTripAndBinding(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys", "master.key")
	s, err := NewLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("master key mode = %v, want 0600", info.Mode().Perm())
	}
	value := []byte("sk-secret-value")
	sealed, err := s.Seal(ctx, acme, value)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed.Ciphertext, value) || bytes.Contains(sealed.WrappedKey, value) {
		t.Fatal("sealed value contains the plain value")
	}
	if got, err := s.Open(ctx, acme, sealed); err != nil || string(got) != string(value) {
		t.Fatalf("Open = %q, %v", got, err)
	}

	// The same file gives the same sealer on the next start.
	again, err := NewLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.Open(ctx, acme, sealed); err != nil || string(got) != string(value) {
		t.Fatalf("reopened sealer: %q, %v", got, err)
	}

	flipped := sealed
	flipped.Ciphertext = append([]byte(nil), sealed.Ciphertext...)
	flipped.Ciphertext[0] ^= 1
	flippedKey := sealed
	flippedKey.WrappedKey = append([]byte(nil), sealed.WrappedKey...)
	flippedKey.WrappedKey[20] ^= 1
	for _, tc := range []struct {
		name   string
		b      Binding
		sealed token.Sealed
	}{
		{"other tenant", Binding{Tenant: "other", ID: "openai"}, sealed},
		{"other id", Binding{Tenant: "acme", ID: "anthropic"}, sealed},
		{"an egress digest added", Binding{Tenant: "acme", ID: "openai", Egress: egressA}, sealed},
		{"flipped ciphertext byte", acme, flipped},
		{"flipped wrapped key byte", acme, flippedKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Open(ctx, tc.b, tc.sealed); err == nil {
				t.Fatal("a value opened where it must not")
			}
		})
	}
	if _, err := NewLocalFromKey(bytes.Repeat([]byte{7}, 32)).Open(ctx, acme, sealed); err == nil {
		t.Fatal("another master key opened the value")
	}
}

var (
	acme    = Binding{Tenant: "acme", ID: "openai"}
	egressA = (token.Egress{AllowedHosts: []string{"api.openai.com"}, Inject: token.Inject{In: "header", Name: "Authorization", Template: "Bearer {{value}}"}}).Digest()
	egressB = (token.Egress{AllowedHosts: []string{"evil.example"}, Inject: token.Inject{In: "header", Name: "Authorization", Template: "Bearer {{value}}"}}).Digest()
)

// A value sealed under an egress policy opens only with that policy's digest: not with
// another policy's, and not as a token without one. A token without a policy keeps exactly the
// additional data it always had, so values sealed before policies existed still open.
func TestLocalEgressBinding(t *testing.T) {
	ctx := context.Background()
	s := NewLocalFromKey(bytes.Repeat([]byte{5}, 32))
	bound := Binding{Tenant: "acme", ID: "openai", Egress: egressA}
	sealed, err := s.Seal(ctx, bound, []byte("sk-bound"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Open(ctx, bound, sealed); err != nil || string(got) != "sk-bound" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	for name, b := range map[string]Binding{
		"another policy": {Tenant: "acme", ID: "openai", Egress: egressB},
		"no policy":      acme,
	} {
		if _, err := s.Open(ctx, b, sealed); err == nil {
			t.Errorf("%s: the value opened", name)
		}
	}
	if got, want := string(acme.AdditionalData()), `{"tenant":"acme","tokenId":"openai"}`; got != want {
		t.Errorf("additional data without a policy %s, want today's %s", got, want)
	}
	if got, want := string(bound.AdditionalData()), `{"egress":"`+egressA+`","tenant":"acme","tokenId":"openai"}`; got != want {
		t.Errorf("additional data %s, want %s", got, want)
	}
}

// The cache keys on the whole binding: a value opened under one policy is not served to an
// open under another (that must reach the sealer, and fail there).
func TestCacheKeysOnEgress(t *testing.T) {
	ctx := context.Background()
	c := NewCache(NewLocalFromKey(bytes.Repeat([]byte{6}, 32)), 10, time.Minute)
	bound := Binding{Tenant: "acme", ID: "openai", Egress: egressA}
	sealed, err := c.Seal(ctx, bound, []byte("sk-cached"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open(ctx, bound, sealed); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Open(ctx, Binding{Tenant: "acme", ID: "openai", Egress: egressB}, sealed); err == nil {
		t.Fatal("the cache served a value opened under another policy")
	}
	if _, err := c.Open(ctx, acme, sealed); err == nil {
		t.Fatal("the cache served a policy-bound value to an open without the policy")
	}
}

func TestDigest(t *testing.T) {
	d, err := Digest([]byte("sk-one"))
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := Digest([]byte("sk-one"))
	if bytes.Equal(d, d2) {
		t.Fatal("two digests of one value are equal: salt missing")
	}
	if !DigestMatches(d, []byte("sk-one")) || DigestMatches(d, []byte("sk-two")) || DigestMatches(nil, []byte("sk-one")) {
		t.Fatal("DigestMatches answered wrong")
	}
}

func BenchmarkLocalSeal(b *testing.B) {
	s := NewLocalFromKey(bytes.Repeat([]byte{1}, 32))
	value := []byte("sk-proj-0123456789abcdefghijklmnopqrstuvwxyz")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Seal(context.Background(), acme, value); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLocalOpen(b *testing.B) {
	s := NewLocalFromKey(bytes.Repeat([]byte{1}, 32))
	sealed, _ := s.Seal(context.Background(), acme, []byte("sk-proj-0123456789abcdefghijklmnopqrstuvwxyz"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Open(context.Background(), acme, sealed); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDigest(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Digest([]byte("sk-proj-0123456789")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnvelope is the local work of either sealer once it holds a plaintext data key:
// AES-256-GCM over a value with the {tenant, tokenId} additional data, and back.
func BenchmarkEnvelope(b *testing.B) {
	key := bytes.Repeat([]byte{3}, 32)
	value := []byte("sk-proj-0123456789abcdefghijklmnopqrstuvwxyz")
	nonce, ct, _ := EncryptValue(key, acme, value)
	b.Run("encrypt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := EncryptValue(key, acme, value); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decrypt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecryptValue(key, acme, nonce, ct); err != nil {
				b.Fatal(err)
			}
		}
	})
}
