// Package service is what the API does, free of HTTP: upsert (create, update, or create a
// replacement of another token), patch, delete, get and list tokens on a store, sealing new
// values on the way in; register, unregister and list a token's usages; read its audit trail
// (every change carries its event); and resolve a value for the platform's own services,
// opening it and recording refused or key-service-failed resolves.
package service

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"aitokens/pkg/query"
	"aitokens/pkg/seal"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

// Store is what the service needs of its storage; pkg/store's DynamoDB store implements it.
type Store interface {
	Get(ctx context.Context, tenant, id string) (token.Token, error)
	GetDigest(ctx context.Context, tenant, id string) (token.Token, []byte, error)
	GetSealed(ctx context.Context, tenant, id string) (token.Token, token.Sealed, error)
	GetMany(ctx context.Context, tenant string, ids []string) (store.ListResult, error)
	Count(ctx context.Context, tenant string) (int, error)
	ListPage(ctx context.Context, tenant string, o store.ListOrder, skip, size int) (store.ListResult, error)
	GetPage(ctx context.Context, tenant string, ids []string) (store.ListResult, error)
	Scan(ctx context.Context, tenant string, r store.ScanRange, fn func(tokens []token.Token, read int, more bool) error) (int, error)
	Create(ctx context.Context, t token.Token, sealed token.Sealed, ev token.Event) error
	Replace(ctx context.Context, t token.Token, sealed token.Sealed, grace time.Duration, ev token.Event) error
	Update(ctx context.Context, u store.Update, ev token.Event) error
	TouchLastUsed(ctx context.Context, tenant, id string, now time.Time) error
	DeleteUnused(ctx context.Context, tenant, id string, ev token.Event) error
	ForceDelete(ctx context.Context, tenant, id string, ev token.Event) error
	RegisterUsage(ctx context.Context, tenant, tokenID, kind, refID string, ev token.Event) (bool, error)
	UnregisterUsage(ctx context.Context, tenant, tokenID, kind, refID string, ev token.Event) error
	RecordEvent(ctx context.Context, tenant string, ev token.Event) error
	Events(ctx context.Context, tenant, tokenID string, pageNumber, pageSize, maxItems int) ([]token.Event, int, error)
	Usages(ctx context.Context, tenant, tokenID string) ([]token.Usage, error)
}

// Service holds the dependencies of every operation.
type Service struct {
	store        Store
	sealer       seal.Sealer
	now          func() time.Time
	maxItemsRead int
}

// New returns a service on a store and a sealer. The sealer may be nil for a service that
// never seals or opens a value (the read functions); now may be nil for the wall clock.
func New(st Store, sealer seal.Sealer, now func() time.Time) (*Service, error) {
	if st == nil {
		return nil, errors.New("service: no store")
	}
	if now == nil {
		now = time.Now
	}
	return &Service{store: st, sealer: sealer, now: now, maxItemsRead: query.MaxItemsRead}, nil
}

// WithMaxItemsRead is the service with another bound on the events one audit-trail page reads
// past (tests prove the bound with a small one rather than by writing ten thousand events).
func (s *Service) WithMaxItemsRead(n int) *Service {
	c := *s
	c.maxItemsRead = n
	return &c
}

// Meta is who makes a change and under which request: what its audit event records.
type Meta struct {
	RequestID string
	Actor     string // the caller's JWT sub
}

// event starts the audit event of a change made now.
func (s *Service) event(action string, m Meta) token.Event {
	return token.Event{At: s.now(), Action: action, Actor: m.Actor, RequestID: m.RequestID, Outcome: token.OutcomeSuccess}
}

// CanSeal reports whether the service was given a sealer: a route that seals or opens values
// is refused at startup without one.
func (s *Service) CanSeal() bool { return s.sealer != nil }

// Upsert is a PUT of one token. Pointer fields that are nil were absent from the body.
type Upsert struct {
	Tenant, ID string
	Name       *string
	Value      *string
	Generate   bool    // make the value here (create only) and return it, once
	Prefix     *string // of a generated value
	Version    *int
	ExpiresAt  *time.Time // a new expiry (any date, the zero time included)
	// RemoveExpiry is JSON null: the token no longer expires (refused on create).
	RemoveExpiry bool
	Restricted   *bool
	// Replaces names the token this create replaces (its usages are copied, it retires after
	// GraceSeconds: token.DefaultGraceSeconds when nil).
	Replaces     *string
	GraceSeconds *int
	// Egress is the token's egress policy (nil: absent or null). Set on create only; on an
	// existing token the same policy may be sent again, another is refused (like the value).
	// A replacement without one carries its predecessor's over.
	Egress *token.Egress
	Meta
}

// UpsertResult says whether the token was created and, for a generated value, the value: the
// one time it leaves the service through the public API.
type UpsertResult struct {
	Created   bool
	Generated string
}

// Upsert creates the token or updates it. A value can be given only once: re-sending the same
// value is accepted, a different one is refused (rotation = a new token).
func (s *Service) Upsert(ctx context.Context, in Upsert) (UpsertResult, error) {
	if err := checkUpsert(in); err != nil {
		return UpsertResult{}, err
	}
	current, digest, err := s.store.GetDigest(ctx, in.Tenant, in.ID)
	switch {
	case token.KindOf(err) == token.NotFound:
		if in.Version != nil {
			return UpsertResult{}, err // a version names an existing token
		}
		return s.create(ctx, in)
	case err != nil:
		return UpsertResult{}, err
	}
	if in.Generate {
		// Also what a client sees that retries a create whose response it lost: the value was
		// generated and stored by the first request and is never shown again.
		return UpsertResult{}, token.InvalidField("generate", "generate makes the value of a new token only; this token exists, "+
			"and a generated value is shown once: delete the token and create it again for a new value")
	}
	// A replacement links tokens at their creation only. The link read back and sent again
	// unchanged (a client that PUTs what it read, or repeats a replacing create whose answer it
	// lost) is a read-only field and ignored.
	if in.Replaces != nil && *in.Replaces != current.Replaces {
		return UpsertResult{}, token.InvalidField("replaces", "replaces goes with the creation of a token; "+in.ID+" exists already")
	}
	// graceSeconds beside that repeated link is the rest of the same replacing create, retried:
	// it answers as the retry without it does (the grace went with the creation; it changes nothing now).
	if in.GraceSeconds != nil && (in.Replaces == nil || current.Replaces == "") {
		return UpsertResult{}, token.InvalidField("graceSeconds", "graceSeconds goes with replaces, when a token is created")
	}
	if in.Egress != nil && !in.Egress.Equal(current.Egress) {
		return UpsertResult{}, token.InvalidField("egress", "egress cannot be changed once the token is created; "+
			"create a new token (with replaces) to change it")
	}
	if in.Value != nil && !seal.DigestMatches(digest, []byte(*in.Value)) {
		return UpsertResult{}, token.InvalidField("value", "value cannot be changed once the token is created; create a new token to rotate it")
	}
	// The version the caller sent, or none: then the store applies the update to the version it
	// finds (an unversioned write never conflicts, yet its event records the exact version it left).
	u := store.Update{Tenant: in.Tenant, ID: in.ID, Name: in.Name, ExpiresAt: in.ExpiresAt, RemoveExpiry: in.RemoveExpiry,
		Restricted: in.Restricted}
	if in.Version != nil {
		u.Version = *in.Version
	}
	return UpsertResult{}, s.store.Update(ctx, u, s.event(token.ActionUpdate, in.Meta))
}

// checkUpsert checks what can be checked without reading the token.
func checkUpsert(in Upsert) error {
	if in.Name == nil {
		return token.InvalidField("name", "name must not be null nor blank")
	}
	if err := token.ValidateName(*in.Name); err != nil {
		return err
	}
	switch {
	case in.Generate && in.Value != nil:
		return token.InvalidField("generate", "send either value or generate, not both")
	case in.Prefix != nil && !in.Generate:
		return token.InvalidField("prefix", "prefix goes with generate: true")
	case in.Prefix != nil:
		if err := token.ValidatePrefix(*in.Prefix); err != nil {
			return err
		}
	case in.Value != nil:
		if err := token.ValidateValue(*in.Value); err != nil {
			return err
		}
	}
	if in.Egress != nil {
		if err := in.Egress.Validate(); err != nil {
			return err
		}
	}
	if in.Version != nil && *in.Version < 1 {
		return token.InvalidField("metadata.version", "metadata.version must be 1 or more")
	}
	switch {
	case in.Replaces != nil && *in.Replaces == in.ID:
		return token.InvalidField("replaces", "a token cannot replace itself")
	case in.Replaces != nil:
		if err := token.ValidateID(*in.Replaces); err != nil {
			return token.InvalidField("replaces", "replaces must be a token id matching "+token.IDPattern)
		}
	case in.GraceSeconds != nil:
		return token.InvalidField("graceSeconds", "graceSeconds goes with replaces")
	}
	if in.GraceSeconds != nil && (*in.GraceSeconds < 0 || *in.GraceSeconds > token.MaxGraceSeconds) {
		return token.InvalidField("graceSeconds", fmt.Sprintf("graceSeconds must be a whole number from 0 to %d", token.MaxGraceSeconds))
	}
	return nil
}

func (s *Service) create(ctx context.Context, in Upsert) (UpsertResult, error) {
	now := s.now()
	var res UpsertResult
	switch {
	case in.Generate:
		generated, err := generateValue(in.Prefix)
		if err != nil {
			return res, token.InternalError(err)
		}
		in.Value, res.Generated = &generated, generated
	case in.Value == nil:
		return res, token.InvalidField("value", "value must not be null nor blank (or send generate: true)")
	}
	t := token.Token{Tenant: in.Tenant, ID: in.ID, Name: *in.Name, Version: 1, CreatedAt: now, ModifiedAt: now,
		Hint: token.HintOf(*in.Value)}
	if in.RemoveExpiry {
		return res, token.InvalidField("expiresAt", "expiresAt must be an RFC 3339 date-time, not null, when a token is created")
	}
	if in.ExpiresAt != nil {
		if err := token.ValidateExpiry(*in.ExpiresAt, now); err != nil {
			return res, err
		}
		t.ExpiresAt = in.ExpiresAt
	}
	if in.Restricted != nil {
		t.Restricted = *in.Restricted
	}
	t.Egress = in.Egress
	if in.Replaces != nil {
		// A replacement never widens who may resolve: the successor of a restricted token is
		// restricted (the store makes it so at the commit, whatever this read saw); asking for an
		// open successor of one is refused here, before any value is sealed. Nor where the value
		// may go: the predecessor's egress policy is carried over, or narrowed by the successor's
		// own. Decided before sealing, since the value is bound to the policy; the store refuses
		// the commit if the predecessor it finds has another policy.
		old, err := s.store.Get(ctx, in.Tenant, *in.Replaces)
		switch {
		case err != nil && token.KindOf(err) != token.NotFound:
			return res, err
		case err != nil: // the store's replace answers the missing predecessor
		case in.Restricted != nil && !*in.Restricted && old.Restricted:
			return res, token.InvalidField("restricted", "the successor of a restricted token is restricted: "+*in.Replaces+
				" is restricted, so restricted cannot be false on its replacement; loosen the new token with a PATCH of /restricted afterwards")
		case old.Egress != nil && t.Egress == nil:
			t.Egress = old.Egress
		case old.Egress != nil:
			if err := t.Egress.CheckNarrows(*old.Egress); err != nil {
				return res, err
			}
		}
	}
	value := []byte(*in.Value)
	sealed, err := s.sealer.Seal(ctx, seal.BindingOf(t), value)
	if err != nil {
		return res, err
	}
	if sealed.Digest, err = seal.Digest(value); err != nil {
		return res, token.InternalError(err)
	}
	// A retry of this very request (the SDK's, after a lost DynamoDB response) stores the
	// same sealed value under the same request id: the value returned is the value stored.
	ev := s.event(token.ActionCreate, in.Meta)
	if in.Replaces != nil {
		t.Replaces = *in.Replaces
		grace := token.DefaultGraceSeconds
		if in.GraceSeconds != nil {
			grace = *in.GraceSeconds
		}
		err = s.store.Replace(ctx, t, sealed, time.Duration(grace)*time.Second, ev)
	} else {
		err = s.store.Create(ctx, t, sealed, ev)
	}
	if err != nil {
		return res, err
	}
	res.Created = true
	return res, nil
}

// generateValue is GeneratedBytes from crypto/rand, base64url without padding, after prefix.
func generateValue(prefix *string) (string, error) {
	b := make([]byte, token.GeneratedBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	v := base64.RawURLEncoding.EncodeToString(b)
	if prefix != nil {
		v = *prefix + v
	}
	return v, nil
}

// PatchOp is one operation of a PATCH body.
type PatchOp struct {
	Op    string
	Path  string
	Value any
}

// Patch applies ops to the token, all or none, in one conditional write. /name, /expiresAt and
// /restricted may change; the value, the id and the metadata never.
func (s *Service) Patch(ctx context.Context, tenant, id string, ops []PatchOp, m Meta) error {
	u, err := patched(ops)
	if err != nil {
		return err
	}
	u.Tenant, u.ID = tenant, id
	return s.store.Update(ctx, u, s.event(token.ActionPatch, m))
}

// patched checks every op and returns the update they make together.
func patched(ops []PatchOp) (store.Update, error) {
	var u store.Update
	if len(ops) == 0 {
		return u, token.InvalidField("body", "a patch must hold at least one operation")
	}
	for _, op := range ops {
		kind := strings.ToUpper(op.Op)
		if kind != "ADD" && kind != "REPLACE" && kind != "REMOVE" {
			return u, token.InvalidField("op", "op must be ADD, REMOVE or REPLACE")
		}
		set := kind != "REMOVE"
		switch op.Path {
		case "/name":
			if !set {
				return u, token.InvalidField(op.Path, "name is required and cannot be removed")
			}
			name, ok := op.Value.(string)
			if !ok {
				return u, token.InvalidField(op.Path, "value of /name must be a string")
			}
			if err := token.ValidateName(name); err != nil {
				return u, err
			}
			u.Name = &name
		case "/expiresAt":
			u.ExpiresAt, u.RemoveExpiry = nil, !set
			if set {
				raw, ok := op.Value.(string)
				if !ok {
					return u, token.InvalidField(op.Path, "value of /expiresAt must be an RFC 3339 date-time string")
				}
				at, err := ParseExpiry(raw)
				if err != nil {
					return u, err
				}
				u.ExpiresAt = &at
			}
		case "/restricted":
			restricted := false // REMOVE: not restricted
			if set {
				b, ok := op.Value.(bool)
				if !ok {
					return u, token.InvalidField(op.Path, "value of /restricted must be true or false")
				}
				restricted = b
			}
			u.Restricted = &restricted
		case "/value":
			return u, token.InvalidField(op.Path, "value cannot be changed once the token is created; create a new token to rotate it")
		case "/egress":
			return u, token.InvalidField(op.Path, "egress cannot be changed once the token is created (it is bound to the value); "+
				"replace the token: create a new one with replaces and its own egress")
		default:
			if strings.HasPrefix(op.Path, "/egress/") {
				return u, token.InvalidField(op.Path, "egress cannot be changed once the token is created (it is bound to the value); "+
					"replace the token: create a new one with replaces and its own egress")
			}
			return u, token.InvalidField(op.Path, "only /name, /expiresAt and /restricted can be patched")
		}
	}
	return u, nil
}

// ParseExpiry reads an expiry date that round-trips exactly (token.ParseDate).
func ParseExpiry(raw string) (time.Time, error) { return token.ParseDate("expiresAt", raw) }

// lastUsedEvery is how often the resolve path records lastUsedAt at most.
const lastUsedEvery = time.Minute

// Resolve returns a token's plain value, for the platform's own services only (the internal
// resolve function; never a public route), and records when it was used. consumer may be nil;
// a restricted token resolves only for a consumer registered in its usages. Expiry, deletion
// and restriction are checked against one consistent read on every call.
func (s *Service) Resolve(ctx context.Context, tenant, id string, consumer *token.Consumer, requestID string) ([]byte, error) {
	_, value, err := s.resolveToken(ctx, tenant, id, consumer, requestID)
	return value, err
}

// resolveToken is Resolve with the token it read, whose Egress is the policy the value was
// opened under (the value opens only with the policy as stored, see seal.Binding): what the
// relay needs, through the same checks, the same warm cache and the same audit of refusals.
func (s *Service) resolveToken(ctx context.Context, tenant, id string, consumer *token.Consumer, requestID string) (token.Token, []byte, error) {
	t, value, err := s.resolve(ctx, tenant, id, consumer)
	if reason := refusal(err); reason != "" {
		// A refused resolve is recorded (who was refused what, and why), and so is one the key
		// service failed (the consumer got no value: an operator wants to see it on the token).
		// Bad input is not recorded, nor a failure of the store itself, which could not take
		// the record either. Losing the record must not change the answer.
		actor := "unnamed"
		if consumer != nil {
			actor = consumer.Kind + "/" + consumer.ID
		}
		_ = s.store.RecordEvent(ctx, tenant, token.Event{At: s.now(), Action: token.ActionResolve, Actor: actor,
			RequestID: requestID, TokenID: id, Version: t.Version, Outcome: reason})
	}
	return t, value, err
}

// refusal is the reason a resolve was refused or failed on the key service, "" otherwise.
func refusal(err error) string {
	e := token.As(err)
	switch {
	case err == nil:
		return ""
	case e.Kind == token.NotFound:
		return string(token.NotFound)
	case e.Reason == token.Expired || e.Reason == token.ConsumerRefused || e.Reason == token.Replaced,
		e.Reason == token.KeysUnavailable || e.Reason == token.KeysRefused:
		return string(e.Reason)
	}
	return ""
}

// resolve returns the token read (its version for the audit even when refused) and its value.
func (s *Service) resolve(ctx context.Context, tenant, id string, consumer *token.Consumer) (token.Token, []byte, error) {
	return s.resolveWith(ctx, tenant, id, consumer, nil, nil)
}

// resolveWith is resolve with a caller's own refusals (the relay's): admit decides from the
// token as read, after resolve's refusals and before the value is opened, so that what the
// item decides costs no KMS call and no write; accept decides from the opened value, before its
// use is recorded. Either may be nil.
func (s *Service) resolveWith(ctx context.Context, tenant, id string, consumer *token.Consumer,
	admit func(token.Token) error, accept func([]byte) error) (token.Token, []byte, error) {
	if err := token.ValidateTenant(tenant); err != nil {
		return token.Token{}, nil, err
	}
	if err := token.ValidateID(id); err != nil {
		return token.Token{}, nil, err
	}
	if consumer != nil {
		if err := consumer.Validate(); err != nil {
			return token.Token{}, nil, err
		}
	}
	t, sealed, err := s.store.GetSealed(ctx, tenant, id)
	if err != nil {
		return token.Token{}, nil, err
	}
	now := s.now()
	if t.ReplacedBy != "" && (t.Expired(now) || t.RetiresAt != nil && !now.Before(*t.RetiresAt)) {
		// Retired: whatever else changed since, a replaced token never resolves after its retirement.
		return t, nil, &token.Error{Kind: token.Forbidden, Reason: token.Replaced, ResourceID: id, Successor: t.ReplacedBy}
	}
	if t.Expired(now) {
		return t, nil, &token.Error{Kind: token.Forbidden, Reason: token.Expired, ResourceID: id}
	}
	if t.Restricted && (consumer == nil || !slices.Contains(t.Consumers, consumer.Key())) {
		return t, nil, &token.Error{Kind: token.Forbidden, Reason: token.ConsumerRefused, ResourceID: id}
	}
	if admit != nil {
		if err := admit(t); err != nil {
			return t, nil, err
		}
	}
	value, err := s.sealer.Open(ctx, seal.BindingOf(t), sealed)
	if err != nil {
		return t, nil, err
	}
	if accept != nil {
		if err := accept(value); err != nil {
			return t, nil, err
		}
	}
	// Written at most once a minute, and only asked for when the read says it is due, so that
	// a warm resolve is one GetItem. Losing the write must not lose the caller its value.
	if now.Sub(t.LastUsedAt) >= lastUsedEvery {
		_ = s.store.TouchLastUsed(ctx, tenant, id, now)
	}
	return t, value, nil
}

// Delete removes a token; a missing one is fine. A token in use is refused with a 409 that lists
// its users and offers a forced delete, unless force is set: then the token and its usages go.
func (s *Service) Delete(ctx context.Context, tenant, id string, force bool, m Meta) error {
	if force {
		return s.store.ForceDelete(ctx, tenant, id, s.event(token.ActionForceDelete, m))
	}
	err := s.store.DeleteUnused(ctx, tenant, id, s.event(token.ActionDelete, m))
	if !errors.Is(err, store.ErrInUse) {
		return err
	}
	usages, err := s.store.Usages(ctx, tenant, id)
	if err != nil {
		return err
	}
	return &token.Error{Kind: token.Conflict, Reason: token.InUse, ResourceID: id, Usages: usages}
}

// RegisterUsage records that kind/refID uses the token (created = false if it already did).
func (s *Service) RegisterUsage(ctx context.Context, tenant, id, kind, refID string, m Meta) (bool, error) {
	if err := token.ValidateUsage(kind, refID); err != nil {
		return false, err
	}
	return s.store.RegisterUsage(ctx, tenant, id, kind, refID, s.event(token.ActionUsageRegister, m))
}

// UnregisterUsage removes a usage; a missing one is fine.
func (s *Service) UnregisterUsage(ctx context.Context, tenant, id, kind, refID string, m Meta) error {
	if err := token.ValidateUsage(kind, refID); err != nil {
		return err
	}
	return s.store.UnregisterUsage(ctx, tenant, id, kind, refID, s.event(token.ActionUsageUnregister, m))
}

// Events returns one page of a token's audit trail, newest first, and its length; the token
// may have been deleted.
func (s *Service) Events(ctx context.Context, tenant, id string, page query.Page) ([]token.Event, int, error) {
	return s.store.Events(ctx, tenant, id, page.Number, page.Size, s.maxItemsRead)
}

// Usages returns one page of a token's usages and their total; a missing token is a 404.
func (s *Service) Usages(ctx context.Context, tenant, id string, page query.Page) ([]token.Usage, int, error) {
	if _, err := s.store.Get(ctx, tenant, id); err != nil {
		return nil, 0, err
	}
	usages, err := s.store.Usages(ctx, tenant, id)
	if err != nil {
		return nil, 0, err
	}
	return query.PageOf(page, usages), len(usages), nil
}

// Get returns one token.
func (s *Service) Get(ctx context.Context, tenant, id string) (token.Token, error) {
	return s.store.Get(ctx, tenant, id)
}

// List is a list or search request, checked.
type List struct {
	Tenant string
	Query  *query.Query
	Sort   []query.SortKey
	Page   query.Page
}

// ListResult is one page of tokens, the number of matches and the items DynamoDB read.
type ListResult struct {
	Tokens    []token.Token
	Total     int
	ItemsRead int
}

// matched is a token with the document q and sort read.
type matched struct {
	token token.Token
	doc   map[string]any
}

// List returns the tenant's matching tokens, sorted and paged, reading as README "What a list
// costs" says: a query on ids reads those keys; no query in an order a list index serves reads
// the page (and the keys before it) with the count from the tenant's counter; any other query
// reads the listing attributes of the tokens it may match (a name prefix's range of the name
// index, or all of them from the narrowest index that holds what it reads), in bounded pages,
// keeping only the best (pageNumber × pageSize) matches, and is refused (too_many_to_read)
// as soon as it is seen not to finish before the request's deadline.
func (s *Service) List(ctx context.Context, in List) (ListResult, error) {
	if ids, ok := in.Query.IDs(); ok {
		res, err := s.store.GetMany(ctx, in.Tenant, ids)
		if err != nil {
			return ListResult{}, err
		}
		var all []matched
		for _, t := range res.Tokens {
			if doc := t.Document(); in.Query.Match(doc) {
				all = append(all, matched{t, doc})
			}
		}
		return s.page(in, all, len(all), res.ItemsRead), nil
	}
	skip := (in.Page.Number - 1) * in.Page.Size
	if o, ok := indexOrder(in.Sort); ok && in.Query == nil {
		total, err := s.store.Count(ctx, in.Tenant)
		if err != nil || skip >= total {
			return ListResult{Tokens: []token.Token{}, Total: total}, err
		}
		res, err := s.store.ListPage(ctx, in.Tenant, o, skip, in.Page.Size)
		if err != nil {
			return ListResult{}, err
		}
		return ListResult{Tokens: res.Tokens, Total: total, ItemsRead: res.ItemsRead}, nil
	}
	return s.scan(ctx, in, skip)
}

// indexOrder is the list index order of sort keys: one field a list index orders by, then id
// ascending (ParseSort's tie-breaker; after id nothing else counts).
func indexOrder(keys []query.SortKey) (store.ListOrder, bool) {
	if len(keys) == 0 || !store.OrderFields[keys[0].Field] {
		return store.ListOrder{}, false
	}
	// The key after the first must be id ascending (or absent); what follows id never counts.
	if keys[0].Field != "id" && len(keys) > 1 && (keys[1].Field != "id" || keys[1].Desc) {
		return store.ListOrder{}, false
	}
	return store.ListOrder{Field: keys[0].Field, Desc: keys[0].Desc}, true
}

// scanMargin is the part of the time left that a scan keeps for what follows its last page
// (the page's items, the answer).
const scanMargin = 0.2

// scan is List for a query no index answers: it reads the candidates in bounded pages, matches
// and keeps the best skip+size. It estimates, after each page, the time the rest will take
// from the time the pages so far took (on s.now), and refuses once that does not fit in the
// request's time left (on the wall clock: the deadline is one).
func (s *Service) scan(ctx context.Context, in List, skip int) (ListResult, error) {
	fields := in.Query.Fields()
	for _, k := range in.Sort {
		fields[k.Field] = true
	}
	r := store.ScanRange{NameOnly: true}
	for f := range fields {
		if f != "id" && f != "name" {
			r.NameOnly = false
		}
	}
	r.NamePrefix, r.Exact, _ = in.Query.NamePrefix()
	count, err := s.store.Count(ctx, in.Tenant)
	if err != nil {
		return ListResult{}, err
	}
	expected := count // the entries a full scan reads; unknown (-1) for a name's range
	if r.NamePrefix != "" {
		expected = -1
	}
	keep := skip + in.Page.Size
	var best []matched
	total, start := 0, s.now()
	deadline, bounded := ctx.Deadline()
	read, err := s.store.Scan(ctx, in.Tenant, r, func(tokens []token.Token, read int, more bool) error {
		for _, t := range tokens {
			if doc := t.Document(); in.Query.Match(doc) {
				total++
				best = append(best, matched{t, doc})
			}
		}
		if len(best) > 2*keep+100 { // keep only the best: memory follows the page, not the tenant
			query.Sort(best, func(m matched) map[string]any { return m.doc }, in.Sort)
			best = slices.Delete(best, keep, len(best))
		}
		if !more || !bounded || read == 0 {
			return nil
		}
		perItem := s.now().Sub(start) / time.Duration(read)
		rest := time.Duration(store.ScanPageItems) * perItem // at least one more page, if any
		if expected > read {
			rest = time.Duration(expected-read) * perItem
		}
		if left := time.Until(deadline); float64(rest) > float64(left)*(1-scanMargin) {
			return &token.Error{Kind: token.Invalid, Reason: token.TooManyToRead, Limit: count}
		}
		return nil
	})
	if err != nil {
		return ListResult{}, err
	}
	res := s.page(in, best, total, read)
	if r.NameOnly && len(res.Tokens) > 0 { // the page's tokens carry only id and name: read them
		ids := make([]string, len(res.Tokens))
		for i, t := range res.Tokens {
			ids[i] = t.ID
		}
		got, err := s.store.GetPage(ctx, in.Tenant, ids)
		if err != nil {
			return ListResult{}, err
		}
		res.Tokens, res.ItemsRead = got.Tokens, res.ItemsRead+got.ItemsRead
	}
	return res, nil
}

// page sorts the matches and cuts the requested page.
func (s *Service) page(in List, all []matched, total, read int) ListResult {
	query.Sort(all, func(m matched) map[string]any { return m.doc }, in.Sort)
	page := query.PageOf(in.Page, all)
	out := ListResult{Tokens: make([]token.Token, len(page)), Total: total, ItemsRead: read}
	for i, m := range page {
		out.Tokens[i] = m.token
	}
	return out
}
