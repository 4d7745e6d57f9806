package functions_test

import (
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"aitokens/pkg/store"
)

// The template declares the table's indexes as store.CreateTable makes them for DynamoDB Local
// (the tests' and `make run`'s table): the same names, keys and projections, every key attribute
// a string, so that what the tests prove of the indexes holds of the deployed table.
func TestTemplateIndexesAreTheStores(t *testing.T) {
	_, _, resources := loadTemplate(t)
	table := dig(resources, "TokensTable", "Properties")
	types := map[string]any{}
	for _, d := range dig(table, "AttributeDefinitions").([]any) {
		types[dig(d, "AttributeName").(string)] = dig(d, "AttributeType")
	}
	declared := map[string]any{}
	for _, gsi := range dig(table, "GlobalSecondaryIndexes").([]any) {
		declared[dig(gsi, "IndexName").(string)] = gsi
	}
	if len(declared) != len(store.Indexes()) {
		t.Errorf("the template declares %d indexes, the store makes %d", len(declared), len(store.Indexes()))
	}
	for _, want := range store.Indexes() {
		name := aws.ToString(want.IndexName)
		got, ok := declared[name]
		if !ok {
			t.Errorf("the template has no index %s", name)
			continue
		}
		keys := dig(got, "KeySchema").([]any)
		if len(keys) != len(want.KeySchema) {
			t.Errorf("index %s: keys %v", name, keys)
			continue
		}
		for i, k := range want.KeySchema {
			attr := aws.ToString(k.AttributeName)
			if dig(keys[i], "AttributeName") != attr || dig(keys[i], "KeyType") != string(k.KeyType) || types[attr] != "S" {
				t.Errorf("index %s: key %d is %v (type %v), the store's %s %s S", name, i, keys[i], types[attr], attr, k.KeyType)
			}
		}
		p := want.Projection
		nonKey := strs(dig(got, "Projection", "NonKeyAttributes"))
		slices.Sort(nonKey)
		wantNonKey := slices.Sorted(slices.Values(p.NonKeyAttributes))
		if dig(got, "Projection", "ProjectionType") != string(p.ProjectionType) || !slices.Equal(nonKey, wantNonKey) {
			t.Errorf("index %s: projection %v, the store's %s %v", name, dig(got, "Projection"), p.ProjectionType, wantNonKey)
		}
	}
}
