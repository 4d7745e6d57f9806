package seal

import (
	"context"
	"crypto/sha256"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"aitokens/pkg/metrics"
	"aitokens/pkg/token"
)

// Cache is a Sealer that remembers the values it opened, so that a warm resolve costs no KMS
// call. An entry is keyed by tenant, token id and a digest of the wrapped data key, nonce and
// ciphertext: a token deleted and created again under the same id has a new envelope and misses.
// It is bounded in entries and in age, lives in the process only, and is never logged; the
// caller still reads the token on every call, so deletion, expiry and restriction apply at once.
type Cache struct {
	inner  Sealer
	values *expirable.LRU[cacheKey, []byte]
}

type cacheKey struct {
	// The whole binding, egress digest included: a policy rewritten in the table must miss
	// here and fail in the key service, not be served the value opened under the old one.
	binding  Binding
	envelope [sha256.Size]byte
}

// NewCache wraps inner with a cache of at most size opened values, each kept for at most ttl.
func NewCache(inner Sealer, size int, ttl time.Duration) *Cache {
	return &Cache{inner: inner, values: expirable.NewLRU[cacheKey, []byte](size, nil, ttl)}
}

// Seal is the inner sealer's: nothing is cached on the way in.
func (c *Cache) Seal(ctx context.Context, b Binding, value []byte) (token.Sealed, error) {
	return c.inner.Seal(ctx, b, value)
}

// Open returns the cached value of this very envelope, or opens it and remembers it.
func (c *Cache) Open(ctx context.Context, b Binding, s token.Sealed) ([]byte, error) {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(s.KeyID), {0}, []byte(s.Algorithm), {0}, s.WrappedKey, {0}, s.Nonce, {0}, s.Ciphertext} {
		h.Write(part)
	}
	k := cacheKey{binding: b}
	h.Sum(k.envelope[:0])
	if v, ok := c.values.Get(k); ok {
		metrics.FromContext(ctx).Add(metrics.CacheHits, 1)
		return v, nil
	}
	metrics.FromContext(ctx).Add(metrics.CacheMisses, 1)
	v, err := c.inner.Open(ctx, b, s)
	if err != nil {
		return nil, err
	}
	c.values.Add(k, v)
	return v, nil
}
