// Package devkeys makes and uses the local development signing key: RS256, because API
// Gateway's JWT authorizer accepts RSA signatures only and local development should match it.
// The private key never leaves .data/; the server sees only the public JWKS.
package devkeys

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"aitokens/pkg/auth"
)

// What the development server and dev-token agree on.
const (
	Issuer   = "http://localhost/aitokens-dev"
	Audience = "ai-tokens"
	keyFile  = "dev-signing-key.pem"
	jwksFile = "jwks.json"
)

// Paths of the development key material under dir.
func KeyPath(dir string) string  { return filepath.Join(dir, keyFile) }
func JWKSPath(dir string) string { return filepath.Join(dir, jwksFile) }

// Ensure creates the signing key (mode 0600) and its public JWKS under dir if they are missing,
// and returns the key.
func Ensure(dir string) (*rsa.PrivateKey, error) {
	key, err := load(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		block := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: mustPKCS8(key)})
		if err := os.WriteFile(KeyPath(dir), block, 0o600); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	jwks, err := JWKS(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	return key, os.WriteFile(JWKSPath(dir), jwks, 0o644)
}

func load(dir string) (*rsa.PrivateKey, error) {
	raw, err := os.ReadFile(KeyPath(dir))
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("devkeys: %s is not PEM", KeyPath(dir))
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	rsaKey, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("devkeys: %s is not an RSA key", KeyPath(dir))
	}
	return rsaKey, nil
}

func mustPKCS8(key *rsa.PrivateKey) []byte {
	b, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return b
}

// KeyID derives a stable kid from the public key.
func KeyID(pub *rsa.PublicKey) string {
	sum := sha256.Sum256(x509.MarshalPKCS1PublicKey(pub))
	return hex.EncodeToString(sum[:8])
}

// JWKS renders the public key as a JWK Set.
func JWKS(pub *rsa.PublicKey) ([]byte, error) {
	jwk, err := jwkset.NewJWKFromKey(pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
		KID: KeyID(pub), ALG: jwkset.AlgRS256, USE: jwkset.UseSig,
	}})
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}}, "", "  ")
}

// Claims of a development token.
type Claims struct {
	Tenant      string
	TenantClaim string
	Scopes      []string
	Subject     string
	TTL         time.Duration
}

// Mint signs a development JWT that the dev server accepts.
func Mint(key *rsa.PrivateKey, c Claims) (string, error) {
	if c.TenantClaim == "" {
		c.TenantClaim = auth.DefaultTenantClaim
	}
	if c.TTL == 0 {
		c.TTL = time.Hour
	}
	if c.Subject == "" {
		c.Subject = "dev-user"
	}
	now := time.Now()
	claims := jwt.MapClaims{
		"iss": Issuer, "aud": Audience, "sub": c.Subject,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(c.TTL).Unix(),
		c.TenantClaim: c.Tenant,
		"scope":       strings.Join(c.Scopes, " "),
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = KeyID(&key.PublicKey)
	return t.SignedString(key)
}
