// Package seal encrypts token values with envelope encryption: a fresh AES-256 data key per
// value, AES-256-GCM over the value, the data key wrapped by a master key (a local file here;
// AWS KMS in pkg/seal/kmsseal). Tenant and token id (and the digest of the token's egress
// policy, when it has one) are bound as additional data, so a sealed value copied to another
// token, or left under a policy rewritten behind the service's back, does not open.
package seal

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"aitokens/pkg/token"
)

// Sealer seals and opens token values.
type Sealer interface {
	Seal(ctx context.Context, b Binding, value []byte) (token.Sealed, error)
	Open(ctx context.Context, b Binding, sealed token.Sealed) ([]byte, error)
}

// Binding is what a value is sealed to: its token, and the digest of the token's egress policy
// ("" when it has none). Open takes it from the token as read, never from a stored copy, so a
// policy changed in the table gives another context and the value does not open.
type Binding struct {
	Tenant, ID string
	Egress     string // token.Egress.Digest(), or ""
}

// BindingOf is the binding of a token as read or about to be created.
func BindingOf(t token.Token) Binding {
	b := Binding{Tenant: t.Tenant, ID: t.ID}
	if t.Egress != nil {
		b.Egress = t.Egress.Digest()
	}
	return b
}

// ContextKeys are every key an encryption context may hold (template.yaml's KMS conditions list
// exactly these): egress only for a token with a policy.
var ContextKeys = []string{"tenant", "tokenId", "egress"}

// Context is what binds a value to its token: the KMS encryption context and the GCM
// additional data. It holds ids and a digest only, never secret material (CloudTrail logs it in
// plain). A token without a policy has exactly the pair it always had, so its values still open.
func (b Binding) Context() map[string]string {
	c := map[string]string{"tenant": b.Tenant, "tokenId": b.ID}
	if b.Egress != "" {
		c["egress"] = b.Egress
	}
	return c
}

// Bounds of an encryption context (issue 27). The KMS API reference bounds an encryption
// context where a grant constrains it: "up to 8 encryption context pairs", each value "cannot
// exceed 384 characters" (CreateGrant, GrantConstraints:
// https://docs.aws.amazon.com/kms/latest/APIReference/API_GrantConstraints.html); the
// "Encryption context" page (https://docs.aws.amazon.com/kms/latest/developerguide/encrypt_context.html)
// states no total, so MaxContextBytes takes the 4 KB that KMS emulators enforce, the smallest
// total cited. A context within all three is one KMS takes and a grant can pin; the service's
// is far inside (seal's limits_test.go computes its largest from the tenant and id patterns),
// and CheckContext refuses one that is not before KMS is called.
const (
	MaxContextPairs      = 8
	MaxContextValueChars = 384
	MaxContextBytes      = 4096
)

// CheckContext refuses an encryption context over the bounds above.
func CheckContext(c map[string]string) error {
	total := 0
	for k, v := range c {
		if n := utf8.RuneCountInString(v); n > MaxContextValueChars {
			return fmt.Errorf("seal: encryption context value of %s is %d characters, over %d", k, n, MaxContextValueChars)
		}
		total += len(k) + len(v)
	}
	switch {
	case len(c) > MaxContextPairs:
		return fmt.Errorf("seal: encryption context of %d pairs, over %d", len(c), MaxContextPairs)
	case total > MaxContextBytes:
		return fmt.Errorf("seal: encryption context of %d bytes, over %d", total, MaxContextBytes)
	}
	return nil
}

// AdditionalData is Context as canonical JSON (encoding/json sorts map keys).
func (b Binding) AdditionalData() []byte {
	out, _ := json.Marshal(b.Context())
	return out
}

// EncryptValue seals value under a fresh nonce with dataKey, binding it to b.
func EncryptValue(dataKey []byte, b Binding, value []byte) (nonce, ciphertext []byte, err error) {
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, nil, err
	}
	nonce = make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, err
	}
	return nonce, aead.Seal(nil, nonce, value, b.AdditionalData()), nil
}

// DecryptValue opens what EncryptValue sealed; it fails if any part of the binding differs.
func DecryptValue(dataKey []byte, b Binding, nonce, ciphertext []byte) ([]byte, error) {
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, err
	}
	if len(nonce) != aead.NonceSize() {
		return nil, fmt.Errorf("seal: bad nonce length")
	}
	plain, err := aead.Open(nil, nonce, ciphertext, b.AdditionalData())
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
