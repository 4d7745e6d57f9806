package jwtauth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
)

// maxJWKSBytes bounds one read of the JWKS: a set of a few public keys is a few kilobytes.
const maxJWKSBytes = 1 << 20

// readTimeout bounds one read of the JWKS (a JWKS URL that hangs), so that no read outlives it.
const readTimeout = 10 * time.Second

// keySet is the JWKS in use. It is read again on use once its last read is interval old, by one
// read that every request needing it shares; the last good set stays in use when a read fails.
//
// Why on use rather than on a timer: no goroutine outlives its read (nothing to stop, no leak
// when a test or the server forgets to), an idle server reads nothing, and the file and the URL
// follow one rule. Why no early read for a kid the set lacks (what the JWKS library does, with one
// allowance per five minutes for all kids): that allowance is what one request with a made-up kid
// spends, so a key published right after it was refused for five minutes. Here a kid, known or
// not, triggers nothing: requests cause at most one read per interval whatever they carry, and a
// newly published key is accepted within one interval of its publication, whoever triggers the
// read that finds it.
type keySet struct {
	read     func(context.Context) ([]byte, error)
	source   string // the file or URL, for the log
	interval time.Duration
	now      func() time.Time
	log      *slog.Logger

	mu      sync.Mutex
	cur     keys
	readAt  time.Time     // start of the last read, good or not, so a failing source is not hammered
	reading chan struct{} // closed when the read in flight ends; nil when none is
}

// keys is one version of the key set. gen changes whenever its content does, so that a token
// verified under an earlier version (perhaps with a key since removed) is verified again.
type keys struct {
	kf  keyfunc.Keyfunc
	sum [sha256.Size]byte
	gen uint64
}

func newKeySet(ctx context.Context, source string, read func(context.Context) ([]byte, error), interval time.Duration,
	now func() time.Time, log *slog.Logger) (*keySet, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	s := &keySet{read: read, source: source, interval: interval, now: now, log: log, readAt: now()}
	raw, err := read(ctx)
	if err != nil {
		return nil, err
	}
	kf, err := keyfunc.NewJWKSetJSON(raw)
	if err != nil {
		return nil, err
	}
	s.cur = keys{kf: kf, sum: sha256.Sum256(raw), gen: 1}
	return s, nil
}

// current is the key set to verify with now. When the last read is interval old, it starts a
// read and waits for it, or for the one already in flight, until ctx ends (the request's
// deadline); then, or when the read failed, it is the last good set.
func (s *keySet) current(ctx context.Context) keys {
	s.mu.Lock()
	if s.reading == nil && !s.now().Before(s.readAt.Add(s.interval)) {
		s.startRead()
	}
	wait := s.reading
	s.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// startRead reads the source in its own goroutine, so that a request leaving at its deadline
// cancels nothing for the others; readTimeout ends the goroutine. Called with s.mu held.
func (s *keySet) startRead() {
	s.readAt = s.now()
	done := make(chan struct{})
	s.reading = done
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
		defer cancel()
		raw, err := s.read(ctx)
		sum := sha256.Sum256(raw)
		s.mu.Lock()
		same := s.cur.sum == sum // unchanged: no parse, and verified tokens stay verified
		s.mu.Unlock()
		var kf keyfunc.Keyfunc
		if err == nil && !same {
			kf, err = keyfunc.NewJWKSetJSON(raw)
		}
		s.mu.Lock()
		if err == nil && !same {
			s.cur = keys{kf: kf, sum: sum, gen: s.cur.gen + 1}
		}
		s.reading = nil
		s.mu.Unlock()
		if err != nil {
			s.log.Error("jwtauth: the JWKS could not be read again; the last good one stays in use",
				"source", s.source, "error", err.Error())
		}
	}()
}

// readFile reads the JWKS file whole at every read: a few kilobytes, and unlike its modification
// time its content cannot miss an edit made within the same second or a file renamed into place.
func readFile(path string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("auth: read JWKS: %w", err)
		}
		defer f.Close()
		return readLimited(f)
	}
}

// readURL fetches the JWKS from url.
func readURL(client *http.Client, url string) func(context.Context) ([]byte, error) {
	return func(ctx context.Context) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, fmt.Errorf("auth: JWKS_URL: %w", err)
		}
		res, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("auth: fetch JWKS: %w", err)
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("auth: fetch JWKS: HTTP status %d", res.StatusCode)
		}
		return readLimited(res.Body)
	}
}

func readLimited(r io.Reader) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(r, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("auth: read JWKS: %w", err)
	}
	if len(raw) > maxJWKSBytes {
		return nil, fmt.Errorf("auth: the JWKS is larger than %d bytes", maxJWKSBytes)
	}
	return raw, nil
}
