// Package jwtauth verifies bearer JWTs against a JWKS (issuer, audience, expiry, not-before,
// asymmetric algorithms only) for the local server. The Lambdas do not import it: API
// Gateway's JWT authorizer verifies there, and pkg/auth reads its claims.
package jwtauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/golang-lru/v2/expirable"

	"aitokens/pkg/auth"
	"aitokens/pkg/config"
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
	// RefreshInterval is how old the JWKS may get before it is read again, on use: a key added
	// to the file or URL is accepted, and a removed one refused, within it. Zero is
	// config.DefaultJWKSRefreshInterval.
	RefreshInterval time.Duration
	// Log receives the JWKS reads that fail (the last good set stays in use); nil is slog.Default().
	Log *slog.Logger
}

// JWT verifies bearer tokens against a JWKS.
type JWT struct {
	keys        *keySet
	parser      *jwt.Parser
	tenantClaim string

	// verified remembers the principal of tokens already verified, keyed by the SHA-256 of the
	// whole token (signature included), for verifiedTTL at most, never past the token's own
	// expiry, and only while the key set is the one it was verified with (a key removed from
	// the JWKS ends the entries of its tokens): a client sends the same token on many requests,
	// and an RSA verification is most of this service's own CPU per request. It holds no token,
	// only its hash.
	verified *expirable.LRU[[sha256.Size]byte, verifiedToken]
	now      func() time.Time
}

type verifiedToken struct {
	principal auth.Principal
	until     time.Time
	keys      uint64 // the generation of the key set that verified it
}

const (
	verifiedTTL  = 5 * time.Minute
	verifiedSize = 4096
)

// New loads the JWKS and checks that nothing is missing: the server never runs open, and a JWKS
// that cannot be read or parsed at start stops it. ctx bounds that first read only.
func New(ctx context.Context, cfg Config) (*JWT, error) {
	return newJWT(ctx, cfg, time.Now)
}

// newJWT is New on the clock now (tests move it instead of waiting).
func newJWT(ctx context.Context, cfg Config, now func() time.Time) (*JWT, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("auth: JWT_ISSUER and JWT_AUDIENCE must be set")
	}
	if cfg.RefreshInterval < 0 {
		return nil, errors.New("auth: the JWKS refresh interval must not be negative")
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = config.DefaultJWKSRefreshInterval
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	var source string
	var read func(context.Context) ([]byte, error)
	switch {
	case cfg.JWKSFile != "" && cfg.JWKSURL != "":
		return nil, errors.New("auth: set JWKS_FILE or JWKS_URL, not both")
	case cfg.JWKSFile != "":
		source, read = cfg.JWKSFile, readFile(cfg.JWKSFile)
	case cfg.JWKSURL != "":
		source, read = cfg.JWKSURL, readURL(&http.Client{Timeout: readTimeout}, cfg.JWKSURL)
	default:
		return nil, errors.New("auth: JWKS_FILE or JWKS_URL must be set")
	}
	keys, err := newKeySet(ctx, source, read, cfg.RefreshInterval, now, cfg.Log)
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
		jwt.WithTimeFunc(now),
	)
	return &JWT{keys: keys, parser: parser, tenantClaim: cfg.TenantClaim,
		verified: expirable.NewLRU[[sha256.Size]byte, verifiedToken](verifiedSize, nil, verifiedTTL), now: now}, nil
}

// Authenticate verifies the request's bearer token: signature, algorithm, issuer, audience,
// expiry and not-before. The request's context bounds the wait for a JWKS read that is due.
func (j *JWT) Authenticate(r *http.Request) (auth.Principal, error) {
	raw, ok := bearer(r)
	if !ok {
		return auth.Principal{}, auth.ErrInvalidToken()
	}
	keys := j.keys.current(r.Context())
	sum := sha256.Sum256([]byte(raw))
	now := j.now()
	if hit, ok := j.verified.Get(sum); ok {
		if now.Before(hit.until) && hit.keys == keys.gen {
			return hit.principal, nil
		}
		j.verified.Remove(sum)
	}
	claims := jwt.MapClaims{}
	if _, err := j.parser.ParseWithClaims(raw, claims, requireKID(keys.kf.Keyfunc)); err != nil {
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
	j.verified.Add(sum, verifiedToken{principal: p, until: until, keys: keys.gen})
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
