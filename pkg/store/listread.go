package store

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/token"
)

// ListOrder is an order a list index serves: by Field ("id", "name", "metadata.createdAt",
// "metadata.modifiedAt", "expiresAt"), then by id ascending, as the API sorts.
type ListOrder struct {
	Field string
	Desc  bool
}

// OrderFields are the fields a list index orders by.
var OrderFields = map[string]bool{"id": true, "name": true, "metadata.createdAt": true, "metadata.modifiedAt": true, "expiresAt": true}

// ScanPageItems bounds the entries one Query of a list reads (and so what one page of a scan
// holds in memory).
const ScanPageItems = 1000

// segment is one Query of an index, read in one direction.
type segment struct {
	index   string
	cond    string
	values  map[string]types.AttributeValue
	forward bool
}

// entries reads index entries in order, one Query page at a time, each Query's Limit what is
// still wanted. When regroup is set (a descending order: the index holds equal values in
// descending id order, the API wants them ascending), a run of equal values is read whole and
// turned around.
type entries struct {
	s       *Store
	segs    []segment
	in      *dynamodb.QueryInput
	buf     []map[string]types.AttributeValue
	out     []map[string]types.AttributeValue
	peeked  map[string]types.AttributeValue // read ahead by regroup: the next run's first
	sortKey string                          // the attribute regroup reads; "" for none
	read    int
	want    int // entries still wanted, for the Limit
}

func (e *entries) raw(ctx context.Context) (map[string]types.AttributeValue, bool, error) {
	if it := e.peeked; it != nil {
		e.peeked = nil
		return it, true, nil
	}
	for len(e.buf) == 0 {
		if e.in == nil {
			if len(e.segs) == 0 {
				return nil, false, nil
			}
			sg := e.segs[0]
			e.segs = e.segs[1:]
			e.in = &dynamodb.QueryInput{TableName: aws.String(e.s.table), IndexName: aws.String(sg.index),
				KeyConditionExpression: aws.String(sg.cond), ExpressionAttributeValues: sg.values, ScanIndexForward: aws.Bool(sg.forward)}
		}
		e.in.Limit = aws.Int32(int32(min(max(e.want, 1)+1, ScanPageItems)))
		page, err := e.s.db.Query(ctx, e.in)
		if err != nil {
			return nil, false, classify(err)
		}
		e.read += int(page.ScannedCount)
		e.buf = page.Items
		if len(page.LastEvaluatedKey) == 0 {
			e.in = nil
		} else {
			e.in.ExclusiveStartKey = page.LastEvaluatedKey
		}
	}
	it := e.buf[0]
	e.buf = e.buf[1:]
	return it, true, nil
}

func str(av map[string]types.AttributeValue, name string) string {
	if s, ok := av[name].(*types.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}

// next is the next entry in the API's order.
func (e *entries) next(ctx context.Context) (map[string]types.AttributeValue, bool, error) {
	if e.sortKey == "" {
		e.want--
		return e.raw(ctx)
	}
	if len(e.out) == 0 {
		first, ok, err := e.raw(ctx)
		if !ok || err != nil {
			return nil, ok, err
		}
		run := []map[string]types.AttributeValue{first}
		p := primaryOf(str(first, e.sortKey))
		for {
			it, ok, err := e.raw(ctx)
			if err != nil {
				return nil, false, err
			}
			if !ok {
				break
			}
			if primaryOf(str(it, e.sortKey)) != p {
				e.peeked = it // kept aside: putting it back in front of buf copied the page for every run
				break
			}
			run = append(run, it)
		}
		slices.SortFunc(run, func(a, b map[string]types.AttributeValue) int { return cmp.Compare(str(a, attrSK), str(b, attrSK)) })
		e.out = run
	}
	it := e.out[0]
	e.out = e.out[1:]
	e.want--
	return it, true, nil
}

// orderEntries are the entries of tenant's tokens in order o; for the id order, from list-id
// (the listing attributes) when listing is set, else from list-id-keys.
func (s *Store) orderEntries(tenant string, o ListOrder, want int, listing bool) (*entries, error) {
	t := map[string]types.AttributeValue{":t": &types.AttributeValueMemberS{Value: tenant}, ":lo": &types.AttributeValueMemberS{Value: lowestKey}}
	all := func(index string) []segment {
		sortKey := map[string]string{ListIndexByID: "id", ListIndexByIDKeys: "id", ListIndexByName: attrByName, ListIndexByCreated: attrByCreated,
			ListIndexByModified: attrByModified, ListIndexByExpires: attrByExpires}[index]
		return []segment{{index: index, cond: "pk = :t AND " + sortKey + " >= :lo", values: t, forward: !o.Desc}}
	}
	e := &entries{s: s, want: want}
	switch o.Field {
	case "id":
		e.segs = all(ListIndexByIDKeys)
		if listing {
			e.segs = all(ListIndexByID)
		}
	case "name":
		e.segs, e.sortKey = all(ListIndexByName), attrByName
	case "metadata.createdAt":
		e.segs, e.sortKey = all(ListIndexByCreated), attrByCreated
	case "metadata.modifiedAt":
		e.segs, e.sortKey = all(ListIndexByModified), attrByModified
	case "expiresAt":
		if !o.Desc {
			e.segs = all(ListIndexByExpires) // the dates, then "~"+id: those that do not expire, by id
			break
		}
		// Descending dates, and still after them the tokens that do not expire, by id.
		e.sortKey = attrByExpires
		e.segs = []segment{
			{index: ListIndexByExpires, cond: "pk = :t AND byExpires < :n", forward: false,
				values: map[string]types.AttributeValue{":t": t[":t"], ":n": &types.AttributeValueMemberS{Value: noExpiry}}},
			{index: ListIndexByExpires, cond: "pk = :t AND byExpires BETWEEN :n AND :n2", forward: true,
				values: map[string]types.AttributeValue{":t": t[":t"], ":n": &types.AttributeValueMemberS{Value: noExpiry},
					":n2": &types.AttributeValueMemberS{Value: successor(noExpiry)}}},
		}
	default:
		return nil, token.InternalError(errors.New("store: no list index orders by " + o.Field))
	}
	if !o.Desc || o.Field == "id" {
		e.sortKey = ""
	}
	return e, nil
}

// ListPage is the size tokens after the first skip of tenant's tokens in order o, reading the
// order's index (the skipped entries too, keys only, never their items) and then the page's
// items. The first page of the id order reads list-id, whose entries are the page.
func (s *Store) ListPage(ctx context.Context, tenant string, o ListOrder, skip, size int) (ListResult, error) {
	listing := o.Field == "id" && skip == 0
	e, err := s.orderEntries(tenant, o, skip+size, listing)
	if err != nil {
		return ListResult{}, err
	}
	var page []map[string]types.AttributeValue
	for i := 0; i < skip+size; i++ {
		it, ok, err := e.next(ctx)
		if err != nil {
			return ListResult{}, err
		}
		if !ok {
			break
		}
		if i >= skip {
			page = append(page, it)
		}
	}
	res := ListResult{ItemsRead: e.read}
	if listing { // the listing index holds the listing attributes
		for _, raw := range page {
			var it item
			if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
				return ListResult{}, token.InternalError(err)
			}
			res.Tokens = append(res.Tokens, it.token(tenant))
		}
		return res, nil
	}
	ids := make([]string, len(page))
	for i, raw := range page {
		ids[i] = strings.TrimPrefix(str(raw, attrSK), tokenSKPrefix)
	}
	got, err := s.GetPage(ctx, tenant, ids)
	if err != nil {
		return ListResult{}, err
	}
	res.Tokens, res.ItemsRead = got.Tokens, res.ItemsRead+got.ItemsRead
	return res, nil
}

// GetPage reads the named tokens' listing attributes (BatchGetItem, 100 keys at a time), in the
// order of ids; a token gone meanwhile is left out.
func (s *Store) GetPage(ctx context.Context, tenant string, ids []string) (ListResult, error) {
	found := map[string]token.Token{}
	var res ListResult
	for start := 0; start < len(ids); start += maxBatchGetKeys {
		var keys []map[string]types.AttributeValue
		for _, id := range ids[start:min(start+maxBatchGetKeys, len(ids))] {
			keys = append(keys, key(tenant, id))
		}
		req := map[string]types.KeysAndAttributes{s.table: {Keys: keys, ProjectionExpression: publicProjection.expr,
			ExpressionAttributeNames: publicProjection.names}}
		for attempt := 0; len(req) > 0; attempt++ {
			if attempt > 0 {
				if err := s.pause(ctx, attempt); err != nil {
					return ListResult{}, err
				}
			}
			if attempt == WriteRounds {
				return ListResult{}, &token.Error{Kind: token.Unavailable, Reason: token.StoreUnavailable, Cause: errors.New("unprocessed keys")}
			}
			out, err := s.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: req})
			if err != nil {
				return ListResult{}, classify(err)
			}
			for _, raw := range out.Responses[s.table] {
				var it item
				if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
					return ListResult{}, token.InternalError(err)
				}
				found[it.ID] = it.token(tenant)
				res.ItemsRead++
			}
			req = out.UnprocessedKeys
		}
	}
	for _, id := range ids {
		if t, ok := found[id]; ok {
			res.Tokens = append(res.Tokens, t)
		}
	}
	return res, nil
}

// ScanRange is the part of a tenant's tokens a scan reads: all of them, or those whose name
// starts with NamePrefix (Exact: is NamePrefix).
type ScanRange struct {
	NamePrefix string
	Exact      bool
	// NameOnly: the reader needs only the tokens' ids and names; they are read from the name
	// index's keys (the smallest entries) and the tokens passed on carry nothing else.
	NameOnly bool
}

// Scan passes every token of tenant in r to fn, one bounded page (at most ScanPageItems) at a
// time, reading only listing attributes: the listing index for all of them, the name index's
// range for a name prefix (and then, unless r.NameOnly, the range's items). It stops at fn's
// first error and returns it with the items read so far; more says whether pages follow.
func (s *Store) Scan(ctx context.Context, tenant string, r ScanRange, fn func(tokens []token.Token, read int, more bool) error) (int, error) {
	values := map[string]types.AttributeValue{":t": &types.AttributeValueMemberS{Value: tenant}, ":lo": &types.AttributeValueMemberS{Value: lowestKey}}
	in := &dynamodb.QueryInput{TableName: aws.String(s.table), IndexName: aws.String(ListIndexByID),
		KeyConditionExpression: aws.String("pk = :t AND id >= :lo"), ExpressionAttributeValues: values, Limit: aws.Int32(ScanPageItems)}
	fromName := r.NameOnly || r.NamePrefix != ""
	if fromName {
		in.IndexName = aws.String(ListIndexByName)
		in.KeyConditionExpression = aws.String("pk = :t AND byName >= :lo")
		if r.NamePrefix != "" {
			p := nameKeyPart(r.NamePrefix)
			if r.Exact {
				p += nameSep
			}
			delete(values, ":lo")
			in.KeyConditionExpression = aws.String("pk = :t AND " + prefixCond(attrByName, p, values))
		}
	}
	read := 0
	for {
		page, err := s.db.Query(ctx, in)
		if err != nil {
			return read, classify(err)
		}
		read += int(page.ScannedCount)
		tokens := make([]token.Token, 0, len(page.Items))
		switch {
		case !fromName:
			for _, raw := range page.Items {
				var it item
				if err := attributevalue.UnmarshalMap(raw, &it); err != nil {
					return read, token.InternalError(err)
				}
				tokens = append(tokens, it.token(tenant))
			}
		case r.NameOnly:
			var cut []string // names the key may hold only the start of: read whole
			for _, raw := range page.Items {
				id := strings.TrimPrefix(str(raw, attrSK), tokenSKPrefix)
				name, _, _ := strings.Cut(str(raw, attrByName), nameSep)
				if len(name) > maxNameKeyBytes-utf8.UTFMax {
					cut = append(cut, id)
					continue
				}
				tokens = append(tokens, token.Token{Tenant: tenant, ID: id, Name: name})
			}
			if len(cut) > 0 {
				got, err := s.GetPage(ctx, tenant, cut)
				if err != nil {
					return read, err
				}
				read += got.ItemsRead
				tokens = append(tokens, got.Tokens...)
			}
		default:
			ids := make([]string, len(page.Items))
			for i, raw := range page.Items {
				ids[i] = strings.TrimPrefix(str(raw, attrSK), tokenSKPrefix)
			}
			got, err := s.GetPage(ctx, tenant, ids)
			if err != nil {
				return read, err
			}
			read += got.ItemsRead
			tokens = got.Tokens
		}
		if err := fn(tokens, read, len(page.LastEvaluatedKey) > 0); err != nil {
			return read, err
		}
		if len(page.LastEvaluatedKey) == 0 {
			return read, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}
