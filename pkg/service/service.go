// Package service is what the API does, free of HTTP: upsert, patch, delete, get and list tokens
// on a store, sealing new values on the way in.
package service

import (
	"context"
	"errors"
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
	List(ctx context.Context, tenant string, maxItems int) (store.ListResult, error)
	Create(ctx context.Context, t token.Token, sealed token.Sealed, requestID string) error
	Rename(ctx context.Context, r store.Rename) error
	TouchLastUsed(ctx context.Context, tenant, id string, now time.Time) error
	DeleteUnused(ctx context.Context, tenant, id string) error
	ForceDelete(ctx context.Context, tenant, id string) error
	RegisterUsage(ctx context.Context, tenant, tokenID, kind, refID string, now time.Time) (bool, error)
	UnregisterUsage(ctx context.Context, tenant, tokenID, kind, refID string) error
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

// WithMaxItemsRead is the service with another bound on the items one list reads (tests prove
// the bound with a small one rather than by seeding ten thousand tokens).
func (s *Service) WithMaxItemsRead(n int) *Service {
	c := *s
	c.maxItemsRead = n
	return &c
}

// CanSeal reports whether the service was given a sealer: a route that seals or opens values
// is refused at startup without one.
func (s *Service) CanSeal() bool { return s.sealer != nil }

// Upsert is a PUT of one token. Fields that are nil were absent from the body.
type Upsert struct {
	Tenant, ID string
	Name       *string
	Value      *string
	Version    *int
	RequestID  string
}

// Upsert creates the token (created = true) or renames it. A value can be given only once:
// re-sending the same value is accepted, a different one is refused (rotation = a new token).
func (s *Service) Upsert(ctx context.Context, in Upsert) (created bool, err error) {
	if in.Name == nil {
		return false, token.InvalidField("name", "name must not be null nor blank")
	}
	if err := token.ValidateName(*in.Name); err != nil {
		return false, err
	}
	if in.Value != nil {
		if err := token.ValidateValue(*in.Value); err != nil {
			return false, err
		}
	}
	if in.Version != nil && *in.Version < 1 {
		return false, token.InvalidField("metadata.version", "metadata.version must be 1 or more")
	}
	_, digest, err := s.store.GetDigest(ctx, in.Tenant, in.ID)
	switch {
	case token.KindOf(err) == token.NotFound:
		if in.Version != nil {
			return false, err // a version names an existing token
		}
		return true, s.create(ctx, in)
	case err != nil:
		return false, err
	}
	if in.Value != nil && !seal.DigestMatches(digest, []byte(*in.Value)) {
		return false, token.InvalidField("value", "value cannot be changed once the token is created; create a new token to rotate it")
	}
	r := store.Rename{Tenant: in.Tenant, ID: in.ID, Name: *in.Name, RequestID: in.RequestID, Now: s.now()}
	if in.Version != nil {
		r.ExpectedVersion = *in.Version
	}
	return false, s.store.Rename(ctx, r)
}

func (s *Service) create(ctx context.Context, in Upsert) error {
	if in.Value == nil {
		return token.InvalidField("value", "value must not be null nor blank")
	}
	value := []byte(*in.Value)
	sealed, err := s.sealer.Seal(ctx, in.Tenant, in.ID, value)
	if err != nil {
		return err
	}
	if sealed.Digest, err = seal.Digest(value); err != nil {
		return token.InternalError(err)
	}
	now := s.now()
	t := token.Token{Tenant: in.Tenant, ID: in.ID, Name: *in.Name, Version: 1, CreatedAt: now, ModifiedAt: now}
	return s.store.Create(ctx, t, sealed, in.RequestID)
}

// PatchOp is one operation of a PATCH body.
type PatchOp struct {
	Op    string
	Path  string
	Value any
}

// Patch applies ops to the token's name, all or none, in one conditional write.
func (s *Service) Patch(ctx context.Context, tenant, id string, ops []PatchOp, requestID string) error {
	name, err := patchedName(ops)
	if err != nil {
		return err
	}
	return s.store.Rename(ctx, store.Rename{Tenant: tenant, ID: id, Name: name, RequestID: requestID, Now: s.now()})
}

// patchedName checks every op and returns the name they leave. Only /name may change.
func patchedName(ops []PatchOp) (string, error) {
	if len(ops) == 0 {
		return "", token.InvalidField("body", "a patch must hold at least one operation")
	}
	var name *string
	for _, op := range ops {
		switch op.Path {
		case "/name":
		case "/value":
			return "", token.InvalidField(op.Path, "value cannot be changed once the token is created; create a new token to rotate it")
		default:
			return "", token.InvalidField(op.Path, "only /name can be patched")
		}
		switch strings.ToUpper(op.Op) {
		case "ADD", "REPLACE":
			s, ok := op.Value.(string)
			if !ok {
				return "", token.InvalidField(op.Path, "value of /name must be a string")
			}
			if err := token.ValidateName(s); err != nil {
				return "", err
			}
			name = &s
		case "REMOVE":
			return "", token.InvalidField(op.Path, "name is required and cannot be removed")
		default:
			return "", token.InvalidField("op", "op must be ADD, REMOVE or REPLACE")
		}
	}
	return *name, nil
}

// Resolve returns a token's plain value, for the platform's own services only (the internal
// resolve function; never a public route), and records when it was used.
func (s *Service) Resolve(ctx context.Context, tenant, id string) ([]byte, error) {
	if err := token.ValidateTenant(tenant); err != nil {
		return nil, err
	}
	if err := token.ValidateID(id); err != nil {
		return nil, err
	}
	_, sealed, err := s.store.GetSealed(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	value, err := s.sealer.Open(ctx, tenant, id, sealed)
	if err != nil {
		return nil, err
	}
	// Losing a lastUsedAt write must not lose the caller its value.
	_ = s.store.TouchLastUsed(ctx, tenant, id, s.now())
	return value, nil
}

// Delete removes a token; a missing one is fine. A token in use is refused with a 409 that lists
// its users and offers a forced delete, unless force is set: then the token and its usages go.
func (s *Service) Delete(ctx context.Context, tenant, id string, force bool) error {
	if force {
		return s.store.ForceDelete(ctx, tenant, id)
	}
	err := s.store.DeleteUnused(ctx, tenant, id)
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
func (s *Service) RegisterUsage(ctx context.Context, tenant, id, kind, refID string) (bool, error) {
	if err := token.ValidateUsage(kind, refID); err != nil {
		return false, err
	}
	return s.store.RegisterUsage(ctx, tenant, id, kind, refID, s.now())
}

// UnregisterUsage removes a usage; a missing one is fine.
func (s *Service) UnregisterUsage(ctx context.Context, tenant, id, kind, refID string) error {
	if err := token.ValidateUsage(kind, refID); err != nil {
		return err
	}
	return s.store.UnregisterUsage(ctx, tenant, id, kind, refID)
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

// List returns the tenant's matching tokens, sorted and paged. A query that names ids reads
// those keys only; any other reads the tenant's partition (without sealed values), at most
// s.maxItemsRead items.
func (s *Service) List(ctx context.Context, in List) (ListResult, error) {
	var res store.ListResult
	var err error
	if ids, ok := in.Query.IDs(); ok {
		res, err = s.store.GetMany(ctx, in.Tenant, ids)
	} else {
		res, err = s.store.List(ctx, in.Tenant, s.maxItemsRead)
	}
	if err != nil {
		return ListResult{}, err
	}
	var all []matched
	for _, t := range res.Tokens {
		if doc := t.Document(); in.Query.Match(doc) {
			all = append(all, matched{t, doc})
		}
	}
	query.Sort(all, func(m matched) map[string]any { return m.doc }, in.Sort)
	page := query.PageOf(in.Page, all)
	out := ListResult{Tokens: make([]token.Token, len(page)), Total: len(all), ItemsRead: res.ItemsRead}
	for i, m := range page {
		out.Tokens[i] = m.token
	}
	return out, nil
}
