package jwtauth

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// accepted reports whether j accepts tok now.
func accepted(j *JWT, tok string) bool {
	_, err := j.Authenticate(bearerRequest(tok))
	return err == nil
}

// JWKS_FILE is read again once it is interval old: a key added to the file is accepted, and a
// key removed refused (its tokens' cache entries included), within one interval (issue 17,
// item 7). Within the interval the set in use is the one read last: that is the bound.
func TestFileKeysFollowTheFile(t *testing.T) {
	k := testKeys()
	clk := newClock()
	a, b := jwk{kid: "a", pub: &k.a.PublicKey}, jwk{kid: "b", pub: &k.b.PublicKey}
	j, path, logs := fileVerifier(t, clk, jwksOf(t, a))
	tokA, tokB := rs256(t, k.a, "a", clk.now()), rs256(t, k.b, "b", clk.now())
	if !accepted(j, tokA) || accepted(j, tokB) {
		t.Fatal("at start: want a accepted, b refused")
	}

	// b added.
	writeFile(t, path, jwksOf(t, a, b))
	clk.advance(interval - time.Second)
	if accepted(j, tokB) {
		t.Fatal("b accepted before the interval: the file was read more often than documented")
	}
	clk.advance(time.Second)
	if !accepted(j, tokB) || !accepted(j, tokA) {
		t.Fatal("one interval after b was added: want a and b accepted")
	}

	// a removed: its token is in the verified cache, and must not stay accepted from there.
	if _, cached := j.verified.Peek(sha256Of(tokA)); !cached {
		t.Fatal("the token of a is not cached: this test would not test the cache")
	}
	writeFile(t, path, jwksOf(t, b))
	clk.advance(interval)
	if accepted(j, tokA) {
		t.Fatal("one interval after a was removed, a token it signed is still accepted")
	}
	if !accepted(j, tokB) {
		t.Fatal("b refused after a was removed")
	}

	// A file caught half written, or emptied, leaves the last good set in use, and says so.
	for _, bad := range []string{`{"keys":[{"kty":"RSA","kid":"b","n":`, ``, `not json`} {
		writeFile(t, path, []byte(bad))
		clk.advance(interval)
		if !accepted(j, tokB) {
			t.Fatalf("file %q: the last good set was dropped", bad)
		}
	}
	if n := strings.Count(logs.String(), "the last good one stays in use"); n != 3 {
		t.Fatalf("%d log lines for 3 bad reads: %s", n, logs)
	}
	if strings.Contains(logs.String(), tokB) {
		t.Fatal("a log line holds a token")
	}

	// An unchanged file keeps the generation: verified tokens stay verified, nothing is parsed.
	writeFile(t, path, jwksOf(t, b))
	clk.advance(interval)
	accepted(j, tokB)
	gen := j.keys.current(context.Background()).gen
	clk.advance(interval)
	accepted(j, tokB)
	if again := j.keys.current(context.Background()).gen; again != gen {
		t.Fatalf("an unchanged file moved the key set from generation %d to %d", gen, again)
	}
}

// Requests with made-up kids cannot keep a newly published key out (issue 17, item 8): no kid
// triggers a read of its own, so a flood of them makes at most one fetch per interval, and
// whichever request triggers the first fetch after the key's publication brings the key in.
func TestURLKeysCannotBeBlockedByUnknownKids(t *testing.T) {
	k := testKeys()
	clk := newClock()
	a, b := jwk{kid: "a", pub: &k.a.PublicKey}, jwk{kid: "b", pub: &k.b.PublicKey}
	srv := newJWKSServer(t, jwksOf(t, a))
	j, _ := urlVerifier(t, clk, srv.URL)
	if got := srv.fetches.Load(); got != 1 {
		t.Fatalf("%d fetches at start, want 1", got)
	}
	tokA, tokB := rs256(t, k.a, "a", clk.now()), rs256(t, k.b, "b", clk.now())

	// flood sends n requests at once, each with its own unknown kid, all refused.
	bogus := make([]string, 50)
	for i := range bogus {
		bogus[i] = rs256(t, k.c, fmt.Sprintf("bogus-%d", i), clk.now())
	}
	flood := func(t *testing.T) {
		t.Helper()
		var wg sync.WaitGroup
		refused := make(chan bool, len(bogus))
		for _, tok := range bogus {
			wg.Go(func() { refused <- !accepted(j, tok) })
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the flood was not answered within 10 s")
		}
		close(refused)
		for r := range refused {
			if !r {
				t.Fatal("a made-up kid was accepted")
			}
		}
	}

	flood(t)
	if got := srv.fetches.Load(); got != 1 {
		t.Fatalf("a flood of %d unknown kids within the interval made %d fetches, want none", len(bogus), got-1)
	}
	clk.advance(interval)
	flood(t) // the set is due: the flood triggers one read, shared by all
	if got := srv.fetches.Load(); got != 2 {
		t.Fatalf("a flood of %d unknown kids once the set is due made %d fetches, want 1", len(bogus), got-1)
	}

	// b is published right after that read: refused until the next one, which any request
	// (here the flood again) triggers, and then accepted.
	srv.publish(jwksOf(t, a, b), http.StatusOK)
	if accepted(j, tokB) {
		t.Fatal("b accepted within the interval of the last read: the URL was fetched more often than documented")
	}
	clk.advance(interval)
	flood(t)
	if !accepted(j, tokB) || !accepted(j, tokA) {
		t.Fatal("one interval after b was published: want a and b accepted")
	}
	if got := srv.fetches.Load(); got != 3 {
		t.Fatalf("%d fetches, want 3 (start and one per interval)", got)
	}

	// A JWKS URL that fails leaves the last good set in use, and is not asked again at once.
	srv.publish([]byte(`{"error":"down"}`), http.StatusInternalServerError)
	clk.advance(interval)
	if !accepted(j, tokB) {
		t.Fatal("a failed fetch dropped the last good set")
	}
	flood(t)
	if got := srv.fetches.Load(); got != 4 {
		t.Fatalf("%d fetches after a failed one, want 4: a failing URL is asked once per interval", got)
	}
}

// A read of the JWKS URL that hangs holds a request no longer than its own deadline; the
// request is then verified with the last good set, and the read still ends by readTimeout.
func TestHangingJWKSURLWaitsNoLongerThanTheRequest(t *testing.T) {
	k := testKeys()
	clk := newClock()
	srv := newJWKSServer(t, jwksOf(t, jwk{kid: "a", pub: &k.a.PublicKey}))
	j, _ := urlVerifier(t, clk, srv.URL)
	tokA := rs256(t, k.a, "a", clk.now())
	release := srv.holdFetches()
	t.Cleanup(release) // before the server closes (cleanups run last first)
	clk.advance(interval)

	const deadline = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	_, err := j.Authenticate(bearerRequest(tokA).WithContext(ctx))
	took := time.Since(start)
	if err != nil {
		t.Fatalf("with the JWKS URL hanging: %v, want the last good set to verify", err)
	}
	if took > deadline+2*time.Second {
		t.Fatalf("the request waited %v for a hanging JWKS URL; its deadline was %v", took, deadline)
	}
	release()
	// The read in flight ends once released; then a request waits for nothing.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if _, err := j.Authenticate(bearerRequest(tokA).WithContext(ctx2)); err != nil || ctx2.Err() != nil {
		t.Fatalf("after the release: %v (deadline hit: %v)", err, ctx2.Err())
	}
}

// A JWKS that cannot be read or parsed at start stops the server: it never runs without keys.
func TestNewRefusesABadJWKS(t *testing.T) {
	srv := newJWKSServer(t, []byte(`{}`))
	srv.publish([]byte(`nope`), http.StatusNotFound)
	cases := []struct {
		name string
		cfg  func(t *testing.T) Config
	}{
		{"file not JSON", func(t *testing.T) Config {
			_, path, _ := fileVerifier(t, newClock(), jwksOf(t))
			writeFile(t, path, []byte("not json"))
			return Config{JWKSFile: path}
		}},
		{"URL answering 404", func(*testing.T) Config { return Config{JWKSURL: srv.URL} }},
		{"URL refusing connections", func(*testing.T) Config { return Config{JWKSURL: "http://127.0.0.1:1/jwks"} }},
	}
	for _, c := range cases {
		cfg := c.cfg(t)
		cfg.Issuer, cfg.Audience = testIssuer, testAudience
		if _, err := New(context.Background(), cfg); err == nil {
			t.Errorf("%s: started", c.name)
		}
	}
}
