package token

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Egress is a token's egress policy: the only hosts the relay may send the value to, and how it
// puts the value into the request. It is set when the token is created and never changes
// (like the value), and its Digest is bound into the value's encryption context, so a policy
// rewritten in the store behind the service's back makes the value impossible to open.
type Egress struct {
	AllowedHosts []string `json:"allowedHosts"`
	Inject       Inject   `json:"inject"`
}

// Inject says where the relay puts the value: a header or a query parameter named Name, whose
// content is Template with its one "{{value}}" replaced by the value.
type Inject struct {
	In       string `json:"in"`
	Name     string `json:"name"`
	Template string `json:"template"`
}

// Egress bounds.
const (
	MaxAllowedHosts     = 16
	MaxHostLength       = 253
	MaxInjectNameLength = 128
	MaxTemplateLength   = 256
	ValuePlaceholder    = "{{value}}"
	InjectHeader        = "header"
	InjectQuery         = "query"
	DefaultEgressPort   = 443 // an allowed host without a port admits https' port only
)

// forbiddenHeaders are the headers the relay must not set from a template: they frame or route
// the request (Host, Content-Length, Transfer-Encoding) or are hop-by-hop (RFC 9110 7.6.1).
var forbiddenHeaders = []string{
	"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer",
	"upgrade", "proxy-connection", "proxy-authenticate", "proxy-authorization", "expect",
}

// Validate checks the policy; the error names the field at fault, e.g. egress.allowedHosts[2].
// Host names must already be lowercase (they are refused, not folded, so the digest is of
// exactly what was sent and shown); IP literals are refused, so the policy names hosts only.
func (e Egress) Validate() error {
	switch n := len(e.AllowedHosts); {
	case n == 0:
		return InvalidField("egress.allowedHosts", "egress.allowedHosts must list at least one host")
	case n > MaxAllowedHosts:
		return InvalidField("egress.allowedHosts", fmt.Sprintf("egress.allowedHosts must list at most %d hosts", MaxAllowedHosts))
	}
	for i, h := range e.AllowedHosts {
		field := fmt.Sprintf("egress.allowedHosts[%d]", i)
		if err := validateAllowedHost(h); err != "" {
			return InvalidField(field, field+" "+err)
		}
		if slices.Contains(e.AllowedHosts[:i], h) {
			return InvalidField(field, field+" repeats an earlier host")
		}
	}
	return e.Inject.validate()
}

func (in Inject) validate() error {
	switch in.In {
	case InjectHeader:
		if err := validateHeaderName(in.Name); err != "" {
			return InvalidField("egress.inject.name", "egress.inject.name "+err)
		}
	case InjectQuery:
		if err := validateQueryKey(in.Name); err != "" {
			return InvalidField("egress.inject.name", "egress.inject.name "+err)
		}
	default:
		return InvalidField("egress.inject.in", `egress.inject.in must be "header" or "query"`)
	}
	t := in.Template
	switch {
	case len(t) > MaxTemplateLength:
		return InvalidField("egress.inject.template", fmt.Sprintf("egress.inject.template must be at most %d bytes", MaxTemplateLength))
	case strings.Count(t, ValuePlaceholder) != 1:
		return InvalidField("egress.inject.template", "egress.inject.template must contain {{value}} exactly once")
	}
	rest := strings.Replace(t, ValuePlaceholder, "", 1)
	if strings.Contains(rest, "{{") || strings.Contains(rest, "}}") {
		return InvalidField("egress.inject.template", "egress.inject.template must not contain {{ or }} besides {{value}}")
	}
	for i := 0; i < len(rest); i++ {
		// Visible ASCII and space only: no CR/LF (header splitting), no other control bytes.
		if c := rest[i]; c < 0x20 || c > 0x7e {
			return InvalidField("egress.inject.template", "egress.inject.template must be printable ASCII (no CR, LF or control characters)")
		}
	}
	return nil
}

// validateAllowedHost returns what is wrong with one allowedHosts entry, "" when it is valid:
// a lowercase DNS name, optionally ":port"; no scheme, path, wildcard, userinfo or IP literal.
func validateAllowedHost(entry string) string {
	host, port, hasPort := strings.Cut(entry, ":")
	if hasPort {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return "must be a host name with an optional :port between 1 and 65535 (no scheme, path or IPv6 literal)"
		}
	}
	if strings.Contains(host, "*") {
		return "must not contain a wildcard"
	}
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return "must be a host name, not an IP address"
	}
	if host == "" || len(host) > MaxHostLength {
		return fmt.Sprintf("must be a host name of 1 to %d characters", MaxHostLength)
	}
	labels := strings.Split(host, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "must be a host name of dot-separated labels of 1 to 63 characters (a-z, 0-9, -), without a trailing dot"
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if c >= 'A' && c <= 'Z' {
				return "must be lowercase"
			}
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "must be a host name (a-z, 0-9, - and dots; no scheme, path, user or port other than :port)"
			}
		}
	}
	// A last label of digits only is how IPv4 shorthands ("127.1", "0x7f.1" aside) read.
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return "must be a host name, not an IP address"
	}
	return ""
}

// validateHeaderName: an RFC 9110 token, bounded, and not one the relay must own.
func validateHeaderName(name string) string {
	if name == "" || len(name) > MaxInjectNameLength {
		return fmt.Sprintf("must be a header name of 1 to %d characters", MaxInjectNameLength)
	}
	for i := 0; i < len(name); i++ {
		if !isTchar(name[i]) {
			return "must be a header name (RFC 9110 token characters only)"
		}
	}
	if slices.Contains(forbiddenHeaders, strings.ToLower(name)) {
		return "must not be a framing or hop-by-hop header (" + strings.Join(forbiddenHeaders, ", ") + ")"
	}
	return ""
}

// validateQueryKey: unreserved characters of RFC 3986 only, so the key needs no escaping.
func validateQueryKey(name string) string {
	if name == "" || len(name) > MaxInjectNameLength {
		return fmt.Sprintf("must be a query key of 1 to %d characters", MaxInjectNameLength)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0) {
			return "must be a query key of A-Z, a-z, 0-9, -, ., _ and ~ only"
		}
	}
	return ""
}

func isTchar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// AllowsHost reports whether the policy admits a request to hostport ("host" or "host:port",
// as in a URL's Host). Host names compare case-insensitively; an entry without a port admits
// port 443 only (and hostport without a port, which https reads as 443); an entry with a port
// admits exactly that port. Anything unparsable is refused.
func (e Egress) AllowsHost(hostport string) bool {
	host, port, hasPort := strings.Cut(strings.ToLower(hostport), ":")
	if !hasPort {
		port = strconv.Itoa(DefaultEgressPort)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return false
	}
	if host == "" {
		return false
	}
	for _, entry := range e.AllowedHosts {
		h, p, ok := strings.Cut(entry, ":")
		if !ok {
			p = strconv.Itoa(DefaultEgressPort)
		}
		if h == host && p == port {
			return true
		}
	}
	return false
}

// Canonical is the policy as one fixed JSON text: fields in a fixed order, hosts sorted (the
// order of allowedHosts means nothing). Digest hashes it; equal policies have equal bytes.
func (e Egress) Canonical() []byte {
	hosts := slices.Clone(e.AllowedHosts)
	if hosts == nil {
		hosts = []string{}
	}
	slices.Sort(hosts)
	b, err := json.Marshal(Egress{AllowedHosts: hosts, Inject: e.Inject})
	if err != nil {
		panic(err) // strings and a slice of strings always marshal
	}
	return b
}

// Digest is the hex SHA-256 of Canonical: what the encryption context binds to the value.
func (e Egress) Digest() string {
	sum := sha256.Sum256(e.Canonical())
	return hex.EncodeToString(sum[:])
}

// Equal reports whether two policies are the same (nil is "no policy").
func (e *Egress) Equal(o *Egress) bool {
	if e == nil || o == nil {
		return e == o
	}
	return string(e.Canonical()) == string(o.Canonical())
}

// CheckNarrows refuses a replacement's own policy that widens its predecessor's (old): every
// host it allows must be one old allows (the same entry, port included). How the value is put
// into the request may change; where it may go only shrinks.
func (e Egress) CheckNarrows(old Egress) error {
	for i, h := range e.AllowedHosts {
		if !slices.Contains(old.AllowedHosts, h) {
			field := fmt.Sprintf("egress.allowedHosts[%d]", i)
			return InvalidField(field, field+" "+strconv.Quote(h)+" is not allowed by the egress policy of the token this one replaces: "+
				"a replacement may only narrow its predecessor's allowedHosts ("+strings.Join(old.AllowedHosts, ", ")+"); create an unlinked token to go elsewhere")
		}
	}
	return nil
}
