package relay

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
)

// Redacted is what stands where the value was.
const Redacted = "[REDACTED]"

// secrets are the forms of the value that an upstream might send back: the value itself, the
// injected header or parameter as rendered, and their URL-query and base64 encodings (an echo
// of a URL, of a Basic credential). Longest first, so a rendered form goes whole before the
// value within it.
func secrets(value []byte, rendered string) [][]byte {
	var out [][]byte
	for _, s := range []string{string(value), rendered} {
		if s == "" {
			continue
		}
		out = append(out, []byte(s), []byte(url.QueryEscape(s)), []byte(url.PathEscape(s)),
			[]byte(base64.StdEncoding.EncodeToString([]byte(s))), []byte(base64.RawURLEncoding.EncodeToString([]byte(s))))
	}
	slices.SortFunc(out, func(a, b []byte) int { return len(b) - len(a) })
	return slices.CompactFunc(out, bytes.Equal)
}

func redact(b []byte, secrets [][]byte) []byte {
	for _, s := range secrets {
		if bytes.Contains(b, s) {
			b = bytes.ReplaceAll(b, s, []byte(Redacted))
		}
	}
	return b
}

// redactHeader removes every secret from the values of h.
func redactHeader(h http.Header, secrets [][]byte) {
	for k, vs := range h {
		for i, v := range vs {
			vs[i] = string(redact([]byte(v), secrets))
		}
		h[k] = vs
	}
}

// redactor removes the secrets from a stream written to it in chunks of any size. It holds back
// the last longest-1 bytes of what it was given, since a secret may begin there and end in the
// next chunk; a secret wholly in view is replaced before anything of it is passed on. What is
// held back is written by Close only: a stream that breaks off loses it (fails closed).
type redactor struct {
	secrets [][]byte
	keep    int // longest secret - 1
	buf     []byte
	out     func([]byte) error
}

func newRedactor(secrets [][]byte, out func([]byte) error) *redactor {
	keep := 0
	if len(secrets) > 0 {
		keep = len(secrets[0]) - 1
	}
	return &redactor{secrets: secrets, keep: keep, out: out}
}

func (r *redactor) Write(p []byte) error {
	r.buf = redact(append(r.buf, p...), r.secrets)
	// A secret that begins before cut would end within buf, and was replaced.
	cut := len(r.buf) - r.keep
	if cut <= 0 {
		return nil
	}
	err := r.out(r.buf[:cut])
	r.buf = append(r.buf[:0], r.buf[cut:]...)
	return err
}

// Close writes what is held back: at the end of the stream no secret can still be completed.
func (r *redactor) Close() error {
	if len(r.buf) == 0 {
		return nil
	}
	err := r.out(r.buf)
	r.buf = r.buf[:0]
	return err
}
