package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/expression"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"golang.org/x/sync/errgroup"

	"aitokens/pkg/awsretry"
	"aitokens/pkg/token"
)

const (
	attrPK         = "pk"
	attrSK         = "sk"
	tokenSKPrefix  = "token#"
	attrRequestID  = "requestId"
	attrVersion    = "version"
	attrLastUsedAt = "lastUsedAt"
	attrUID        = "uid"
)

// item is a token as DynamoDB holds it. pk is the tenant; sk is "token#" + id (ids cannot hold
// '#', so no id can reach another kind of item or another tenant's key).
type item struct {
	PK         string `dynamodbav:"pk"`
	SK         string `dynamodbav:"sk"`
	ID         string `dynamodbav:"id"`
	Name       string `dynamodbav:"name"`
	Version    int    `dynamodbav:"version"`
	CreatedAt  string `dynamodbav:"createdAt"`
	ModifiedAt string `dynamodbav:"modifiedAt"`
	LastUsedAt string `dynamodbav:"lastUsedAt,omitempty"`
	UsageCount int    `dynamodbav:"usageCount"`
	// RequestID is the id of the request that wrote the item last: after a failed condition it
	// tells our own earlier (retried) attempt from somebody else's write.
	RequestID string `dynamodbav:"requestId,omitempty"`
	// UID is the token's identity, made at its creation: every item that points at the token
	// (a usage) carries it, and every write requires it, so that a token deleted and created
	// again under the same id is another token to a late write. Tokens created before it have none.
	UID        string `dynamodbav:"uid,omitempty"`
	ExpiresAt  string `dynamodbav:"expiresAt,omitempty"`
	ExpiryDay  string `dynamodbav:"expiryDay,omitempty"` // expiresAt's UTC day: the key of the expiry index (expiry.go)
	Restricted bool   `dynamodbav:"restricted,omitempty"`
	Hint       string `dynamodbav:"hint,omitempty"`
	// Consumers mirrors the usage items as "kind#refId", changed in the same transactions, so
	// that the one consistent read of resolve can check a restricted token's consumer.
	Consumers []string `dynamodbav:"consumers,stringset,omitempty"`
	// Replaces and ReplacedBy link a token and its successor (Replace writes both at once).
	Replaces   string `dynamodbav:"replaces,omitempty"`
	ReplacedBy string `dynamodbav:"replacedBy,omitempty"`
	// RetiresAt is when a replaced token stops resolving: set by Replace (its expiresAt then),
	// moved only earlier by Update (with expiresAt), never removed (docs/security.md, Promises).
	RetiresAt string `dynamodbav:"retiresAt,omitempty"`
	// EventAt is the time of the token's last event (of every write that records one: changes,
	// usage changes, reminders). Each such write stamps its event after it and conditions its
	// transaction on it unchanged, so a token's events sort in the order they committed (write.go).
	EventAt string `dynamodbav:"eventAt,omitempty"`
	// The list indexes' sort keys, derived from id, name and times (listing.go); "" on a token
	// written before them, until BackfillListing.
	ByName     string `dynamodbav:"byName,omitempty"`
	ByCreated  string `dynamodbav:"byCreated,omitempty"`
	ByModified string `dynamodbav:"byModified,omitempty"`
	ByExpires  string `dynamodbav:"byExpires,omitempty"`

	// Egress is the token's egress policy, written by the create (or replace) and never changed;
	// EgressDigest is its digest as the create bound it into the value's encryption context
	// (kept to show, and for the invariant check; Open recomputes it from Egress as read, so a
	// policy rewritten here does not open whatever this says).
	Egress       *egressItem `dynamodbav:"egress,omitempty"`
	EgressDigest string      `dynamodbav:"egressDigest,omitempty"`

	SealKeyID      string `dynamodbav:"sealKeyId,omitempty"`
	SealAlgorithm  string `dynamodbav:"sealAlgorithm,omitempty"`
	SealWrappedKey []byte `dynamodbav:"sealWrappedKey,omitempty"`
	SealNonce      []byte `dynamodbav:"sealNonce,omitempty"`
	SealCiphertext []byte `dynamodbav:"sealCiphertext,omitempty"`
	SealDigest     []byte `dynamodbav:"sealDigest,omitempty"`
}

// egressItem is a token.Egress as DynamoDB holds it (a map; the hosts a list, in their order).
type egressItem struct {
	AllowedHosts []string `dynamodbav:"allowedHosts"`
	In           string   `dynamodbav:"in"`
	Name         string   `dynamodbav:"name"`
	Template     string   `dynamodbav:"template"`
}

func egressItemOf(e *token.Egress) (*egressItem, string) {
	if e == nil {
		return nil, ""
	}
	return &egressItem{AllowedHosts: e.AllowedHosts, In: e.Inject.In, Name: e.Inject.Name, Template: e.Inject.Template}, e.Digest()
}

func (e *egressItem) egress() *token.Egress {
	if e == nil {
		return nil
	}
	return &token.Egress{AllowedHosts: e.AllowedHosts, Inject: token.Inject{In: e.In, Name: e.Name, Template: e.Template}}
}

// publicAttributes are the attributes every read for showing or listing fetches: never the
// sealed value.
var publicAttributes = []string{"id", "name", "version", "createdAt", "modifiedAt", "lastUsedAt", "usageCount",
	"expiresAt", "restricted", "hint", "replaces", "replacedBy", "egress"}

// projectionExpr is a ProjectionExpression and its attribute names, built once: the GET path
// runs on every request and need not rebuild the same expression.
type projectionExpr struct {
	expr  *string
	names map[string]string
}

func newProjection(extra ...string) projectionExpr {
	names := make([]expression.NameBuilder, 0, len(publicAttributes)+len(extra))
	for _, n := range append(append([]string{}, publicAttributes...), extra...) {
		names = append(names, expression.Name(n))
	}
	expr, err := expression.NewBuilder().WithProjection(expression.NamesList(names[0], names[1:]...)).Build()
	if err != nil {
		panic(err) // static input
	}
	return projectionExpr{expr: expr.Projection(), names: expr.Names()}
}

var (
	publicProjection = newProjection()
	digestProjection = newProjection("sealDigest")
	// The resolve read takes the whole item: it needs nearly all of it, and a projection costs
	// the database an expression to parse on the hottest path.
	sealedProjection = projectionExpr{}
	writerProjection = projectionExpr{expr: aws.String("#w"), names: map[string]string{"#w": attrRequestID}}
)

func (it item) token(tenant string) token.Token {
	t := token.Token{Tenant: tenant, ID: it.ID, Name: it.Name, Version: it.Version, UsageCount: it.UsageCount,
		Restricted: it.Restricted, Hint: it.Hint, Consumers: it.Consumers, Replaces: it.Replaces, ReplacedBy: it.ReplacedBy,
		Egress: it.Egress.egress()}
	t.CreatedAt, _ = time.Parse(time.RFC3339Nano, it.CreatedAt)
	t.ModifiedAt, _ = time.Parse(time.RFC3339Nano, it.ModifiedAt)
	if it.LastUsedAt != "" {
		t.LastUsedAt, _ = time.Parse(time.RFC3339Nano, it.LastUsedAt)
	}
	if it.ExpiresAt != "" {
		at, _ := time.Parse(time.RFC3339Nano, it.ExpiresAt)
		t.ExpiresAt = &at
	}
	if it.RetiresAt != "" {
		at, _ := time.Parse(time.RFC3339Nano, it.RetiresAt)
		t.RetiresAt = &at
	}
	return t
}

func (it item) sealed() token.Sealed {
	return token.Sealed{KeyID: it.SealKeyID, Algorithm: it.SealAlgorithm, WrappedKey: it.SealWrappedKey,
		Nonce: it.SealNonce, Ciphertext: it.SealCiphertext, Digest: it.SealDigest}
}

// Store is the DynamoDB token store.
type Store struct {
	db        *dynamodb.Client
	table     string
	retention time.Duration // of audit events
	now       func() time.Time
	maxUsages int // MaxUsages; tests lower it (export_test.go)
}

// New returns a store over the given table.
func New(db *dynamodb.Client, table string) *Store {
	return &Store{db: db, table: table, retention: DefaultAuditRetention, now: time.Now, maxUsages: MaxUsages}
}

// WithClock is the store taking the time of its writes from now (tests step it).
func (s *Store) WithClock(now func() time.Time) *Store {
	c := *s
	c.now = now
	return &c
}

func key(tenant, id string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrPK: &types.AttributeValueMemberS{Value: tenant},
		attrSK: &types.AttributeValueMemberS{Value: tokenSKPrefix + id},
	}
}

// Get returns a token without its sealed value.
func (s *Store) Get(ctx context.Context, tenant, id string) (token.Token, error) {
	it, err := s.getItem(ctx, tenant, id, publicProjection)
	if err != nil {
		return token.Token{}, err
	}
	return it.token(tenant), nil
}

// GetDigest returns a token and the digest of its value (for the "same value" check of an
// update), still without the sealed value.
func (s *Store) GetDigest(ctx context.Context, tenant, id string) (token.Token, []byte, error) {
	it, err := s.getItem(ctx, tenant, id, digestProjection)
	if err != nil {
		return token.Token{}, nil, err
	}
	return it.token(tenant), it.SealDigest, nil
}

// GetSealed returns a token with its sealed value: only the internal resolve path calls it.
func (s *Store) GetSealed(ctx context.Context, tenant, id string) (token.Token, token.Sealed, error) {
	it, err := s.getItem(ctx, tenant, id, sealedProjection)
	if err != nil {
		return token.Token{}, token.Sealed{}, err
	}
	return it.token(tenant), it.sealed(), nil
}

func (s *Store) getItem(ctx context.Context, tenant, id string, proj projectionExpr) (item, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:                aws.String(s.table),
		Key:                      key(tenant, id),
		ConsistentRead:           aws.Bool(true), // a client reads back what it just wrote
		ProjectionExpression:     proj.expr,
		ExpressionAttributeNames: proj.names,
	})
	if err != nil {
		return item{}, classify(err)
	}
	if out.Item == nil {
		return item{}, token.ErrNotFound(id)
	}
	var it item
	if err := attributevalue.UnmarshalMap(out.Item, &it); err != nil {
		return item{}, token.InternalError(err)
	}
	return it, nil
}

// lastWriter reads which request wrote the item last (consistently); "" and found=false if
// the item is gone.
func (s *Store) lastWriter(ctx context.Context, tenant, id string) (requestID string, found bool, err error) {
	it, err := s.getItem(ctx, tenant, id, writerProjection)
	if token.KindOf(err) == token.NotFound {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return it.RequestID, true, nil
}

// newItem is the item of t created at at (version 1) by request requestID, with its sealed value.
func newItem(t token.Token, sealed token.Sealed, uid, requestID string, at time.Time) item {
	now := token.FormatTime(at)
	it := item{PK: t.Tenant, SK: tokenSKPrefix + t.ID, ID: t.ID, Name: t.Name, Version: 1, CreatedAt: now, ModifiedAt: now,
		EventAt: now, RequestID: requestID, UID: uid, Restricted: t.Restricted, Hint: t.Hint, SealKeyID: sealed.KeyID,
		SealAlgorithm: sealed.Algorithm, SealWrappedKey: sealed.WrappedKey, SealNonce: sealed.Nonce,
		SealCiphertext: sealed.Ciphertext, SealDigest: sealed.Digest}
	it.Egress, it.EgressDigest = egressItemOf(t.Egress)
	if t.ExpiresAt != nil {
		it.ExpiresAt, it.ExpiryDay = token.FormatTime(*t.ExpiresAt), expiryDay(*t.ExpiresAt)
	}
	it.setListKeys()
	return it
}

// Create stores a new token at version 1 and its event, in one transaction; a token with that
// id must not exist. Its createdAt and modifiedAt are the time of the write.
func (s *Store) Create(ctx context.Context, t token.Token, sealed token.Sealed, ev token.Event) error {
	uid := newUID()
	return s.rounds(ctx, func() error {
		at := s.now().UTC()
		av, err := attributevalue.MarshalMap(newItem(t, sealed, uid, ev.RequestID, at))
		if err != nil {
			return token.InternalError(err)
		}
		ev.At, ev.Action, ev.TokenID, ev.Version = at, token.ActionCreate, t.ID, 1
		event := s.eventPut(t.Tenant, ev, "")
		failed, err := s.transact(ctx, []types.TransactWriteItem{
			{Put: &types.Put{TableName: aws.String(s.table), Item: av, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
			event,
			s.tokenCountChange(t.Tenant, t.ID, 1),
		})
		if err != nil || failed == nil {
			return err
		}
		writer, _, err := s.lastWriter(ctx, t.Tenant, t.ID)
		if err != nil {
			return err
		}
		if writer == ev.RequestID {
			return nil // our own earlier attempt succeeded (with its event) and its response was lost
		}
		return &token.Error{Kind: token.Conflict, Reason: token.AlreadyExists, ResourceID: t.ID}
	})
}

// Update is every change the API allows: the name, the expiry and the restriction (nil: left
// as it is), with the version bumped by one and modifiedAt set to the time of the write.
type Update struct {
	Tenant, ID   string
	Name         *string
	ExpiresAt    *time.Time // a new expiry (any date, the zero time included)
	RemoveExpiry bool       // the token no longer expires
	Restricted   *bool
	// Version is the version the caller sent: the update applies only to it (a VersionMismatch
	// conflict otherwise). 0 applies it to whatever version is stored, read again after a
	// concurrent change, so that its event records the exact version it left.
	Version int
}

// Changes names what u changes, for its event.
func (u Update) Changes() []string {
	var c []string
	if u.Name != nil {
		c = append(c, "name")
	}
	if u.ExpiresAt != nil || u.RemoveExpiry {
		c = append(c, "expiresAt")
	}
	if u.Restricted != nil {
		c = append(c, "restricted")
	}
	return c
}

// Update applies u and writes its event in one transaction. It fails with a VersionMismatch
// conflict when u.Version is set and not the stored version, and not found when the token is gone.
func (s *Store) Update(ctx context.Context, u Update, ev token.Event) error {
	if u.ExpiresAt != nil && u.RemoveExpiry {
		return token.InternalError(errors.New("store: an update both sets and removes the expiry"))
	}
	return s.rounds(ctx, func() error {
		st, err := s.state(ctx, u.Tenant, u.ID)
		switch {
		case err != nil:
			return err
		case !st.found:
			return token.ErrNotFound(u.ID)
		case u.Version != 0 && st.version != u.Version:
			if st.requestID == ev.RequestID && st.version == u.Version+1 {
				return nil // our own earlier round was applied and its answer lost
			}
			return &token.Error{Kind: token.Conflict, Reason: token.VersionMismatch, ResourceID: u.ID, Version: u.Version}
		}
		retires := st.retirement()
		if retires != nil && (u.RemoveExpiry || u.ExpiresAt != nil && u.ExpiresAt.After(*retires)) {
			return &token.Error{Kind: token.Conflict, Reason: token.RetirementFinal, ResourceID: u.ID, Successor: st.replacedBy, RetiresAt: *retires}
		}
		at := s.stamp(st)
		cond, values := st.sameToken()
		cond += st.listedCond() + " AND " + st.sameRetirement(values) + " AND " + eventsBefore(at, values)
		values[":req"] = &types.AttributeValueMemberS{Value: ev.RequestID}
		values[":now"] = &types.AttributeValueMemberS{Value: token.FormatTime(at)}
		values[":one"] = &types.AttributeValueMemberN{Value: "1"}
		set := "SET modifiedAt = :now, eventAt = :eventAt, requestId = :req"
		var remove []string
		if st.listed { // the list keys follow what they derive from (an unlisted token gets them from the backfill)
			set += ", byModified = :bmod"
			values[":bmod"] = &types.AttributeValueMemberS{Value: token.FormatTime(at) + "#" + u.ID}
		}
		if u.Name != nil {
			set += ", #name = :name"
			values[":name"] = &types.AttributeValueMemberS{Value: *u.Name}
			if st.listed {
				set += ", byName = :bname"
				values[":bname"] = &types.AttributeValueMemberS{Value: nameKey(*u.Name, u.ID)}
			}
		}
		switch {
		case u.ExpiresAt != nil:
			set += ", expiresAt = :exp, expiryDay = :day"
			values[":exp"] = &types.AttributeValueMemberS{Value: token.FormatTime(*u.ExpiresAt)}
			values[":day"] = &types.AttributeValueMemberS{Value: expiryDay(*u.ExpiresAt)}
			if retires != nil {
				set += ", retiresAt = :exp" // a replaced token's retirement moves earlier with its expiry, never back
			}
		case u.RemoveExpiry:
			remove = append(remove, "expiresAt", "expiryDay")
		}
		if st.listed && (u.ExpiresAt != nil || u.RemoveExpiry) {
			set += ", byExpires = :bexp"
			exp := ""
			if u.ExpiresAt != nil {
				exp = token.FormatTime(*u.ExpiresAt)
			}
			values[":bexp"] = &types.AttributeValueMemberS{Value: expiresKey(exp, u.ID)}
		}
		switch {
		case u.Restricted == nil:
		case *u.Restricted:
			set += ", restricted = :true"
			values[":true"] = &types.AttributeValueMemberBOOL{Value: true}
		default:
			remove = append(remove, "restricted") // false is shown as absent
		}
		expr := set + " ADD version :one"
		if len(remove) > 0 {
			expr += " REMOVE " + strings.Join(remove, ", ")
		}
		update := &types.Update{TableName: aws.String(s.table), Key: key(u.Tenant, u.ID),
			ConditionExpression: aws.String(cond), UpdateExpression: aws.String(expr), ExpressionAttributeValues: values}
		if u.Name != nil {
			update.ExpressionAttributeNames = map[string]string{"#name": "name"} // a reserved word
		}
		ev.At, ev.TokenID, ev.Version, ev.Changes = at, u.ID, st.version+1, u.Changes()
		if ev.Action != token.ActionPatch {
			ev.Action = token.ActionUpdate
		}
		event := s.eventPut(u.Tenant, ev, "")
		failed, err := s.transact(ctx, []types.TransactWriteItem{{Update: update}, event})
		if err != nil || failed == nil {
			return err
		}
		writer, found, err := s.lastWriter(ctx, u.Tenant, u.ID)
		switch {
		case err != nil:
			return err
		case !found:
			return token.ErrNotFound(u.ID)
		case writer == ev.RequestID:
			return nil // our own earlier attempt succeeded (with its event) and its response was lost
		}
		return errMoved // changed meanwhile: read again (a versioned update then finds the mismatch)
	})
}

// TouchLastUsed records that the token's value was resolved at now, writing at most once per
// minute per token (the condition skips the write otherwise). It changes neither version nor
// modifiedAt: being used is not an edit.
func (s *Store) TouchLastUsed(ctx context.Context, tenant, id string, now time.Time) error {
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           aws.String(s.table),
		Key:                 key(tenant, id),
		UpdateExpression:    aws.String("SET lastUsedAt = :now"),
		ConditionExpression: aws.String("attribute_exists(pk) AND (attribute_not_exists(lastUsedAt) OR lastUsedAt < :cutoff)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":now":    &types.AttributeValueMemberS{Value: token.FormatTime(now)},
			":cutoff": &types.AttributeValueMemberS{Value: token.FormatTime(now.Add(-time.Minute))},
		},
	})
	if isConditionFailed(err) {
		return nil // used within the last minute (or deleted meanwhile): nothing to record
	}
	return classify(err)
}

// ListResult is every token of a tenant and how many items DynamoDB read to find them.
type ListResult struct {
	Tokens    []token.Token
	ItemsRead int
}

// List reads the tenant's tokens with a paginated Query of its partition, without the sealed
// attributes. It reads at most maxItems+1 items: one more than maxItems means the tenant has
// more tokens than one request may read, and is refused (ErrTooManyItems).
func (s *Store) List(ctx context.Context, tenant string, maxItems int) (ListResult, error) {
	in := &dynamodb.QueryInput{
		TableName:              aws.String(s.table),
		KeyConditionExpression: aws.String("pk = :tenant AND begins_with(sk, :prefix)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":tenant": &types.AttributeValueMemberS{Value: tenant},
			":prefix": &types.AttributeValueMemberS{Value: tokenSKPrefix},
		},
		ProjectionExpression: publicProjection.expr, ExpressionAttributeNames: publicProjection.names,
	}
	var res ListResult
	for {
		in.Limit = aws.Int32(int32(maxItems + 1 - res.ItemsRead))
		page, err := s.db.Query(ctx, in)
		if err != nil {
			return ListResult{}, classify(err)
		}
		res.ItemsRead += int(page.ScannedCount)
		if res.ItemsRead > maxItems {
			return ListResult{}, ErrTooManyItems(maxItems)
		}
		var items []item
		if err := attributevalue.UnmarshalListOfMaps(page.Items, &items); err != nil {
			return ListResult{}, token.InternalError(err)
		}
		for _, it := range items {
			res.Tokens = append(res.Tokens, it.token(tenant))
		}
		if len(page.LastEvaluatedKey) == 0 {
			return res, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}

// ErrTooManyItems is the refusal of a list that would read more than maxItems tokens.
func ErrTooManyItems(maxItems int) error {
	return &token.Error{Kind: token.Invalid, Reason: token.TooManyToRead, Limit: maxItems}
}

// GetMany reads the named tokens by key, a few GetItems at a time, so that a query on ids does
// not read the whole partition (GetItem rather than BatchGetItem keeps the read functions'
// permissions to GetItem and Query). Missing ids are left out.
func (s *Store) GetMany(ctx context.Context, tenant string, ids []string) (ListResult, error) {
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	found := make([]*token.Token, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, id := range ids {
		g.Go(func() error {
			t, err := s.Get(gctx, tenant, id)
			switch {
			case err == nil:
				found[i] = &t
			case token.KindOf(err) != token.NotFound:
				return err
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return ListResult{}, err
	}
	var res ListResult
	for _, t := range found {
		if t != nil {
			res.Tokens = append(res.Tokens, *t)
			res.ItemsRead++
		}
	}
	return res, nil
}

func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

// classify turns a DynamoDB error into the service's error: a transaction conflict that
// outlasted the retries is a 409 to retry; unreachable, throttled or failing (after the SDK's
// own retries) is 503; anything else is internal.
func classify(err error) error {
	var txConflict *types.TransactionConflictException
	switch {
	case err == nil:
		return nil
	case errors.As(err, &txConflict):
		return &token.Error{Kind: token.Conflict, Reason: token.ConcurrentChange, Cause: err}
	case awsretry.Cancelled(err):
		return &token.Error{Kind: token.Unavailable, Reason: token.TimedOut, Cause: err}
	case awsretry.Unavailable(err):
		return &token.Error{Kind: token.Unavailable, Reason: token.StoreUnavailable, Cause: err}
	}
	return token.InternalError(err)
}
