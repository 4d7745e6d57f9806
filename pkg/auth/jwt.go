package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// asymmetricAlgorithms are the only signatures accepted: never "none", never an HMAC (which would
// let a public key be used as a shared secret).
var asymmetricAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// JWTConfig configures JWT verification. Exactly one of JWKSFile and JWKSURL is set.
type JWTConfig struct {
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
}

// NewJWT loads the JWKS and checks that nothing is missing: the server never runs open.
func NewJWT(ctx context.Context, cfg JWTConfig) (*JWT, error) {
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
		cfg.TenantClaim = DefaultTenantClaim
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods(asymmetricAlgorithms),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(cfg.Leeway),
	)
	return &JWT{keys: kf.Keyfunc, parser: parser, tenantClaim: cfg.TenantClaim}, nil
}

// Authenticate verifies the request's bearer token: signature, algorithm, issuer, audience,
// expiry and not-before.
func (j *JWT) Authenticate(r *http.Request) (Principal, error) {
	raw, ok := bearer(r)
	if !ok {
		return Principal{}, ErrInvalidToken()
	}
	claims := jwt.MapClaims{}
	if _, err := j.parser.ParseWithClaims(raw, claims, j.keys); err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Principal{}, ErrExpiredToken()
		}
		return Principal{}, ErrInvalidToken()
	}
	return principalFromClaims(claims, j.tenantClaim)
}

func principalFromClaims(claims map[string]any, tenantClaim string) (Principal, error) {
	scopes, ok := scopesFrom(claims)
	if !ok {
		return Principal{}, ErrInvalidToken()
	}
	p := Principal{Scopes: scopes}
	if v, ok := claims[tenantClaim]; ok {
		s, ok := v.(string)
		if !ok {
			return Principal{}, ErrInvalidToken()
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
