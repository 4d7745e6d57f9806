package relay

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Redacted is what stands where the value was.
const Redacted = "[REDACTED]"

// secrets are the forms of the value that an upstream might send back: the value itself, the
// injected header or parameter as rendered, their URL-query and base64 encodings (an echo of a
// URL, of a Basic credential; base64 in both alphabets, unpadded too: the padded forms hold the
// unpadded URL one, not the unpadded standard one) and their JSON string escapes (an error body
// quoting the key: Go escapes <, >, &; others, PHP first, escape / as \/). Longest first, so a
// rendered form goes whole before the value within it.
func secrets(value []byte, rendered string) [][]byte {
	var out [][]byte
	for _, s := range []string{string(value), rendered} {
		if s == "" {
			continue
		}
		out = append(out, []byte(s), []byte(url.QueryEscape(s)), []byte(url.PathEscape(s)),
			[]byte(base64.StdEncoding.EncodeToString([]byte(s))), []byte(base64.RawStdEncoding.EncodeToString([]byte(s))),
			[]byte(base64.RawURLEncoding.EncodeToString([]byte(s))))
		for _, html := range []bool{true, false} {
			var b bytes.Buffer
			e := json.NewEncoder(&b)
			e.SetEscapeHTML(html)
			e.Encode(s)
			j := bytes.TrimSuffix(bytes.TrimSpace(b.Bytes()), []byte(`"`))[1:]
			out = append(out, j, bytes.ReplaceAll(j, []byte("/"), []byte(`\/`)))
		}
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

// redactHeader removes every secret from the values of h, and drops a header whose name holds
// one (header names are case-folded on the way, so in any case).
func redactHeader(h http.Header, secrets [][]byte) {
	for k, vs := range h {
		for _, s := range secrets {
			if strings.Contains(strings.ToLower(k), strings.ToLower(string(s))) {
				delete(h, k)
			}
		}
		if _, ok := h[k]; !ok {
			continue
		}
		for i, v := range vs {
			vs[i] = string(redact([]byte(v), secrets))
		}
		h[k] = vs
	}
}

// redactor removes the secrets from a stream written to it in chunks of any size. Of what it
// was given it holds back only the longest end that could be the start of a secret (which the
// next chunk may complete); a secret wholly in view is replaced before anything of it is passed
// on. So an SSE event, which no secret starts with "\n\n", goes on at once. What is held back is
// written by Close only: a stream that breaks off loses it (fails closed).
type redactor struct {
	secrets [][]byte
	buf     []byte
	out     func([]byte) error
}

func newRedactor(secrets [][]byte, out func([]byte) error) *redactor {
	return &redactor{secrets: secrets, out: out}
}

// partial is the length of the longest end of b that is a proper prefix of a secret.
func partial(b []byte, secrets [][]byte) int {
	longest := 0
	for _, s := range secrets {
		for k := min(len(s)-1, len(b)); k > longest; k-- {
			if bytes.HasSuffix(b, s[:k]) {
				longest = k
				break
			}
		}
	}
	return longest
}

func (r *redactor) Write(p []byte) error {
	r.buf = redact(append(r.buf, p...), r.secrets)
	cut := len(r.buf) - partial(r.buf, r.secrets)
	if cut == 0 {
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
