package store

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/token"
)

// DynamoDB's limits that the store's writes must keep (issue 27). DynamoDB Local enforces these
// too (item size, also when an update grows an item, 100 actions and the 4 MB payload of a
// transaction, the 4 KB expression); limits_test.go computes, from the code's own bounds, that
// no write the API allows reaches them, and transact refuses one that would before sending it.
//
// "Quotas in Amazon DynamoDB"
// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html) and its
// constraints page (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Constraints.html):
// an item is at most 400 KB, attribute names included; a transaction holds at most 100 actions
// and 4 MB of data; an expression string is at most 4 KB. 1 KB = 1024 bytes there.
const (
	MaxItemBytes        = 400 * 1024
	MaxTransactionBytes = 4 * 1024 * 1024
	MaxExpressionBytes  = 4 * 1024
	maxTransactionItems = 100
	// A BatchGetItem names at most 100 keys (and answers at most 16 MB, the rest coming back as
	// UnprocessedKeys, which the readers follow), "Quotas in Amazon DynamoDB", API-specific.
	// The store writes no BatchWriteItem (its 25-item bound does not arise).
	maxBatchGetKeys = 100
)

// MaxUsages is the most usages one token may have. Every usage is mirrored in the token item's
// consumers set (up to 141 bytes each: "oauth-client#" and a refId of 128), so without a bound
// the item would outgrow DynamoDB's 400 KB at about the 2,700th registration, which AWS refuses
// as a ValidationException (a 500 to the client). Registering one more is a 409 usage_limit
// instead. limits_test.go checks that the largest token item with this many consumers fits.
const MaxUsages = 1000

// ItemSize is the size DynamoDB counts for an item, by "DynamoDB item sizes and formats"
// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html):
// each attribute's name in UTF-8 bytes plus its value: a string's UTF-8 bytes, a binary's raw
// bytes, a number's 1 byte per two significant digits plus 1, a boolean or null 1 byte, a
// list or map 3 bytes plus its elements at 1 byte each more, a set the sum of its elements.
func ItemSize(item map[string]types.AttributeValue) int {
	n := 0
	for name, v := range item {
		n += len(name) + valueSize(v)
	}
	return n
}

func valueSize(v types.AttributeValue) int {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return len(v.Value)
	case *types.AttributeValueMemberB:
		return len(v.Value)
	case *types.AttributeValueMemberN:
		return numberSize(v.Value)
	case *types.AttributeValueMemberBOOL, *types.AttributeValueMemberNULL:
		return 1
	case *types.AttributeValueMemberSS:
		n := 0
		for _, s := range v.Value {
			n += len(s)
		}
		return n
	case *types.AttributeValueMemberNS:
		n := 0
		for _, s := range v.Value {
			n += numberSize(s)
		}
		return n
	case *types.AttributeValueMemberBS:
		n := 0
		for _, b := range v.Value {
			n += len(b)
		}
		return n
	case *types.AttributeValueMemberL:
		n := 3
		for _, e := range v.Value {
			n += 1 + valueSize(e)
		}
		return n
	case *types.AttributeValueMemberM:
		n := 3
		for k, e := range v.Value {
			n += 1 + len(k) + valueSize(e)
		}
		return n
	}
	return 0
}

// numberSize is 1 byte per two significant digits (leading and trailing zeroes trimmed), plus 1.
func numberSize(s string) int {
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, strings.SplitN(strings.ToLower(s), "e", 2)[0])
	digits = strings.Trim(digits, "0")
	return (utf8.RuneCountInString(digits)+1)/2 + 1
}

// checkTransaction refuses, before DynamoDB sees it, a transaction over DynamoDB's limits: more
// than 100 actions, an item put over 400 KB, an expression over 4 KB, or more than 4 MB of
// items. No write the API allows gets here (limits_test.go); it is the clear error of a change
// that would, rather than AWS's ValidationException in production only.
func checkTransaction(items []types.TransactWriteItem) error {
	if len(items) > maxTransactionItems {
		return token.InternalError(fmt.Errorf("store: a transaction of %d actions, over DynamoDB's %d", len(items), maxTransactionItems))
	}
	total := 0
	for i, it := range items {
		var exprs []*string
		size := 0
		switch {
		case it.Put != nil:
			size = ItemSize(it.Put.Item)
			if size > MaxItemBytes {
				return token.InternalError(fmt.Errorf("store: action %d puts an item of %d bytes, over DynamoDB's %d", i, size, MaxItemBytes))
			}
			exprs = append(exprs, it.Put.ConditionExpression)
		case it.Update != nil:
			size = ItemSize(it.Update.Key) + ItemSize(it.Update.ExpressionAttributeValues)
			exprs = append(exprs, it.Update.UpdateExpression, it.Update.ConditionExpression)
		case it.Delete != nil:
			size = ItemSize(it.Delete.Key) + ItemSize(it.Delete.ExpressionAttributeValues)
			exprs = append(exprs, it.Delete.ConditionExpression)
		case it.ConditionCheck != nil:
			size = ItemSize(it.ConditionCheck.Key) + ItemSize(it.ConditionCheck.ExpressionAttributeValues)
			exprs = append(exprs, it.ConditionCheck.ConditionExpression)
		}
		for _, e := range exprs {
			if e != nil && len(*e) > MaxExpressionBytes {
				return token.InternalError(fmt.Errorf("store: action %d has an expression of %d bytes, over DynamoDB's %d", i, len(*e), MaxExpressionBytes))
			}
		}
		total += size
	}
	if total > MaxTransactionBytes {
		return token.InternalError(fmt.Errorf("store: a transaction of %d bytes, over DynamoDB's %d", total, MaxTransactionBytes))
	}
	return nil
}
