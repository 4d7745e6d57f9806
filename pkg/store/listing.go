package store

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/token"
)

// A tenant's list costs what its page costs, not what the tenant costs (README "What a list
// costs" says which index serves which shape). Every index is partitioned by the tenant (the
// table's pk) and holds only tokens:
//
//   - ListIndexByID (sort key id, which only tokens carry) projects the listing attributes
//     (publicAttributes): the default order's pages, and the filter of any q that needs more
//     than id and name, read from it, never the sealed value.
//   - ListIndexByName, ByCreated, ByModified and ByExpires project keys only. Their sort keys are
//     derived attributes (listKeys) that end in the id, so that equal names or times still sort
//     by id as the API's tie-breaker does; a page reads its keys here and then its items
//     (BatchGetItem, listing attributes only).
//   - ListIndexByIDKeys (sort key id, keys only): a deep page of the id order reads the entries
//     before it here, keys only as for the other orders, not list-id's listing attributes (at
//     100,000 tokens its last page of 20 read 167 bytes per token from list-id, 34 from here).
//
// A token has its derived keys from its create on, changed in the same writes that change what
// they derive from (Update, Replace). A token written before them has none (it is "unlisted")
// until BackfillListing gives them, and is then counted: byName's presence says a token is in
// the tenant's count, so every write that depends on it is conditioned on it.
//
// The count is kept in countShards counter items per tenant (sk "count#NN"), each changed in
// the transaction that creates or deletes a token whose id falls to it: a tenant's creates do
// not all meet on one item (DynamoDB cancels concurrent transactions on the same item).
const (
	ListIndexByID       = "list-id"
	ListIndexByName     = "list-name"
	ListIndexByCreated  = "list-created"
	ListIndexByModified = "list-modified"
	ListIndexByExpires  = "list-expires"
	ListIndexByIDKeys   = "list-id-keys"

	attrByName     = "byName"
	attrByCreated  = "byCreated"
	attrByModified = "byModified"
	attrByExpires  = "byExpires"
	attrCount      = "tokens"

	countSKPrefix = "count#"
	countShards   = 16
	// maxNameKeyBytes keeps byName within DynamoDB's 1,024 bytes of a sort key (a name of 256
	// characters may take 1,024 bytes, the id 66 more): names equal in their first 900 bytes
	// sort by id.
	maxNameKeyBytes = 900
	// noExpiry starts byExpires of a token that does not expire: after every date, so that it
	// sorts last as the API sorts an absent value.
	noExpiry = "~"
)

// nameSep ends the name in byName: names hold no control characters, so it sorts before
// anything that may follow in a longer name ("ab" before "ab c").
const nameSep = "\x01"

// nameKeyPart is the part of byName a name gives: the name, cut (at a character) to
// maxNameKeyBytes.
func nameKeyPart(name string) string {
	if len(name) <= maxNameKeyBytes {
		return name
	}
	cut := maxNameKeyBytes
	for cut > 0 && !utf8.RuneStart(name[cut]) {
		cut--
	}
	return name[:cut]
}

// listKeys are a token's derived sort keys; expiresAt "" for a token that does not expire.
type listKeys struct{ byName, byCreated, byModified, byExpires string }

func keysOf(id, name, createdAt, modifiedAt, expiresAt string) listKeys {
	return listKeys{byName: nameKey(name, id), byCreated: createdAt + "#" + id, byModified: modifiedAt + "#" + id,
		byExpires: expiresKey(expiresAt, id)}
}

func nameKey(name, id string) string { return nameKeyPart(name) + nameSep + id }

func expiresKey(expiresAt, id string) string {
	if expiresAt == "" {
		return noExpiry + id
	}
	return expiresAt + "#" + id
}

func (it *item) setListKeys() {
	k := keysOf(it.ID, it.Name, it.CreatedAt, it.ModifiedAt, it.ExpiresAt)
	it.ByName, it.ByCreated, it.ByModified, it.ByExpires = k.byName, k.byCreated, k.byModified, k.byExpires
}

// countKey is the counter item that counts token id of tenant.
func countKey(tenant, id string) map[string]types.AttributeValue {
	h := fnv.New32a()
	h.Write([]byte(id))
	return map[string]types.AttributeValue{
		attrPK: &types.AttributeValueMemberS{Value: tenant},
		attrSK: &types.AttributeValueMemberS{Value: fmt.Sprintf("%s%02d", countSKPrefix, h.Sum32()%countShards)},
	}
}

// tokenCountChange is the change of tenant's count by delta (+1 a create, -1 a delete) for token id.
func (s *Store) tokenCountChange(tenant, id string, delta int) types.TransactWriteItem {
	return types.TransactWriteItem{Update: &types.Update{TableName: aws.String(s.table), Key: countKey(tenant, id),
		UpdateExpression:          aws.String("ADD #n :d"),
		ExpressionAttributeNames:  map[string]string{"#n": attrCount},
		ExpressionAttributeValues: map[string]types.AttributeValue{":d": &types.AttributeValueMemberN{Value: strconv.Itoa(delta)}}}}
}

// listedCond is the condition that the token is as listed (counted) as st read it.
func (st state) listedCond() string {
	if st.listed {
		return " AND attribute_exists(byName)"
	}
	return " AND attribute_not_exists(byName)"
}

// Count is the number of tenant's tokens, from its counter items (one consistent Query of at
// most countShards small items, whatever the tenant's size).
func (s *Store) Count(ctx context.Context, tenant string) (int, error) {
	out, err := s.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(s.table), ConsistentRead: aws.Bool(true),
		KeyConditionExpression: aws.String("pk = :t AND sk BETWEEN :a AND :b"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":t": &types.AttributeValueMemberS{Value: tenant}, ":a": &types.AttributeValueMemberS{Value: countSKPrefix},
			":b": &types.AttributeValueMemberS{Value: successor(countSKPrefix)}}})
	if err != nil {
		return 0, classify(err)
	}
	n := 0
	for _, raw := range out.Items {
		var c struct {
			N int `dynamodbav:"tokens"`
		}
		if err := attributevalue.UnmarshalMap(raw, &c); err != nil {
			return 0, token.InternalError(err)
		}
		n += c.N
	}
	return n, nil
}

func listIndexAttributes() []types.AttributeDefinition {
	var defs []types.AttributeDefinition
	for _, a := range []string{"id", attrByName, attrByCreated, attrByModified, attrByExpires} {
		defs = append(defs, types.AttributeDefinition{AttributeName: aws.String(a), AttributeType: types.ScalarAttributeTypeS})
	}
	return defs
}

// listIndexes are the list indexes, as template.yaml declares them.
func listIndexes() []types.GlobalSecondaryIndex {
	index := func(name, sortKey string, projection *types.Projection) types.GlobalSecondaryIndex {
		return types.GlobalSecondaryIndex{IndexName: aws.String(name), Projection: projection, KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(sortKey), KeyType: types.KeyTypeRange},
		}}
	}
	keysOnly := &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly}
	var listing []string
	for _, a := range publicAttributes {
		if a != "id" {
			listing = append(listing, a)
		}
	}
	return []types.GlobalSecondaryIndex{
		index(ListIndexByID, "id", &types.Projection{ProjectionType: types.ProjectionTypeInclude, NonKeyAttributes: listing}),
		index(ListIndexByName, attrByName, keysOnly),
		index(ListIndexByCreated, attrByCreated, keysOnly),
		index(ListIndexByModified, attrByModified, keysOnly),
		index(ListIndexByExpires, attrByExpires, keysOnly),
		index(ListIndexByIDKeys, "id", keysOnly), // last: a table with the others gets it on its next upgrade
	}
}

// BackfillListing gives every token written before the list indexes (no byName) its derived
// keys and counts it, one transaction per token: the keys conditioned on the version and
// modifiedAt it read and on the token being still unlisted, with the increment of its counter.
// So it is idempotent (a listed token is skipped), resumable (a run stopped half way leaves
// whole tokens done) and safe beside the service's own writes, which are conditioned on the
// listing they read. It changes neither version nor modifiedAt and writes no event. It returns
// how many tokens it listed.
func BackfillListing(ctx context.Context, db *dynamodb.Client, table string) (int, error) {
	s := New(db, table)
	pages := dynamodb.NewScanPaginator(db, &dynamodb.ScanInput{TableName: aws.String(table),
		FilterExpression:          aws.String("begins_with(sk, :token) AND attribute_not_exists(byName)"),
		ProjectionExpression:      aws.String("pk, sk, id"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":token": &types.AttributeValueMemberS{Value: tokenSKPrefix}}})
	n := 0
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return n, err
		}
		for _, raw := range page.Items {
			var k struct {
				PK string `dynamodbav:"pk"`
				ID string `dynamodbav:"id"`
			}
			if err := attributevalue.UnmarshalMap(raw, &k); err != nil {
				return n, err
			}
			done, err := s.listOne(ctx, k.PK, k.ID)
			if err != nil {
				return n, fmt.Errorf("list token %s of %s: %w", k.ID, k.PK, err)
			}
			if done {
				n++
			}
		}
	}
	return n, nil
}

var backfillProjection = projectionExpr{expr: aws.String("#i, #n, #v, #c, #m, #e, #b"), names: map[string]string{
	"#i": "id", "#n": "name", "#v": attrVersion, "#c": "createdAt", "#m": "modifiedAt", "#e": attrExpiresAt, "#b": attrByName}}

// listOne lists one token (BackfillListing); false when it was gone or listed already.
func (s *Store) listOne(ctx context.Context, tenant, id string) (listed bool, err error) {
	err = s.rounds(ctx, func() error {
		it, err := s.getItem(ctx, tenant, id, backfillProjection)
		switch {
		case token.KindOf(err) == token.NotFound:
			return nil
		case err != nil:
			return err
		case it.ByName != "":
			return nil
		}
		k := keysOf(it.ID, it.Name, it.CreatedAt, it.ModifiedAt, it.ExpiresAt)
		values := map[string]types.AttributeValue{
			":bn": &types.AttributeValueMemberS{Value: k.byName}, ":bc": &types.AttributeValueMemberS{Value: k.byCreated},
			":bm": &types.AttributeValueMemberS{Value: k.byModified}, ":be": &types.AttributeValueMemberS{Value: k.byExpires}}
		// Unchanged since the read: every change of name or times moves the version.
		cond := "attribute_exists(pk) AND attribute_not_exists(byName) AND "
		if it.Version == 0 {
			cond += "attribute_not_exists(version)"
		} else {
			cond += "version = :v"
			values[":v"] = &types.AttributeValueMemberN{Value: strconv.Itoa(it.Version)}
		}
		failed, err := s.transact(ctx, []types.TransactWriteItem{
			{Update: &types.Update{TableName: aws.String(s.table), Key: key(tenant, id),
				UpdateExpression:          aws.String("SET byName = :bn, byCreated = :bc, byModified = :bm, byExpires = :be"),
				ConditionExpression:       aws.String(cond),
				ExpressionAttributeValues: values}},
			s.tokenCountChange(tenant, id, 1),
		})
		switch {
		case err != nil:
			return err
		case failed != nil:
			return errMoved // changed meanwhile: read again
		}
		listed = true
		return nil
	})
	return listed, err
}

// Every list Query bounds its sort key with a range (BETWEEN, >=), never begins_with and never
// the partition alone: DynamoDB answers both alike, but DynamoDB Local reads the whole partition
// for begins_with (the count of a tenant of 100,000 took 40 ms against 4.7 ms for one of 100;
// with BETWEEN 3.4 ms against 5.6 ms), and the unbounded Query took 1.5 times as long.
const lowestKey = " " // below every list key: names hold no control characters, ids and dates start higher

// successor is the smallest string after every string that starts with p (p with its last
// character moved on by one; UTF-8 keeps code point order), "" when there is none.
func successor(p string) string {
	r, size := utf8.DecodeLastRuneInString(p)
	switch {
	case p == "" || r == utf8.RuneError || r == utf8.MaxRune:
		return ""
	case r+1 == 0xD800: // the surrogates are no characters
		r = 0xDFFF
	}
	return p[:len(p)-size] + string(r+1)
}

// prefixCond is the key condition that attribute starts with the value of :p, as a range
// (:p and :p2 set in values) where one exists. (The successor itself is no key: a list key goes
// on after the name with "\x01" and the id.)
func prefixCond(attribute, p string, values map[string]types.AttributeValue) string {
	values[":p"] = &types.AttributeValueMemberS{Value: p}
	if next := successor(p); next != "" {
		values[":p2"] = &types.AttributeValueMemberS{Value: next}
		return attribute + " BETWEEN :p AND :p2"
	}
	return "begins_with(" + attribute + ", :p)"
}

// primaryOf is the part of a derived sort key before its id: the value the API sorts by.
func primaryOf(sortKey string) string {
	if p, _, ok := strings.Cut(sortKey, nameSep); ok {
		return p
	}
	if strings.HasPrefix(sortKey, noExpiry) {
		return sortKey
	}
	p, _, _ := strings.Cut(sortKey, "#")
	return p
}

// WithListKeys sets on a token item in the store's layout (a bulk seed's copy of one the store
// wrote) the list keys its id, name and times give, as Create does.
func WithListKeys(it map[string]types.AttributeValue) {
	k := keysOf(str(it, "id"), str(it, "name"), str(it, "createdAt"), str(it, "modifiedAt"), str(it, attrExpiresAt))
	for name, v := range map[string]string{attrByName: k.byName, attrByCreated: k.byCreated, attrByModified: k.byModified, attrByExpires: k.byExpires} {
		it[name] = &types.AttributeValueMemberS{Value: v}
	}
}

// CountItems are the counter items that count ids (all new) as tenant's tokens, for a bulk seed
// written without the store's transactions.
func CountItems(tenant string, ids []string) []map[string]types.AttributeValue {
	counts := map[string]int{}
	for _, id := range ids {
		counts[countKey(tenant, id)[attrSK].(*types.AttributeValueMemberS).Value]++
	}
	var items []map[string]types.AttributeValue
	for sk, n := range counts {
		items = append(items, map[string]types.AttributeValue{attrPK: &types.AttributeValueMemberS{Value: tenant},
			attrSK: &types.AttributeValueMemberS{Value: sk}, attrCount: &types.AttributeValueMemberN{Value: strconv.Itoa(n)}})
	}
	return items
}

// Indexes are the table's global secondary indexes as CreateTable makes them (and template.yaml
// must declare them): the expiry index and the list indexes.
func Indexes() []types.GlobalSecondaryIndex {
	return append([]types.GlobalSecondaryIndex{expiryIndex()}, listIndexes()...)
}
