package jwtauth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"aitokens/pkg/token"
)

// What API Gateway's HTTP API JWT authorizer accepts, this verifier accepts, and nothing else
// (README, "Configuration"): RSA signatures only, a kid naming a key, no crit, iss and aud as
// configured, exp required, 30 s of skew on exp, nbf and iat.
func TestVerification(t *testing.T) {
	k := testKeys()
	clk := newClock()
	now := clk.now()
	pkix, err := x509.MarshalPKIXPublicKey(&k.a.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	set := jwksOf(t,
		jwk{kid: "rsa", pub: &k.a.PublicKey},
		jwk{kid: "rs256-only", pub: &k.b.PublicKey, alg: jwkset.AlgRS256},
		jwk{kid: "ec", pub: &k.ec.PublicKey, alg: jwkset.AlgES256},
	)
	j, _, _ := fileVerifier(t, clk, set)

	with := func(change func(jwt.MapClaims)) jwt.MapClaims {
		c := claimsAt(now)
		change(c)
		return c
	}
	at := func(d time.Duration) int64 { return now.Add(d).Unix() }
	const (
		ok      = token.Reason("")
		invalid = token.InvalidCredential
		expired = token.ExpiredCredential
	)
	cases := []struct {
		name   string
		method jwt.SigningMethod
		key    any
		kid    string
		header map[string]any
		claims jwt.MapClaims // claimsAt(now) when nil
		want   token.Reason
	}{
		{name: "RS256", method: jwt.SigningMethodRS256, key: k.a, kid: "rsa", want: ok},
		{name: "RS384", method: jwt.SigningMethodRS384, key: k.a, kid: "rsa", want: ok},
		{name: "RS512", method: jwt.SigningMethodRS512, key: k.a, kid: "rsa", want: ok},
		{name: "PS256", method: jwt.SigningMethodPS256, key: k.a, kid: "rsa", want: ok},
		{name: "PS384", method: jwt.SigningMethodPS384, key: k.a, kid: "rsa", want: ok},
		{name: "PS512", method: jwt.SigningMethodPS512, key: k.a, kid: "rsa", want: ok},
		{name: "HS256 keyed with the public key", method: jwt.SigningMethodHS256, key: pkix, kid: "rsa", want: invalid},
		{name: "HS256 keyed with the JWKS", method: jwt.SigningMethodHS256, key: set, kid: "rsa", want: invalid},
		{name: "none", method: jwt.SigningMethodNone, key: jwt.UnsafeAllowNoneSignatureType, kid: "rsa", want: invalid},
		{name: "ES256 with its key in the JWKS", method: jwt.SigningMethodES256, key: k.ec, kid: "ec", want: invalid},
		{name: "RS384 for a key whose JWK says RS256", method: jwt.SigningMethodRS384, key: k.b, kid: "rs256-only", want: invalid},
		{name: "RS256 for a key whose JWK says RS256", method: jwt.SigningMethodRS256, key: k.b, kid: "rs256-only", want: ok},
		{name: "signed by another key", method: jwt.SigningMethodRS256, key: k.c, kid: "rsa", want: invalid},
		{name: "missing kid", method: jwt.SigningMethodRS256, key: k.a, want: invalid},
		{name: "empty kid", method: jwt.SigningMethodRS256, key: k.a, header: map[string]any{"kid": ""}, want: invalid},
		{name: "kid not a string", method: jwt.SigningMethodRS256, key: k.a, header: map[string]any{"kid": 7}, want: invalid},
		{name: "unknown kid", method: jwt.SigningMethodRS256, key: k.a, kid: "nobody", want: invalid},
		{name: "crit header", method: jwt.SigningMethodRS256, key: k.a, kid: "rsa", header: map[string]any{"crit": []string{"exp"}}, want: invalid},
		{name: "other issuer", method: jwt.SigningMethodRS256, key: k.a, kid: "rsa", claims: with(func(c jwt.MapClaims) { c["iss"] = "https://other.example" }), want: invalid},
		{name: "no issuer", method: jwt.SigningMethodRS256, key: k.a, kid: "rsa", claims: with(func(c jwt.MapClaims) { delete(c, "iss") }), want: invalid},
		{name: "other audience", method: jwt.SigningMethodRS256, key: k.a, kid: "rsa", claims: with(func(c jwt.MapClaims) { c["aud"] = "someone-else" }), want: invalid},
		{name: "audience among others", method: jwt.SigningMethodRS256, key: k.a, kid: "rsa", claims: with(func(c jwt.MapClaims) { c["aud"] = []string{"x", testAudience} }), want: ok},
		{name: "no audience", method: jwt.SigningMethodRS256, key: k.a, kid: "rsa", claims: with(func(c jwt.MapClaims) { delete(c, "aud") }), want: invalid},
		{name: "no exp", method: jwt.SigningMethodRS256, key: k.a, kid: "rsa", claims: with(func(c jwt.MapClaims) { delete(c, "exp") }), want: invalid},
		{name: "exp past beyond the skew", method: jwt.SigningMethodRS256, key: k.a, kid: "rsa", claims: with(func(c jwt.MapClaims) { c["exp"] = at(-31 * time.Second) }), want: expired},
		{name: "exp past within the skew", method: jwt.SigningMethodRS256, key: k.a, kid: "rsa", claims: with(func(c jwt.MapClaims) { c["exp"] = at(-29 * time.Second) }), want: ok},
		{name: "nbf future beyond the skew", method: jwt.SigningMethodRS256, key: k.a, kid: "rsa", claims: with(func(c jwt.MapClaims) { c["nbf"] = at(31 * time.Second) }), want: invalid},
		{name: "nbf future within the skew", method: jwt.SigningMethodRS256, key: k.a, kid: "rsa", claims: with(func(c jwt.MapClaims) { c["nbf"] = at(29 * time.Second) }), want: ok},
		{name: "iat future beyond the skew", method: jwt.SigningMethodRS256, key: k.a, kid: "rsa", claims: with(func(c jwt.MapClaims) { c["iat"] = at(31 * time.Second) }), want: invalid},
		{name: "iat future within the skew", method: jwt.SigningMethodRS256, key: k.a, kid: "rsa", claims: with(func(c jwt.MapClaims) { c["iat"] = at(29 * time.Second) }), want: ok},
		{name: "exp not a number", method: jwt.SigningMethodRS256, key: k.a, kid: "rsa", claims: with(func(c jwt.MapClaims) { c["exp"] = "tomorrow" }), want: invalid},
		{name: "tenant not a string", method: jwt.SigningMethodRS256, key: k.a, kid: "rsa", claims: with(func(c jwt.MapClaims) { c["tenant"] = 42 }), want: invalid},
		{name: "scope not a string", method: jwt.SigningMethodRS256, key: k.a, kid: "rsa", claims: with(func(c jwt.MapClaims) { c["scope"] = 1 }), want: invalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			claims := c.claims
			if claims == nil {
				claims = claimsAt(now)
			}
			tok := jwt.NewWithClaims(c.method, claims)
			if c.kid != "" {
				tok.Header["kid"] = c.kid
			}
			for h, v := range c.header {
				tok.Header[h] = v
			}
			raw, err := tok.SignedString(c.key)
			if err != nil {
				t.Fatal(err)
			}
			p, err := j.Authenticate(bearerRequest(raw))
			switch {
			case c.want == ok && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want == ok && (p.Tenant != "acme" || p.Subject != "user-1" || !slices.Equal(p.Scopes, []string{"ai.agent_read", "ai.agent_manage"})):
				t.Fatalf("principal %+v", p)
			case c.want != ok && err == nil:
				t.Fatalf("accepted: %+v", p)
			case c.want != ok && (token.As(err).Kind != token.Unauthorized || token.As(err).Reason != c.want):
				t.Fatalf("refused with %v, want %s", err, c.want)
			}
		})
	}
}

// Only "Bearer <token>" (any case of the scheme) carries a token.
func TestBearerHeader(t *testing.T) {
	k := testKeys()
	clk := newClock()
	j, _, _ := fileVerifier(t, clk, jwksOf(t, jwk{kid: "rsa", pub: &k.a.PublicKey}))
	tok := rs256(t, k.a, "rsa", clk.now())
	cases := []struct {
		header string
		ok     bool
	}{
		{"Bearer " + tok, true},
		{"bearer " + tok, true},
		{"Bearer  " + tok + " ", true},
		{"", false},
		{"Bearer", false},
		{"Bearer ", false},
		{"Basic " + tok, false},
		{tok, false},
		{"Bearer " + tok + "x", false},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		_, err := j.Authenticate(r)
		if (err == nil) != c.ok {
			t.Errorf("Authorization %.20q...: %v, want accepted %v", c.header, err, c.ok)
		}
	}
}

// A verified token is remembered, but never past its own exp: a token the cache would still
// hold for minutes is refused as expired once exp (and the skew) have passed.
func TestCacheNeverOutlivesTheTokensExpiry(t *testing.T) {
	k := testKeys()
	clk := newClock()
	j, _, _ := fileVerifier(t, clk, jwksOf(t, jwk{kid: "rsa", pub: &k.a.PublicKey}))
	claims := claimsAt(clk.now())
	exp := clk.now().Add(time.Minute)
	claims["exp"] = exp.Unix()
	tok := sign(t, jwt.SigningMethodRS256, k.a, "rsa", claims)

	if _, err := j.Authenticate(bearerRequest(tok)); err != nil {
		t.Fatal(err)
	}
	if _, cached := j.verified.Peek(sha256.Sum256([]byte(tok))); !cached {
		t.Fatal("the verified token is not cached: this test would not test the cache")
	}
	clk.advance(30 * time.Second)
	if _, err := j.Authenticate(bearerRequest(tok)); err != nil {
		t.Fatalf("before exp: %v", err)
	}
	clk.advance(61 * time.Second) // exp + 31 s: past the skew, well within verifiedTTL
	if verifiedTTL <= 91*time.Second {
		t.Fatalf("verifiedTTL %v: this test needs it longer than the token's life", verifiedTTL)
	}
	_, err := j.Authenticate(bearerRequest(tok))
	if token.As(err).Reason != token.ExpiredCredential {
		t.Fatalf("after exp: %v, want expired", err)
	}
}

// New refuses what would run open or half configured.
func TestNewRefusesIncompleteConfig(t *testing.T) {
	k := testKeys()
	_, path, _ := fileVerifier(t, newClock(), jwksOf(t, jwk{kid: "rsa", pub: &k.a.PublicKey}))
	cases := []struct {
		name string
		cfg  Config
	}{
		{"no issuer", Config{JWKSFile: path, Audience: testAudience}},
		{"no audience", Config{JWKSFile: path, Issuer: testIssuer}},
		{"no JWKS", Config{Issuer: testIssuer, Audience: testAudience}},
		{"file and URL", Config{JWKSFile: path, JWKSURL: "http://127.0.0.1:1/jwks", Issuer: testIssuer, Audience: testAudience}},
		{"missing file", Config{JWKSFile: path + ".missing", Issuer: testIssuer, Audience: testAudience}},
		{"negative interval", Config{JWKSFile: path, Issuer: testIssuer, Audience: testAudience, RefreshInterval: -time.Second}},
	}
	for _, c := range cases {
		if _, err := New(context.Background(), c.cfg); err == nil {
			t.Errorf("%s: started", c.name)
		}
	}
}
