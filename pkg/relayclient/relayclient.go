// Package relayclient is the agent's side of the relay (pkg/relay): an http.RoundTripper that
// sends a request for one of its hosts to the relay instead, so that an existing OpenAI,
// Anthropic or MCP HTTP client gets the token's value injected by the relay without ever
// holding it. Every other request passes to the base transport untouched.
//
// https://api.openai.com/v1/chat/completions?x=1 becomes
// {RelayURL}/relay/{Tenant}/{TokenID}/api.openai.com/v1/chat/completions?x=1, with the consumer
// in the X-Token-Consumer header. In AWS the relay is a Lambda function URL with AuthType
// AWS_IAM: set Credentials and Region and each rewritten request is signed with SigV4 for the
// service "lambda".
//
// It imports nothing of the service but pkg/token's consumer check, so an agent links little.
package relayclient

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"aitokens/pkg/token"
)

// The relay's path prefix and consumer header (pkg/relay's Prefix and ConsumerHeader; a test
// holds them equal, so that this package need not link the relay).
const (
	prefix         = "/relay/"
	consumerHeader = "X-Token-Consumer"
)

// MaxSignedBody is the largest body a signed request may carry: a Lambda function URL takes a
// request payload of 6 MB at most, and SigV4 for Lambda needs the body's SHA-256 (Lambda does
// not accept UNSIGNED-PAYLOAD), so a signed body is read whole before it is sent.
const MaxSignedBody = 6 << 20

// SigningService is the SigV4 service name of a Lambda function URL.
const SigningService = "lambda"

// Config is what a Transport is built from.
type Config struct {
	// RelayURL is where the relay is: the function URL in AWS
	// (https://<url-id>.lambda-url.<region>.on.aws), http://localhost:8080 under `make run`.
	RelayURL string
	Tenant   string
	TokenID  string
	// Consumer is who calls, "kind:id" as resolve's consumer (e.g. "agent:support-agent");
	// empty: none (a restricted token then refuses).
	Consumer string
	// Hosts are the upstreams whose requests go through the relay, as an egress policy names
	// them: "api.openai.com" (port 443 only) or "host:port". None: every request passes
	// untouched.
	Hosts []string
	// StripHeaders are headers the agent's SDK sets with its own (dummy) key, dropped from a
	// rewritten request besides Authorization, which is always dropped (e.g. "X-Api-Key" for
	// an Anthropic SDK). The relay drops the injected header's name too; this keeps a dummy
	// key off the wire to it.
	StripHeaders []string
	// Base carries the requests (nil: http.DefaultTransport).
	Base http.RoundTripper
	// Credentials, when set, sign each rewritten request with SigV4 for Region (the function
	// URL's region). Pass a cached provider (aws.Config.Credentials is one).
	Credentials aws.CredentialsProvider
	Region      string
	// Now is the signing clock (nil: time.Now); tests fix it.
	Now func() time.Time
}

// Transport is the RoundTripper. Build it with New; it is safe for concurrent use.
type Transport struct {
	cfg    Config
	relay  *url.URL
	hosts  map[string]string // hostname:port as the request names it -> the relay's {host}
	strip  []string
	signer *v4.Signer
}

// New checks cfg and builds the Transport; every mistake is an error here, not on a request.
func New(cfg Config) (*Transport, error) {
	u, err := url.Parse(cfg.RelayURL)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("relayclient: RelayURL %q must be an http(s) URL without user, query or fragment", cfg.RelayURL)
	case !segment(cfg.Tenant):
		return nil, fmt.Errorf("relayclient: Tenant %q must be one non-empty path segment", cfg.Tenant)
	case !segment(cfg.TokenID):
		return nil, fmt.Errorf("relayclient: TokenID %q must be one non-empty path segment", cfg.TokenID)
	case cfg.Credentials != nil && cfg.Region == "":
		return nil, errors.New("relayclient: signing needs the function URL's Region")
	case cfg.Credentials == nil && cfg.Region != "":
		return nil, errors.New("relayclient: Region is set but no Credentials to sign with")
	}
	if cfg.Consumer != "" {
		kind, id, ok := strings.Cut(cfg.Consumer, ":")
		if !ok {
			return nil, fmt.Errorf("relayclient: Consumer %q must be \"kind:id\"", cfg.Consumer)
		}
		if err := (token.Consumer{Kind: kind, ID: id}).Validate(); err != nil {
			return nil, fmt.Errorf("relayclient: Consumer %q: %w", cfg.Consumer, err)
		}
	}
	t := &Transport{cfg: cfg, relay: u, hosts: map[string]string{}, strip: []string{"Authorization"}}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	for _, h := range cfg.Hosts {
		key, ok := hostKey(h, "https")
		if !ok || strings.ToLower(h) != h {
			return nil, fmt.Errorf("relayclient: host %q must be a lowercase DNS name, optionally with :port", h)
		}
		t.hosts[key] = h
	}
	for _, h := range cfg.StripHeaders {
		t.strip = append(t.strip, http.CanonicalHeaderKey(h))
	}
	if t.cfg.Base == nil {
		t.cfg.Base = http.DefaultTransport
	}
	if t.cfg.Now == nil {
		t.cfg.Now = time.Now
	}
	if cfg.Credentials != nil {
		t.signer = v4.NewSigner()
	}
	return t, nil
}

// segment says whether s fits in one segment of the relay's path.
func segment(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/?#%\\") && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// hostKey is "hostname:port" of a URL's host with scheme's default port; false if it is no
// plain host name (userinfo, IP literal aside: the relay refuses those anyway).
func hostKey(hostport, scheme string) (string, bool) {
	host, port := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	} else if strings.Contains(hostport, ":") {
		return "", false
	}
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[scheme]
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return "", false
	}
	if host == "" || strings.ContainsAny(host, "/@[]%") {
		return "", false
	}
	return strings.ToLower(host) + ":" + port, true
}

// RoundTrip sends req to the relay when its host is one of Hosts, else to Base unchanged. The
// caller's request is never modified (a rewritten one is a clone).
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	key, ok := hostKey(req.URL.Host, req.URL.Scheme)
	host, listed := t.hosts[key]
	if !ok || !listed || (req.URL.Scheme != "https" && req.URL.Scheme != "http") {
		return t.cfg.Base.RoundTrip(req)
	}
	out, err := t.rewrite(req, host)
	if err != nil {
		if req.Body != nil {
			req.Body.Close() // a RoundTripper closes the body, errors included
		}
		return nil, err
	}
	return t.cfg.Base.RoundTrip(out)
}

// CloseIdleConnections closes Base's idle connections, when it keeps any, so that
// http.Client.CloseIdleConnections reaches through the Transport.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.cfg.Base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// rewrite is req addressed to the relay, with the consumer, without the agent's own
// credentials, signed when Credentials are set.
func (t *Transport) rewrite(req *http.Request, host string) (*http.Request, error) {
	out := req.Clone(req.Context())
	u := *t.relay
	// The upstream's path as the caller escaped it, so that an encoded "/" stays one.
	path := req.URL.EscapedPath()
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u.RawPath = u.Path + prefix + url.PathEscape(t.cfg.Tenant) + "/" + url.PathEscape(t.cfg.TokenID) + "/" + host + path
	var err error
	if u.Path, err = url.PathUnescape(u.RawPath); err != nil {
		return nil, fmt.Errorf("relayclient: the request's path: %w", err)
	}
	u.RawQuery = req.URL.RawQuery
	out.URL, out.Host = &u, "" // Host "" is the relay's host, not the upstream's
	for _, h := range t.strip {
		out.Header.Del(h)
	}
	out.Header.Del(consumerHeader)
	if t.cfg.Consumer != "" {
		out.Header.Set(consumerHeader, t.cfg.Consumer)
	}
	if t.signer != nil {
		if err := t.sign(out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// signed are the headers a signature covers besides host and SigV4's own: what names the call.
// The agent's SDK headers are left out, so that what its client or a hop adds or rewrites
// after signing (User-Agent, Accept-Encoding, Content-Length framing) cannot break it.
var signed = []string{"Content-Type", consumerHeader}

// sign reads the body (at most MaxSignedBody), hashes it and signs out with SigV4.
func (t *Transport) sign(out *http.Request) error {
	var body []byte
	if out.Body != nil && out.Body != http.NoBody {
		b, err := io.ReadAll(io.LimitReader(out.Body, MaxSignedBody+1))
		out.Body.Close()
		if err != nil {
			return fmt.Errorf("relayclient: reading the body to sign it: %w", err)
		}
		if len(b) > MaxSignedBody {
			return fmt.Errorf("relayclient: a signed request's body is limited to %d bytes (a Lambda function URL's payload)", MaxSignedBody)
		}
		body = b
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	out.ContentLength = int64(len(body))
	out.Body, out.GetBody = http.NoBody, func() (io.ReadCloser, error) { return http.NoBody, nil }
	if len(body) > 0 {
		out.Body = io.NopCloser(bytes.NewReader(body))
		out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	creds, err := t.cfg.Credentials.Retrieve(out.Context())
	if err != nil {
		return fmt.Errorf("relayclient: credentials to sign with: %w", err)
	}
	// Sign a request holding only the covered headers, then copy the signature's headers over.
	su := *out.URL
	s := &http.Request{Method: out.Method, URL: &su, Host: su.Host, Header: http.Header{}, ContentLength: out.ContentLength}
	for _, h := range signed {
		if vs := out.Header.Values(h); len(vs) > 0 {
			s.Header[http.CanonicalHeaderKey(h)] = vs
		}
	}
	s.Header.Set("X-Amz-Content-Sha256", hash)
	if err := t.signer.SignHTTP(out.Context(), creds, s, hash, SigningService, t.cfg.Region, t.cfg.Now()); err != nil {
		return fmt.Errorf("relayclient: signing: %w", err)
	}
	for k, vs := range s.Header {
		out.Header[k] = vs
	}
	// The signer writes the query in canonical order; the request must send what was signed.
	out.URL.RawQuery = s.URL.RawQuery
	return nil
}
