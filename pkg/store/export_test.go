package store

import (
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/token"
)

// What limits_test.go (package store_test) needs of the store's insides.

// WithMaxUsages is the store with another bound on a token's usages, so that a test reaches it
// in a few registrations.
func (s *Store) WithMaxUsages(n int) *Store {
	c := *s
	c.maxUsages = n
	return &c
}

// CheckTransaction is checkTransaction.
var CheckTransaction = checkTransaction

// FullTokenItem is t's item as the store writes it, with every attribute a token item can hold
// set at once: created (or replacing t.Replaces), used, replaced by successor and retiring,
// with consumers.
func FullTokenItem(t token.Token, sealed token.Sealed, consumers []string, successor string, at time.Time) (map[string]types.AttributeValue, error) {
	it := newItem(t, sealed, newUID(), "c6af9ac6-7b61-11e6-9a41-93e8deadbeef", at)
	stamp := token.FormatTime(at)
	it.Replaces, it.ReplacedBy, it.RetiresAt, it.LastUsedAt = t.Replaces, successor, stamp, stamp
	it.UsageCount, it.Consumers, it.Version = len(consumers), consumers, 1<<31-1
	return attributevalue.MarshalMap(it)
}
