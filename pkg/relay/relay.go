// Package relay is the host-bound relay: ANY /relay/{tenant}/{tokenId}/{host}/{path...} forwards
// the request to https://{host}/{path} with the token's value injected as its egress policy
// says, so the caller (an agent) never holds the value. It streams the answer back as it
// arrives, with every form of the value removed from headers and body.
//
// Its promises are in docs/security.md ("Relay promises"). The checks of the token are the
// service's (RelayGrant: resolve's checks and warm cache, then the policy's host list); this
// package owns what happens on the wire.
package relay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"aitokens/pkg/api"
	"aitokens/pkg/metrics"
	"aitokens/pkg/token"
)

// Prefix is where the relay is mounted.
const Prefix = "/relay/"

// ConsumerHeader names the caller's consumer: "kind:id" (e.g. "agent:support-agent") or the
// JSON object resolve takes ({"kind":"agent","id":"support-agent"}).
const ConsumerHeader = "X-Token-Consumer"

// Granter gives the value and policy for one call (service.Service.RelayGrant).
type Granter interface {
	RelayGrant(ctx context.Context, tenant, id string, consumer *token.Consumer, hostport, requestID string) ([]byte, token.Egress, error)
}

// Config is what a Handler is built from.
type Config struct {
	Grants Granter
	Log    *slog.Logger
	// Metrics receives one EMF line per call (nil: none), with Dims as its dimensions.
	Metrics io.Writer
	Dims    []metrics.Dimension
	// Dev allows plain HTTP to "localhost" upstreams and dialling loopback addresses (serve
	// --dev, tests); never set in AWS.
	Dev bool
	// HeaderTimeout bounds the wait for the upstream's response headers (504 after it).
	HeaderTimeout time.Duration
	// Props, when set, adds members to a call's metrics line (the function's X-Ray trace id).
	Props func(context.Context) []metrics.Dimension
}

// Handler is the relay.
type Handler struct {
	cfg       Config
	transport *http.Transport
	mux       *http.ServeMux
	metricsMu sync.Mutex
}

// DefaultHeaderTimeout is how long an upstream may think before its first byte (an LLM's first
// token can take a while).
const DefaultHeaderTimeout = 2 * time.Minute

// New builds the relay.
func New(cfg Config) (*Handler, error) {
	switch {
	case cfg.Grants == nil:
		return nil, errors.New("relay: no granter")
	case cfg.Log == nil:
		return nil, errors.New("relay: no logger")
	}
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = DefaultHeaderTimeout
	}
	h := &Handler{cfg: cfg, transport: newTransport(cfg.Dev, cfg.HeaderTimeout), mux: http.NewServeMux()}
	h.mux.HandleFunc(Prefix+"{tenant}/{tokenId}/{host}/{path...}", h.relay)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.finish(w, r, &call{start: time.Now(), rid: requestID(r.Context()), rec: recorder(r.Context())},
			&token.Error{Kind: token.NotFound, Message: "The relay's path is /relay/{tenant}/{tokenId}/{host}/{path}."})
	})
	return h, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.EqualFold(r.Method, http.MethodConnect) || strings.EqualFold(r.Method, http.MethodTrace) {
		// CONNECT would make the relay a tunnel of bytes it cannot search; TRACE asks the
		// upstream to echo the request, the injected header with it. (Any case: some servers
		// read methods case-insensitively.)
		h.finish(w, r, &call{start: time.Now(), rid: requestID(r.Context()), rec: recorder(r.Context())},
			&token.Error{Kind: token.Invalid, Reason: reasonMethod, Message: "The relay does not pass on " + strings.ToUpper(r.Method) + "."})
		return
	}
	if uncleanPath(r) {
		// The mux would answer a redirect to the cleaned path (which may name another token,
		// tenant or host) in plain text; the relay answers bad input in the API's shape.
		h.finish(w, r, &call{start: time.Now(), rid: requestID(r.Context()), rec: recorder(r.Context())},
			token.InvalidField("path", "The relay's path may hold no empty, . or .. segment (plain or percent-encoded)."))
		return
	}
	h.mux.ServeHTTP(w, r)
}

// uncleanPath says whether r's path has an empty, "." or ".." segment: as the mux sees it (the
// escaped path, which it would clean and redirect), or once decoded (%2e%2e, ..%2F), which an
// upstream would resolve. An empty last segment (a trailing slash) is a path of its own.
func uncleanPath(r *http.Request) bool {
	for _, p := range []string{r.URL.EscapedPath(), r.URL.Path} {
		segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
		for i, s := range segs {
			if s == "." || s == ".." || s == "" && i < len(segs)-1 {
				return true
			}
		}
	}
	return false
}

// Reasons of the relay's own answers.
const (
	reasonUnreachable token.Reason = "upstream_unreachable"
	reasonTimeout     token.Reason = "upstream_timeout"
	reasonEncoded     token.Reason = "upstream_encoded"
	reasonMethod      token.Reason = "method_not_allowed"
)

// call is what the log and metrics lines of one call say.
type call struct {
	start    time.Time
	rid      string
	tenant   string
	tokenID  string
	host     string
	consumer *token.Consumer
	status   int
	bytes    int64
	secrets  [][]byte
	rec      *metrics.Recorder
}

func (h *Handler) relay(w http.ResponseWriter, r *http.Request) {
	// The host as a policy names it (lowercase, as AllowsHost compares): the upstream's Host, SNI
	// and --dev's localhost check see the listed entry, not the caller's spelling.
	c := &call{start: time.Now(), rid: requestID(r.Context()), tenant: r.PathValue("tenant"), tokenID: r.PathValue("tokenId"),
		host: strings.ToLower(r.PathValue("host")), rec: recorder(r.Context())}
	ctx := metrics.NewContext(r.Context(), c.rec)
	var err error
	if len(r.Header.Values(ConsumerHeader)) > 1 {
		// Two consumers are no consumer: which one a proxy keeps (the first, the last, both
		// joined as a function URL does) must not decide whose usage the call spends.
		h.finish(w, r, c, token.InvalidField(ConsumerHeader, ConsumerHeader+" must be sent once"))
		return
	}
	if c.consumer, err = parseConsumer(r.Header.Get(ConsumerHeader)); err != nil {
		h.finish(w, r, c, err)
		return
	}
	value, egress, err := h.cfg.Grants.RelayGrant(ctx, c.tenant, c.tokenID, c.consumer, c.host, c.rid)
	if err != nil {
		h.finish(w, r, c, err)
		return
	}
	// The upstream may be silent for HeaderTimeout at most, before its headers (the transport's
	// bound) and between two reads of its body (idle, reset on every read): every wait ends.
	upCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	out, rendered, err := h.outbound(upCtx, r, c.host, value, egress)
	c.secrets = secrets(value, rendered)
	if err != nil {
		h.finish(w, r, c, err)
		return
	}
	res, err := h.transport.RoundTrip(out)
	if err != nil {
		e := &token.Error{Kind: token.Dependency, Reason: reasonUnreachable, ResourceID: c.tokenID,
			Message: "The upstream host could not be reached.", Cause: err}
		var ne net.Error
		if ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout() {
			e.Reason, e.Message = reasonTimeout, "The upstream host did not answer in time."
		}
		h.finish(w, r, c, e)
		return
	}
	defer res.Body.Close()
	if ce, ok := identity(res.Header); !ok {
		// An encoded body cannot be searched for the value: refused rather than passed on.
		h.finish(w, r, c, &token.Error{Kind: token.Dependency, Reason: reasonEncoded, ResourceID: c.tokenID,
			Message: "The upstream answered with Content-Encoding " + strconv.Quote(ce) + ", which the relay cannot search for the value."})
		return
	}
	idle := time.AfterFunc(h.cfg.HeaderTimeout, cancel)
	defer idle.Stop()
	h.stream(w, c, res, func() { idle.Reset(h.cfg.HeaderTimeout) })
	h.finish(w, r, c, nil)
}

// identity says whether the body comes as sent: every Content-Encoding line (an upstream may
// send several) and every coding in it is identity. Else it returns the encodings.
func identity(h http.Header) (string, bool) {
	vs := h.Values("Content-Encoding")
	for _, v := range vs {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" && !strings.EqualFold(f, "identity") {
				return strings.Join(vs, ", "), false
			}
		}
	}
	return "", true
}

// outbound is the request to the upstream, with the value injected, and the injected header or
// parameter as rendered.
func (h *Handler) outbound(ctx context.Context, r *http.Request, host string, value []byte, egress token.Egress) (*http.Request, string, error) {
	scheme := "https"
	if h.cfg.Dev && hostname(host) == "localhost" {
		scheme = "http"
	}
	// The path as the caller escaped it: /relay/{tenant}/{tokenId}/{host}/{rest}.
	parts := strings.SplitN(r.URL.EscapedPath(), "/", 6)
	rest := ""
	if len(parts) == 6 {
		rest = parts[5]
	}
	u := &url.URL{Scheme: scheme, Host: host, RawQuery: r.URL.RawQuery}
	var err error
	if u.Path, err = url.PathUnescape("/" + rest); err != nil {
		return nil, "", token.InvalidField("path", "the path is not validly escaped")
	}
	u.RawPath = "/" + rest
	rendered := strings.Replace(egress.Inject.Template, token.ValuePlaceholder, string(value), 1)
	if egress.Inject.In == token.InjectQuery {
		q := r.URL.Query()
		q.Del(egress.Inject.Name)
		q.Set(egress.Inject.Name, rendered)
		u.RawQuery = q.Encode()
	}
	out, err := http.NewRequestWithContext(ctx, r.Method, u.String(), r.Body)
	if err != nil {
		return nil, rendered, token.InvalidField("path", "the upstream URL is not valid")
	}
	out.ContentLength = r.ContentLength
	if r.ContentLength == 0 {
		out.Body = nil
	}
	out.Header = forwardedHeader(r.Header, egress.Inject)
	if egress.Inject.In == token.InjectHeader {
		out.Header.Set(egress.Inject.Name, rendered)
	}
	return out, rendered, nil
}

// dropped are the caller's headers that never reach the upstream: its own credentials, the
// relay's own header, framing and hop-by-hop headers (RFC 9110 7.6.1), what names the caller's
// path to the relay (a SigV4 signature of the function URL, forwarding headers), and Range and
// If-Range: a range may start or end inside an echo of the value, and a piece of the value
// matches no secret the redactor searches for (the upstream answers the whole body instead).
var dropped = map[string]bool{
	"Authorization": true, "Cookie": true, "Host": true, "Connection": true, "Keep-Alive": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true, "Expect": true,
	"Accept-Encoding": true, "Forwarded": true, http.CanonicalHeaderKey(ConsumerHeader): true,
	"Range": true, "If-Range": true,
}

func forwardedHeader(in http.Header, inject token.Inject) http.Header {
	out := make(http.Header, len(in))
	hop := map[string]bool{}
	for _, v := range in.Values("Connection") {
		for f := range strings.SplitSeq(v, ",") {
			hop[http.CanonicalHeaderKey(strings.TrimSpace(f))] = true
		}
	}
	for k, vs := range in {
		// "_" read as "-": CGI-style servers (X_Api_Key -> HTTP_X_API_KEY) take both for one name.
		ck := http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-"))
		lk := strings.ToLower(ck)
		if dropped[ck] || hop[ck] || strings.HasPrefix(lk, "proxy-") || strings.HasPrefix(lk, "x-amz-") ||
			strings.HasPrefix(lk, "x-amzn-") || strings.HasPrefix(lk, "x-forwarded-") ||
			inject.In == token.InjectHeader && strings.EqualFold(ck, inject.Name) {
			continue
		}
		out[http.CanonicalHeaderKey(k)] = append(out[http.CanonicalHeaderKey(k)], vs...)
	}
	// The body must come as sent, or it could not be searched for the value.
	out.Set("Accept-Encoding", "identity")
	return out
}

// responseDropped are the upstream's headers that are not passed back: hop-by-hop ones, and the
// length, which redaction may change.
var responseDropped = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Te": true, "Trailer": true, "Transfer-Encoding": true,
	"Upgrade": true, "Content-Length": true, "Proxy-Authenticate": true, "Proxy-Connection": true,
}

// stream passes the upstream's answer on, a chunk as it comes, redacted and flushed.
func (h *Handler) stream(w http.ResponseWriter, c *call, res *http.Response, alive func()) {
	for k, vs := range res.Header {
		if !responseDropped[http.CanonicalHeaderKey(k)] {
			w.Header()[k] = append([]string(nil), vs...)
		}
	}
	redactHeader(w.Header(), c.secrets)
	w.Header().Set("X-Request-Id", c.rid)
	c.status = res.StatusCode
	w.WriteHeader(res.StatusCode)
	rc := http.NewResponseController(w)
	rc.Flush()
	red := newRedactor(c.secrets, func(b []byte) error {
		n, err := w.Write(b)
		c.bytes += int64(n)
		if err == nil {
			err = rc.Flush()
		}
		return err
	})
	buf := make([]byte, 32*1024)
	for {
		n, err := res.Body.Read(buf)
		alive()
		if n > 0 {
			if werr := red.Write(buf[:n]); werr != nil {
				return // the caller went away
			}
			alive() // a slow caller is not a silent upstream
		}
		if err == io.EOF {
			red.Close()
			return
		}
		if err != nil {
			// The upstream broke off: what is held back may be the start of the value, so it
			// is dropped, and the caller's stream is aborted rather than ended as if complete.
			c.status = -1
			h.cfg.Log.Warn("relay upstream broke off", "requestId", c.rid, "error", string(redact([]byte(err.Error()), c.secrets)))
			return
		}
	}
}

// finish answers err when there is one (in the API's error shape), and writes the call's one
// log line and one metrics line. It never writes the value: every message is redacted.
func (h *Handler) finish(w http.ResponseWriter, r *http.Request, c *call, err error) {
	aborted := c.status == -1
	if err != nil {
		c.status = writeError(w, err, c.rid)
	}
	if aborted {
		c.status = http.StatusBadGateway
	}
	d := time.Since(c.start)
	attrs := []slog.Attr{
		slog.String("requestId", c.rid), slog.String("route", "relay"), slog.String("method", r.Method),
		slog.String("tenant", c.tenant), slog.String("tokenId", c.tokenID), slog.String("host", c.host),
		slog.Int("status", c.status), slog.Int64("bytes", c.bytes), slog.Float64("durationMs", float64(d.Microseconds())/1000),
	}
	if c.consumer != nil {
		attrs = append(attrs, slog.String("consumerKind", c.consumer.Kind), slog.String("consumerId", c.consumer.ID))
	}
	if err != nil {
		e := token.As(err)
		attrs = append(attrs, slog.String("outcome", string(cmpReason(e))))
		if c.status >= 500 {
			attrs = append(attrs, slog.String("error", string(redact([]byte(e.Error()), c.secrets))))
		}
	}
	h.cfg.Log.LogAttrs(r.Context(), api.LogLevel(c.status), "relay", attrs...)
	if h.cfg.Metrics != nil && c.rec != nil {
		rec := c.rec
		rec.Add(metrics.Requests, 1)
		rec.Add(metrics.ClientErrors, b2f(c.status >= 400 && c.status < 500))
		rec.Add(metrics.ServerErrors, b2f(c.status >= 500))
		rec.Add(metrics.Latency, float64(d.Microseconds())/1000)
		consumer := ""
		if c.consumer != nil {
			consumer = c.consumer.Kind + "/" + c.consumer.ID
		}
		props := []metrics.Dimension{{Name: "requestId", Value: c.rid}, {Name: "tokenId", Value: c.tokenID},
			{Name: "consumer", Value: consumer}, {Name: "host", Value: c.host},
			{Name: "status", Value: strconv.Itoa(c.status)}, {Name: "bytes", Value: strconv.FormatInt(c.bytes, 10)}}
		if h.cfg.Props != nil {
			props = append(props, h.cfg.Props(r.Context())...)
		}
		line := rec.AppendEMF(make([]byte, 0, 1024), time.Now(), h.cfg.Dims, props...)
		h.metricsMu.Lock()
		h.cfg.Metrics.Write(append(line, '\n'))
		h.metricsMu.Unlock()
	}
	if aborted {
		panic(http.ErrAbortHandler)
	}
}

// recorder is the call's metrics: the invocation's when the caller has one (the function
// counted its cold start there), else a new one.
func recorder(ctx context.Context) *metrics.Recorder {
	if rec := metrics.FromContext(ctx); rec != nil {
		return rec
	}
	return &metrics.Recorder{}
}

func cmpReason(e *token.Error) token.Reason {
	if e.Reason != "" {
		return e.Reason
	}
	return token.Reason(e.Kind)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// writeError answers err in the API's error shape. Expired and retired tokens are 410 here (the
// relay's caller cannot fix them; resolve keeps its 403), and an upstream timeout is 504.
func writeError(w http.ResponseWriter, err error, rid string) int {
	status, body := api.Render(err)
	body.RequestID = rid
	switch token.As(err).Reason {
	case token.Expired, token.Replaced:
		status = http.StatusGone
	case reasonTimeout:
		status = http.StatusGatewayTimeout
	case reasonMethod:
		status = http.StatusMethodNotAllowed
	}
	body.Code, body.Status = status, http.StatusText(status)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Request-Id", rid)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "2")
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
	return status
}

// parseConsumer reads the X-Token-Consumer header; "" is no consumer.
func parseConsumer(h string) (*token.Consumer, error) {
	if h == "" {
		return nil, nil
	}
	var c token.Consumer
	if strings.HasPrefix(h, "{") {
		d := json.NewDecoder(strings.NewReader(h))
		d.DisallowUnknownFields()
		if err := d.Decode(&c); err != nil || strings.TrimSpace(h[d.InputOffset():]) != "" || !uniqueKeys(h) {
			// As the API reads JSON: one object, each key once (the decoder keeps the last of
			// two, a proxy reading the header may keep the first), nothing after it.
			return nil, token.InvalidField(ConsumerHeader, ConsumerHeader+` must be "kind:id" or {"kind":..,"id":..}`)
		}
	} else {
		var ok bool
		if c.Kind, c.ID, ok = strings.Cut(h, ":"); !ok {
			return nil, token.InvalidField(ConsumerHeader, ConsumerHeader+` must be "kind:id" or {"kind":..,"id":..}`)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// uniqueKeys says whether the JSON object h names each of its keys once (its values are
// strings: a consumer's kind and id).
func uniqueKeys(h string) bool {
	d := json.NewDecoder(strings.NewReader(h))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return false
	}
	seen := map[string]bool{}
	for d.More() {
		k, err := d.Token()
		key, ok := k.(string)
		if err != nil || !ok || seen[key] {
			return false
		}
		seen[key] = true
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return false
		}
	}
	return true
}

// requestID is the Lambda request id when there is one, else a random id.
func requestID(ctx context.Context) string {
	if lc, ok := lambdacontext.FromContext(ctx); ok && lc.AwsRequestID != "" {
		return lc.AwsRequestID
	}
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func hostname(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}
