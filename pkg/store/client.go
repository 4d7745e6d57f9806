// Package store keeps tokens in DynamoDB. Every key starts with the tenant (partition key = tenant),
// every write is conditional, and no read made for showing or listing tokens fetches the sealed
// value attributes.
package store

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/awsconf"
	"aitokens/pkg/awsretry"
)

// NewClient builds a DynamoDB client from awsconf's configuration (in Lambda: the credentials
// and region Lambda provides). With endpoint set (DynamoDB Local) it talks to that address with
// dummy credentials, and a default region when none is configured, because DynamoDB Local
// accepts any. policy bounds every attempt.
func NewClient(ctx context.Context, endpoint string, policy awsretry.Policy, optFns ...func(*dynamodb.Options)) (*dynamodb.Client, error) {
	var cfg aws.Config
	if endpoint != "" {
		cfg = awsconf.Local(os.Getenv, policy)
	} else {
		var err error
		if cfg, err = awsconf.Load(ctx, policy); err != nil {
			return nil, err
		}
	}
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
			// DynamoDB Local's CRC32 header does not always match its error bodies.
			o.DisableValidateResponseChecksum = true
		}
	}, func(o *dynamodb.Options) {
		for _, fn := range optFns {
			fn(o)
		}
	}), nil
}

// CreateTable makes the table as template.yaml declares it (pk/sk strings, on demand, TTL on
// ttl, the stream, the expiry index and the list indexes) and waits until it is active. An
// existing table is given the stream and the indexes when it lacks them (upgradeTable); the rest
// is left as it is.
func CreateTable(ctx context.Context, db *dynamodb.Client, table string) error {
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String(table),
		AttributeDefinitions: append([]types.AttributeDefinition{
			{AttributeName: aws.String(attrPK), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(attrSK), AttributeType: types.ScalarAttributeTypeS},
		}, append(expiryIndexAttributes(), listIndexAttributes()...)...),
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(attrPK), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(attrSK), KeyType: types.KeyTypeRange},
		},
		BillingMode:            types.BillingModePayPerRequest,
		GlobalSecondaryIndexes: Indexes(),
		StreamSpecification:    tableStream(),
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return err
	}
	if err := dynamodb.NewTableExistsWaiter(db).Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)}, time.Minute); err != nil {
		return err
	}
	if err := upgradeTable(ctx, db, table); err != nil {
		return err
	}
	// Audit events expire by TTL, as the template enables it (a table that has it already is fine).
	ttl, err := db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
	if err != nil {
		return err
	}
	if d := ttl.TimeToLiveDescription; d != nil && d.TimeToLiveStatus == types.TimeToLiveStatusEnabled {
		return nil
	}
	_, err = db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{TableName: aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String(attrTTL), Enabled: aws.Bool(true)}})
	return err
}
