package jwtauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"aitokens/pkg/devtools/syncbuf"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

const (
	testIssuer   = "https://issuer.example"
	testAudience = "ai-tokens"
	interval     = 5 * time.Second // the refresh interval of these tests
)

// Keys made once per run: RSA key generation is slow under the race detector.
var testKeys = sync.OnceValue(func() (k struct {
	a, b, c *rsa.PrivateKey
	ec      *ecdsa.PrivateKey
}) {
	for _, p := range []**rsa.PrivateKey{&k.a, &k.b, &k.c} {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		*p = key
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	k.ec = ec
	return k
})

// jwk is one entry of a test JWKS: a public key, its kid and, if set, its alg.
type jwk struct {
	kid string
	pub crypto.PublicKey
	alg jwkset.ALG
}

func jwksOf(t testing.TB, entries ...jwk) []byte {
	t.Helper()
	set := jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{}}
	for _, e := range entries {
		j, err := jwkset.NewJWKFromKey(e.pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: e.kid, ALG: e.alg, USE: jwkset.UseSig}})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, j.Marshal())
	}
	raw, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// clock is a test clock that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// claimsAt are the claims of a valid token at now.
func claimsAt(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": testIssuer, "aud": testAudience, "sub": "user-1",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"tenant": "acme", "scope": "ai.agent_read ai.agent_manage",
	}
}

// sign makes a compact JWT; kid "" leaves the kid header out.
func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rs256 is a valid RS256 token by key under kid at now.
func rs256(t testing.TB, key *rsa.PrivateKey, kid string, now time.Time) string {
	t.Helper()
	return sign(t, jwt.SigningMethodRS256, key, kid, claimsAt(now))
}

func bearerRequest(tok string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

// fileVerifier is a verifier of the JWKS file it writes with set, on clk.
func fileVerifier(t *testing.T, clk *clock, set []byte) (*JWT, string, *syncbuf.Buffer) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "jwks.json")
	writeFile(t, path, set)
	logs := &syncbuf.Buffer{}
	j, err := newJWT(context.Background(), Config{JWKSFile: path, Issuer: testIssuer, Audience: testAudience,
		RefreshInterval: interval, Log: slog.New(slog.NewJSONHandler(logs, nil))}, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	return j, path, logs
}

// writeFile replaces the file as an editor or a deployment would: a new file renamed into place.
func writeFile(t *testing.T, path string, content []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, content, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// jwksServer serves a JWKS that the test can change, and counts its fetches. hold, when set,
// makes every fetch wait for it to close.
type jwksServer struct {
	URL     string
	fetches atomic.Int64
	mu      sync.Mutex
	set     []byte
	status  int
	hold    chan struct{}
}

func newJWKSServer(t *testing.T, set []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{set: set, status: http.StatusOK}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		set, status, hold := s.set, s.status, s.hold
		s.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(set)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

func (s *jwksServer) publish(set []byte, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set, s.status = set, status
}

func (s *jwksServer) holdFetches() (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hold := make(chan struct{})
	s.hold = hold
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.hold = nil
			s.mu.Unlock()
			close(hold)
		})
	}
}

func urlVerifier(t *testing.T, clk *clock, url string) (*JWT, *syncbuf.Buffer) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	j, err := newJWT(context.Background(), Config{JWKSURL: url, Issuer: testIssuer, Audience: testAudience,
		RefreshInterval: interval, Log: slog.New(slog.NewJSONHandler(logs, nil))}, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	return j, logs
}

func sha256Of(tok string) [sha256.Size]byte { return sha256.Sum256([]byte(tok)) }
