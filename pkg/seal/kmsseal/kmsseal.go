// Package kmsseal seals token values with AWS KMS envelope encryption: GenerateDataKey
// (AES_256) per value with the encryption context {tenant, tokenId} (and egress, the digest of
// the token's egress policy, when it has one), AES-256-GCM over the value with the same context
// as additional data, and Decrypt with the same context to open. Only the
// functions that seal or open import it, so the others do not link a KMS client.
package kmsseal

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	smithy "github.com/aws/smithy-go"

	"aitokens/pkg/awsconf"
	"aitokens/pkg/awsretry"
	appconfig "aitokens/pkg/config"
	"aitokens/pkg/metrics"
	"aitokens/pkg/seal"
	"aitokens/pkg/token"
)

// Algorithm names this scheme in the stored item.
const Algorithm = "kms-aes256gcm-v1"

// KMS is the production sealer.
type KMS struct {
	client *kms.Client
	keyID  string
}

// New seals with keyID (a key id, ARN or alias) through client.
func New(client *kms.Client, keyID string) *KMS { return &KMS{client: client, keyID: keyID} }

// NewClient makes a KMS client from awsconf's configuration (in Lambda: the credentials and
// region Lambda provides; AWS_ENDPOINT_URL_KMS can point it at another endpoint), retrying
// throttling and 5xx a few times with a short backoff (awsretry): a request should fail with a
// clear 503 well within API Gateway's 30 s.
func NewClient(ctx context.Context, policy awsretry.Policy) (*kms.Client, error) {
	cfg, err := awsconf.Load(ctx, policy)
	if err != nil {
		return nil, err
	}
	return kms.NewFromConfig(cfg), nil
}

// FromConfig picks the sealer the configuration asks for: KMS with KMS_KEY_ID set, otherwise the
// local sealer with the master key file MASTER_KEY_FILE.
func FromConfig(ctx context.Context, cfg appconfig.Config) (seal.Sealer, error) {
	if cfg.KMSKeyID != "" {
		client, err := NewClient(ctx, cfg.AWS)
		if err != nil {
			return nil, err
		}
		return New(client, cfg.KMSKeyID), nil
	}
	if cfg.MasterKeyFile != "" {
		return seal.NewLocal(cfg.MasterKeyFile)
	}
	return nil, errors.New("kmsseal: set KMS_KEY_ID (AWS KMS) or MASTER_KEY_FILE (local development sealer)")
}

func (k *KMS) Seal(ctx context.Context, b seal.Binding, value []byte) (token.Sealed, error) {
	if err := seal.CheckContext(b.Context()); err != nil {
		return token.Sealed{}, token.InternalError(err) // never sent: KMS would refuse it
	}
	metrics.FromContext(ctx).Add(metrics.KMSCalls, 1)
	out, err := k.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
		KeyId:             aws.String(k.keyID),
		KeySpec:           kmstypes.DataKeySpecAes256,
		EncryptionContext: b.Context(),
	})
	if err != nil {
		return token.Sealed{}, classify(err)
	}
	defer seal.Wipe(out.Plaintext) // the plaintext data key lives only for this call
	nonce, ciphertext, err := seal.EncryptValue(out.Plaintext, b, value)
	if err != nil {
		return token.Sealed{}, token.InternalError(err)
	}
	return token.Sealed{KeyID: aws.ToString(out.KeyId), Algorithm: Algorithm, WrappedKey: out.CiphertextBlob, Nonce: nonce, Ciphertext: ciphertext}, nil
}

func (k *KMS) Open(ctx context.Context, b seal.Binding, s token.Sealed) ([]byte, error) {
	if s.Algorithm != Algorithm {
		return nil, token.InternalError(fmt.Errorf("kmsseal: cannot open a value sealed with %q", s.Algorithm))
	}
	if err := seal.CheckContext(b.Context()); err != nil {
		return nil, token.InternalError(err)
	}
	metrics.FromContext(ctx).Add(metrics.KMSCalls, 1)
	out, err := k.client.Decrypt(ctx, &kms.DecryptInput{
		CiphertextBlob:    s.WrappedKey,
		KeyId:             aws.String(s.KeyID),
		EncryptionContext: b.Context(),
	})
	if err != nil {
		return nil, classify(err)
	}
	defer seal.Wipe(out.Plaintext)
	plain, err := seal.DecryptValue(out.Plaintext, b, s.Nonce, s.Ciphertext)
	if err != nil {
		return nil, token.InternalError(err)
	}
	return plain, nil
}

// classify maps a KMS failure (after the SDK's retries) to the service's errors: busy or
// unreachable is a 503 the client may retry; a refusal (access denied, disabled or missing key,
// bad context) is a 502 that only an operator can mend.
func classify(err error) error {
	switch {
	case awsretry.Cancelled(err):
		return &token.Error{Kind: token.Unavailable, Reason: token.TimedOut, Cause: err}
	case awsretry.Unavailable(err):
		return &token.Error{Kind: token.Unavailable, Reason: token.KeysUnavailable, Cause: err}
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return &token.Error{Kind: token.Dependency, Reason: token.KeysRefused, Code: apiErr.ErrorCode(), Cause: err}
	}
	return token.InternalError(err)
}
