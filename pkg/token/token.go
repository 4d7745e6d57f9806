package token

import (
	"fmt"
	"regexp"
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
	tenantPattern = regexp.MustCompile(TenantPattern)
	idPattern     = regexp.MustCompile(IDPattern)
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
	return map[string]any{"id": t.ID, "name": t.Name, "metadata": meta}
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

// UsageKinds are the kinds of things that can use a token.
var UsageKinds = []string{"agent", "mcp-server", "tool", "oauth-client"}

// RefIDPattern is the pattern of a usage's reference id.
const RefIDPattern = `^[A-Za-z0-9_.:-]{1,128}$`

var refIDPattern = regexp.MustCompile(RefIDPattern)

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
