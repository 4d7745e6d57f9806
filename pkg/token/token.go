package token

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits of what one token may hold. The HTTP body limit (64 KiB) bounds the value further.
const (
	MaxNameLength  = 256
	MaxValueLength = 16 * 1024
)

// The patterns of tenants and token ids, as the OpenAPI document states them.
const (
	TenantPattern = `^[a-z][a-z0-9]{2,15}$`
	IDPattern     = `^[A-Za-z0-9_-]{1,66}$`
)

var (
	tenantPattern = mustPattern(TenantPattern)
	idPattern     = mustPattern(IDPattern)
)

// TimeFormat is how every timestamp is stored and shown: RFC 3339, UTC, milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z"

// FormatTime renders t in TimeFormat.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeFormat) }

// Token is what the service knows of a token apart from its sealed value.
type Token struct {
	Tenant     string
	ID         string
	Name       string
	Version    int
	CreatedAt  time.Time
	ModifiedAt time.Time
	LastUsedAt time.Time // zero until the value is first resolved
	UsageCount int
	ExpiresAt  *time.Time // nil: never expires (any date, even the zero time, is an expiry)
	Restricted bool       // resolves only for a consumer registered in its usages
	Hint       string     // "…" and the value's last 4 characters; "" for short values
	// Consumers are the usages (as Usage.Key) that may resolve a restricted token; only the
	// resolve read fills it.
	Consumers []string
	// Replaces and ReplacedBy link a token and its successor (read-only, set by a replacing
	// create): the old one retires at its expiresAt, after which resolve names the successor.
	Replaces   string
	ReplacedBy string
	// RetiresAt is when a replaced token stops resolving, set by the replacement and only ever
	// moved earlier (nil for a token never replaced): resolve refuses it after, whatever its
	// expiresAt says. Not shown: a replaced token's expiresAt is never later.
	RetiresAt *time.Time
	// Egress is the token's egress policy (nil: none), set on create and immutable like the
	// value; see Egress.
	Egress *Egress
}

// Replacement bounds: the grace an old token keeps resolving after its successor is created.
const (
	MaxGraceSeconds     = 90 * 24 * 3600 // 7,776,000
	DefaultGraceSeconds = 7 * 24 * 3600  // 604,800
)

// Expired reports whether the token has expired at now.
func (t Token) Expired(now time.Time) bool { return t.ExpiresAt != nil && !now.Before(*t.ExpiresAt) }

// Hint rules: a value of at least HintMinLength characters gets "…" and its last HintLength.
const (
	HintMinLength = 16
	HintLength    = 4
)

// HintOf is the hint of value, "" when the value is too short to give 4 characters away.
func HintOf(value string) string {
	runes := []rune(value)
	if len(runes) < HintMinLength {
		return ""
	}
	return "…" + string(runes[len(runes)-HintLength:])
}

// Sealed is a token value as stored: an envelope whose data key is wrapped by a master key
// (local file or KMS). Algorithm names the scheme so that a later one can be read side by side.
type Sealed struct {
	KeyID      string
	Algorithm  string
	WrappedKey []byte
	Nonce      []byte
	Ciphertext []byte
	// Digest lets an update check "same value" without unwrapping the data key (which would
	// need kms:Decrypt in the upsert function); see pkg/seal.Digest.
	Digest []byte
}

// Document is the token as the API shows it and as the q language and fields see it.
func (t Token) Document() map[string]any {
	meta := map[string]any{
		"version":    t.Version,
		"createdAt":  FormatTime(t.CreatedAt),
		"modifiedAt": FormatTime(t.ModifiedAt),
		"usageCount": t.UsageCount,
	}
	if !t.LastUsedAt.IsZero() {
		meta["lastUsedAt"] = FormatTime(t.LastUsedAt)
	}
	if t.Hint != "" {
		meta["hint"] = t.Hint
	}
	doc := map[string]any{"id": t.ID, "name": t.Name, "metadata": meta}
	// Shown only when set, so that a token that uses neither looks exactly as before.
	if t.ExpiresAt != nil {
		doc["expiresAt"] = FormatTime(*t.ExpiresAt)
	}
	if t.Restricted {
		doc["restricted"] = true
	}
	if t.Replaces != "" {
		doc["replaces"] = t.Replaces
	}
	if t.ReplacedBy != "" {
		doc["replacedBy"] = t.ReplacedBy
	}
	if t.Egress != nil {
		doc["egress"] = map[string]any{
			"allowedHosts": append([]string{}, t.Egress.AllowedHosts...),
			"inject":       map[string]any{"in": t.Egress.Inject.In, "name": t.Egress.Inject.Name, "template": t.Egress.Inject.Template},
		}
	}
	return doc
}

// Fields lists the dotted paths of Document that q, sort and fields may name, with their type.
var Fields = map[string]FieldType{
	"id":                  String,
	"name":                String,
	"metadata.version":    Number,
	"metadata.createdAt":  Date,
	"metadata.modifiedAt": Date,
	"metadata.lastUsedAt": Date,
	"metadata.usageCount": Number,
	"metadata.hint":       String,
	"expiresAt":           Date,
	"restricted":          Bool, // absent reads as false
	"replaces":            String,
	"replacedBy":          String,
}

// FieldType is the type of a document field, used to type-check queries and sorts.
type FieldType int

const (
	String FieldType = iota
	Number
	Date
	Bool
)

// ValidateTenant checks a tenant name from a path.
func ValidateTenant(tenant string) error {
	if !tenantPattern.MatchString(tenant) {
		return InvalidField("tenant", "tenant must match "+TenantPattern)
	}
	return nil
}

// ValidateID checks a token id from a path.
func ValidateID(id string) error {
	if !idPattern.MatchString(id) {
		return InvalidField("id", "token id must match "+IDPattern)
	}
	return nil
}

// ValidateName checks a token name: present, not blank, printable, bounded.
func ValidateName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return InvalidField("name", "name must not be null nor blank")
	case !utf8.ValidString(name):
		return InvalidField("name", "name must be valid UTF-8")
	case utf8.RuneCountInString(name) > MaxNameLength:
		return InvalidField("name", fmt.Sprintf("name must be at most %d characters", MaxNameLength))
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return InvalidField("name", "name must not contain control characters")
	}
	return nil
}

// ValidateValue checks a token value for creation. The value itself never appears in a message.
func ValidateValue(value string) error {
	switch {
	case value == "":
		return InvalidField("value", "value must not be null nor blank")
	case len(value) > MaxValueLength:
		return InvalidField("value", fmt.Sprintf("value must be at most %d bytes", MaxValueLength))
	case !utf8.ValidString(value):
		return InvalidField("value", "value must be valid UTF-8")
	}
	return nil
}

// Usage is one registered user of a token: an agent, MCP server, tool or OAuth client.
type Usage struct {
	Kind      string
	RefID     string
	CreatedAt time.Time
}

// Key names the usage as a restricted token's consumers list holds it.
func (u Usage) Key() string { return u.Kind + "#" + u.RefID }

// Consumer is who asks the resolve function for a value: one of the usage kinds and its id.
type Consumer struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

// Key is the consumer as a usage key.
func (c Consumer) Key() string { return Usage{Kind: c.Kind, RefID: c.ID}.Key() }

// Validate checks a consumer like a usage.
func (c Consumer) Validate() error {
	if err := ValidateUsage(c.Kind, c.ID); err != nil {
		e := As(err)
		e.Details[0].Field = "consumer." + map[string]string{"kind": "kind", "refId": "id"}[e.Details[0].Field]
		return e
	}
	return nil
}

// MaxFractionDigits is the finest fraction a date may carry: nanoseconds, as Go's time.Time
// JSON writes them (Python's isoformat writes 6 digits). A finer one is refused rather than cut
// silently by the parser (Go's drops digits after the ninth).
const MaxFractionDigits = 9

// ParseInstant reads an RFC 3339 date-time with a time and an offset, of at most
// MaxFractionDigits fractional digits, and cuts it to the millisecond as TimeFormat stores it
// (truncated, not rounded, as Format does). Both a stored date and a date in q are read by it,
// so q on the string a client sent finds what was stored from that same string.
func ParseInstant(raw string) (time.Time, error) {
	at, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		return time.Time{}, err
	}
	// The date and the clock hold no '.' or ',': the first one starts the fraction.
	if i := strings.IndexAny(raw, ".,"); i >= 0 {
		n := 0
		for _, c := range raw[i+1:] {
			if c < '0' || c > '9' {
				break
			}
			n++
		}
		if n > MaxFractionDigits {
			return time.Time{}, fmt.Errorf("%d fractional digits, more than %d", n, MaxFractionDigits)
		}
	}
	return at.Add(-time.Duration(at.Nanosecond() % int(time.Millisecond))), nil
}

// ParseDate reads a date-time that the service stores and shows again (ParseInstant), cut to
// the millisecond; what it returns is what GET shows, in TimeFormat. It refuses what would be
// stored as something else: an offset of 24 hours or more (Go accepts "+24:00"), a UTC year
// outside 0000-9999 (stored as year 10000, shown nowhere, invisible to q and sort) and more than
// MaxFractionDigits fractional digits.
func ParseDate(field, raw string) (time.Time, error) {
	at, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		return time.Time{}, InvalidField(field, field+" must be an RFC 3339 date-time such as 2027-01-31T00:00:00Z")
	}
	if _, offset := at.Zone(); offset <= -24*3600 || offset >= 24*3600 {
		return time.Time{}, InvalidField(field, field+" must have a UTC offset between -23:59 and +23:59")
	}
	if y := at.UTC().Year(); y < 0 || y > 9999 {
		return time.Time{}, InvalidField(field, field+" must lie between the years 0000 and 9999 in UTC")
	}
	if at, err = ParseInstant(raw); err != nil {
		return time.Time{}, InvalidField(field, fmt.Sprintf("%s must have at most %d fractional digits (it is kept to the millisecond)", field, MaxFractionDigits))
	}
	return at.UTC(), nil
}

// ValidateExpiry checks an expiry date given on create: it must lie in the future.
func ValidateExpiry(at, now time.Time) error {
	if !at.After(now) {
		return InvalidField("expiresAt", "expiresAt must be in the future when a token is created")
	}
	return nil
}

// Prefix rules of a generated value.
const (
	PrefixPattern = `^[A-Za-z0-9_-]{1,16}$`
	// GeneratedBytes is the randomness of a generated value (base64url, 43 characters).
	GeneratedBytes = 32
)

var prefixPattern = mustPattern(PrefixPattern)

// ValidatePrefix checks the prefix of a generated value.
func ValidatePrefix(prefix string) error {
	if !prefixPattern.MatchString(prefix) {
		return InvalidField("prefix", "prefix must match "+PrefixPattern)
	}
	return nil
}

// UsageKinds are the kinds of things that can use a token.
var UsageKinds = []string{"agent", "mcp-server", "tool", "oauth-client"}

// RefIDPattern is the pattern of a usage's reference id.
const RefIDPattern = `^[A-Za-z0-9_.:-]{1,128}$`

var refIDPattern = mustPattern(RefIDPattern)

// ValidateUsage checks the kind and reference id of a usage.
func ValidateUsage(kind, refID string) error {
	if !slices.Contains(UsageKinds, kind) {
		return InvalidField("kind", "kind must be one of "+strings.Join(UsageKinds, ", "))
	}
	if !refIDPattern.MatchString(refID) {
		return InvalidField("refId", "refId must match "+RefIDPattern)
	}
	return nil
}
