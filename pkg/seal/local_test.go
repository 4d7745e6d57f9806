package seal

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

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
	sealed, err := s.Seal(ctx, "acme", "openai", value)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed.Ciphertext, value) || bytes.Contains(sealed.WrappedKey, value) {
		t.Fatal("sealed value contains the plain value")
	}
	if got, err := s.Open(ctx, "acme", "openai", sealed); err != nil || string(got) != string(value) {
		t.Fatalf("Open = %q, %v", got, err)
	}

	// The same file gives the same sealer on the next start.
	again, err := NewLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := again.Open(ctx, "acme", "openai", sealed); err != nil || string(got) != string(value) {
		t.Fatalf("reopened sealer: %q, %v", got, err)
	}

	flipped := sealed
	flipped.Ciphertext = append([]byte(nil), sealed.Ciphertext...)
	flipped.Ciphertext[0] ^= 1
	flippedKey := sealed
	flippedKey.WrappedKey = append([]byte(nil), sealed.WrappedKey...)
	flippedKey.WrappedKey[20] ^= 1
	for _, tc := range []struct {
		name, tenant, id string
		sealed           token.Sealed
	}{
		{"other tenant", "other", "openai", sealed},
		{"other id", "acme", "anthropic", sealed},
		{"flipped ciphertext byte", "acme", "openai", flipped},
		{"flipped wrapped key byte", "acme", "openai", flippedKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Open(ctx, tc.tenant, tc.id, tc.sealed); err == nil {
				t.Fatal("a value opened where it must not")
			}
		})
	}
	if _, err := NewLocalFromKey(bytes.Repeat([]byte{7}, 32)).Open(ctx, "acme", "openai", sealed); err == nil {
		t.Fatal("another master key opened the value")
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
		if _, err := s.Seal(context.Background(), "acme", "openai", value); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLocalOpen(b *testing.B) {
	s := NewLocalFromKey(bytes.Repeat([]byte{1}, 32))
	sealed, _ := s.Seal(context.Background(), "acme", "openai", []byte("sk-proj-0123456789abcdefghijklmnopqrstuvwxyz"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Open(context.Background(), "acme", "openai", sealed); err != nil {
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
	nonce, ct, _ := EncryptValue(key, "acme", "openai", value)
	b.Run("encrypt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := EncryptValue(key, "acme", "openai", value); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decrypt", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecryptValue(key, "acme", "openai", nonce, ct); err != nil {
				b.Fatal(err)
			}
		}
	})
}
