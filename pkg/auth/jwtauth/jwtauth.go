// Package jwtauth verifies bearer JWTs against a JWKS (issuer, audience, expiry, not-before,
// asymmetric algorithms only) for the local server. The Lambdas do not import it: API
// Gateway's JWT authorizer verifies there, and pkg/auth reads its claims.
package jwtauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/golang-lru/v2/expirable"

	"aitokens/pkg/auth"
)

// rsaAlgorithms are the only signatures accepted, as by API Gateway's HTTP API JWT authorizer
// ("only RSA-based algorithms"): never "none", never an HMAC (which would let a public key be
// used as a shared secret), and no EC or EdDSA key that would pass here but not in AWS.
var rsaAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}

// Config configures JWT verification. Exactly one of JWKSFile and JWKSURL is set.
type Config struct {
	JWKSFile    string
	JWKSURL     string
	Issuer      string
	Audience    string
	TenantClaim string
	Leeway      time.Duration
}

// JWT verifies bearer tokens against a JWKS.
type JWT struct {
	keys        jwt.Keyfunc
	parser      *jwt.Parser
	tenantClaim string

	// verified remembers the principal of tokens already verified, keyed by the SHA-256 of the
	// whole token (signature included), for verifiedTTL at most and never past the token's
	// own expiry: a client sends the same token on many requests, and an RSA verification is
	// most of this service's own CPU per request. It holds no token, only its hash.
	verified *expirable.LRU[[sha256.Size]byte, verifiedToken]
	now      func() time.Time
}

type verifiedToken struct {
	principal auth.Principal
	until     time.Time
}

const (
	verifiedTTL  = 5 * time.Minute
	verifiedSize = 4096
)

// NewJWT loads the JWKS and checks that nothing is missing: the server never runs open.
func New(ctx context.Context, cfg Config) (*JWT, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("auth: JWT_ISSUER and JWT_AUDIENCE must be set")
	}
	var kf keyfunc.Keyfunc
	var err error
	switch {
	case cfg.JWKSFile != "" && cfg.JWKSURL != "":
		return nil, errors.New("auth: set JWKS_FILE or JWKS_URL, not both")
	case cfg.JWKSFile != "":
		raw, rerr := os.ReadFile(cfg.JWKSFile)
		if rerr != nil {
			return nil, fmt.Errorf("auth: read JWKS: %w", rerr)
		}
		kf, err = keyfunc.NewJWKSetJSON(raw)
	case cfg.JWKSURL != "":
		kf, err = keyfunc.NewDefaultCtx(ctx, []string{cfg.JWKSURL})
	default:
		return nil, errors.New("auth: JWKS_FILE or JWKS_URL must be set")
	}
	if err != nil {
		return nil, fmt.Errorf("auth: load JWKS: %w", err)
	}
	if cfg.TenantClaim == "" {
		cfg.TenantClaim = auth.DefaultTenantClaim
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods(rsaAlgorithms),
		jwt.WithIssuedAt(), // an iat in the future is refused, as API Gateway does
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway),
	)
	return &JWT{keys: requireKID(kf.Keyfunc), parser: parser, tenantClaim: cfg.TenantClaim,
		verified: expirable.NewLRU[[sha256.Size]byte, verifiedToken](verifiedSize, nil, verifiedTTL), now: time.Now}, nil
}

// Authenticate verifies the request's bearer token: signature, algorithm, issuer, audience,
// expiry and not-before.
func (j *JWT) Authenticate(r *http.Request) (auth.Principal, error) {
	raw, ok := bearer(r)
	if !ok {
		return auth.Principal{}, auth.ErrInvalidToken()
	}
	sum := sha256.Sum256([]byte(raw))
	now := j.now()
	if hit, ok := j.verified.Get(sum); ok && now.Before(hit.until) {
		return hit.principal, nil
	}
	claims := jwt.MapClaims{}
	if _, err := j.parser.ParseWithClaims(raw, claims, j.keys); err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return auth.Principal{}, auth.ErrExpiredToken()
		}
		return auth.Principal{}, auth.ErrInvalidToken()
	}
	p, err := principalFromClaims(claims, j.tenantClaim)
	if err != nil {
		return auth.Principal{}, err
	}
	until := now.Add(verifiedTTL)
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil && exp.Before(until) {
		until = exp.Time
	}
	j.verified.Add(sum, verifiedToken{principal: p, until: until})
	return p, nil
}

// requireKID refuses a token whose header names no key or names a critical extension, as API
// Gateway's authorizer does: without a kid the JWKS library would try every key of the set, and
// this verifier understands no extension (RFC 7515 4.1.11: an unknown "crit" must be refused).
func requireKID(keys jwt.Keyfunc) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		if kid, ok := t.Header["kid"].(string); !ok || kid == "" {
			return nil, errors.New("jwtauth: the token names no key (kid)")
		}
		if _, ok := t.Header["crit"]; ok {
			return nil, errors.New("jwtauth: the token names a critical extension")
		}
		return keys(t)
	}
}

func principalFromClaims(claims map[string]any, tenantClaim string) (auth.Principal, error) {
	scopes, ok := auth.ScopesFromClaims(claims)
	if !ok {
		return auth.Principal{}, auth.ErrInvalidToken()
	}
	p := auth.Principal{Scopes: scopes}
	if v, ok := claims[tenantClaim]; ok {
		s, ok := v.(string)
		if !ok {
			return auth.Principal{}, auth.ErrInvalidToken()
		}
		p.Tenant = s
	}
	if sub, ok := claims["sub"].(string); ok {
		p.Subject = sub
	}
	return p, nil
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, raw, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	raw = strings.TrimSpace(raw)
	return raw, raw != ""
}
