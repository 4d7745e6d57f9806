// Package seal encrypts token values with envelope encryption: a fresh AES-256 data key per
// value, AES-256-GCM over the value, the data key wrapped by a master key (a local file here;
// AWS KMS in pkg/seal/kmsseal). Tenant and token id are bound as additional data, so a sealed value
// copied to another token does not open.
package seal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"fmt"

	"golang.org/x/crypto/argon2"

	"aitokens/pkg/token"
)

// Sealer seals and opens token values.
type Sealer interface {
	Seal(ctx context.Context, tenant, id string, value []byte) (token.Sealed, error)
	Open(ctx context.Context, tenant, id string, sealed token.Sealed) ([]byte, error)
}

// Context is the pair that binds a value to its token: the KMS encryption context and the GCM
// additional data. It holds ids only, never secret material (CloudTrail logs it in plain).
func Context(tenant, id string) map[string]string {
	return map[string]string{"tenant": tenant, "tokenId": id}
}

// AdditionalData is Context as canonical JSON (encoding/json sorts map keys).
func AdditionalData(tenant, id string) []byte {
	b, _ := json.Marshal(Context(tenant, id))
	return b
}

// EncryptValue seals value under a fresh nonce with dataKey, binding tenant and id.
func EncryptValue(dataKey []byte, tenant, id string, value []byte) (nonce, ciphertext []byte, err error) {
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, nil, err
	}
	nonce = make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, err
	}
	return nonce, aead.Seal(nil, nonce, value, AdditionalData(tenant, id)), nil
}

// DecryptValue opens what EncryptValue sealed; it fails if tenant or id differ.
func DecryptValue(dataKey []byte, tenant, id string, nonce, ciphertext []byte) ([]byte, error) {
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, err
	}
	if len(nonce) != aead.NonceSize() {
		return nil, fmt.Errorf("seal: bad nonce length")
	}
	plain, err := aead.Open(nil, nonce, ciphertext, AdditionalData(tenant, id))
	if err != nil {
		return nil, fmt.Errorf("seal: value does not open for this token")
	}
	return plain, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return cipher.NewGCM(block)
}

// Wipe overwrites a plaintext data key once it is no longer needed.
func Wipe(b []byte) { clear(b) }

// Argon2id parameters of the value digest: memory-hard so that a stolen table does not make
// weak values cheap to guess, small enough to cost a few milliseconds per write.
const (
	digestSaltLen = 16
	digestTime    = 1
	digestMemory  = 8 * 1024 // KiB
	digestThreads = 1
	digestLen     = 32
)

// Digest returns salt||argon2id(value, salt): what an update compares a re-sent value against.
func Digest(value []byte) ([]byte, error) {
	salt := make([]byte, digestSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	return append(salt, argon2.IDKey(value, salt, digestTime, digestMemory, digestThreads, digestLen)...), nil
}

// DigestMatches reports whether value is the one digest was made from, in constant time.
func DigestMatches(digest, value []byte) bool {
	if len(digest) != digestSaltLen+digestLen {
		return false
	}
	salt := digest[:digestSaltLen]
	got := argon2.IDKey(value, salt, digestTime, digestMemory, digestThreads, digestLen)
	return subtle.ConstantTimeCompare(got, digest[digestSaltLen:]) == 1
}
