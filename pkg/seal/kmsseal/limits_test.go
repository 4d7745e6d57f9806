package kmsseal_test

import (
	"context"
	"errors"
	"regexp/syntax"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"aitokens/pkg/devtools/kmstest"
	"aitokens/pkg/seal"
	"aitokens/pkg/seal/kmsseal"
	"aitokens/pkg/token"
)

// The encryption context's limits (issue 27, seal.CheckContext).

// maxLen is the longest UTF-8 string a bounded pattern matches (it fails on an unbounded one).
func maxLen(t *testing.T, pattern string) int {
	t.Helper()
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		t.Fatal(err)
	}
	var walk func(re *syntax.Regexp) int
	walk = func(re *syntax.Regexp) int {
		n := 0
		switch re.Op {
		case syntax.OpLiteral:
			for _, r := range re.Rune {
				n += utf8.RuneLen(r)
			}
		case syntax.OpCharClass:
			n = utf8.RuneLen(re.Rune[len(re.Rune)-1])
		case syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText:
		case syntax.OpCapture, syntax.OpQuest:
			n = walk(re.Sub[0])
		case syntax.OpRepeat:
			if re.Max < 0 {
				t.Fatalf("%s is unbounded", pattern)
			}
			n = re.Max * walk(re.Sub[0])
		case syntax.OpConcat:
			for _, s := range re.Sub {
				n += walk(s)
			}
		default:
			t.Fatalf("%s: %v is unbounded or not handled", pattern, re.Op)
		}
		return n
	}
	return walk(re)
}

// The largest context the service sends (the longest tenant and id the patterns admit, and an
// egress digest) is within KMS's limits, and the test KMS takes it: widening a pattern past
// them fails here. Its size is logged.
func TestLargestEncryptionContextFits(t *testing.T) {
	k, srv := newSealer(t)
	egress := token.Egress{AllowedHosts: []string{"api.openai.com"}, Inject: token.Inject{In: token.InjectHeader, Name: "Authorization", Template: "Bearer {{value}}"}}
	b := seal.Binding{Tenant: strings.Repeat("t", maxLen(t, token.TenantPattern)), ID: strings.Repeat("i", maxLen(t, token.IDPattern)), Egress: egress.Digest()}
	c := b.Context()
	size := 0
	for k, v := range c {
		size += len(k) + len(v)
	}
	t.Logf("largest encryption context: %d pairs, %d bytes (limits %d pairs, %d characters a value, %d bytes)",
		len(c), size, seal.MaxContextPairs, seal.MaxContextValueChars, seal.MaxContextBytes)
	if err := seal.CheckContext(c); err != nil {
		t.Fatalf("the largest context the service sends: %v", err)
	}
	sealed, err := k.Seal(context.Background(), b, []byte("sk-largest"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k.Open(context.Background(), b, sealed); err != nil || string(got) != "sk-largest" {
		t.Fatalf("open: %q %v", got, err)
	}
	if srv.Calls()["GenerateDataKey"] != 1 || srv.Calls()["Decrypt"] != 1 {
		t.Fatalf("calls %v", srv.Calls())
	}
}

// A context over a limit is refused by the sealer before KMS is called (an internal error
// that says which), and the test KMS refuses it as well when sent (ValidationException).
func TestContextOverTheLimitsIsRefused(t *testing.T) {
	k, srv := newSealer(t)
	cases := map[string]seal.Binding{
		"a value of 385 characters": {Tenant: "acme", ID: strings.Repeat("é", seal.MaxContextValueChars+1)},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := k.Seal(context.Background(), b, []byte("v")); token.KindOf(err) != token.Internal || !strings.Contains(err.Error(), "over 384") {
				t.Fatalf("seal: %v, want an internal error naming the limit", err)
			}
			if _, err := k.Open(context.Background(), b, token.Sealed{Algorithm: kmsseal.Algorithm, WrappedKey: []byte{1}}); token.KindOf(err) != token.Internal {
				t.Fatalf("open: %v", err)
			}
			if n := srv.Calls(); len(n) != 0 {
				t.Fatalf("KMS was called: %v", n)
			}
		})
	}
	over := map[string]map[string]string{
		"9 pairs":                   {"tenant": "acme", "tokenId": "x", "a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6", "g": "7"},
		"a value of 385 characters": {"tenant": "acme", "tokenId": strings.Repeat("x", seal.MaxContextValueChars+1)},
		"4097 bytes":                bytesOver(),
	}
	client, err := kmsseal.NewClient(context.Background(), envConfig(t).AWS)
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range over {
		t.Run("the test KMS refuses "+name, func(t *testing.T) {
			if seal.CheckContext(c) == nil {
				t.Fatal("CheckContext takes it")
			}
			_, err := client.GenerateDataKey(context.Background(), &kms.GenerateDataKeyInput{KeyId: aws.String(kmstest.KeyARN),
				KeySpec: kmstypes.DataKeySpecAes256, EncryptionContext: c})
			var apiErr smithy.APIError
			if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "ValidationException" {
				t.Fatalf("%v, want a ValidationException", err)
			}
		})
	}
}

// bytesOver is a context of 8 pairs, each value within 384 characters, of 4097 bytes (values
// of 2-byte characters).
func bytesOver() map[string]string {
	c := map[string]string{"tenant": "acme", "tokenId": "x"}
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		c[k] = strings.Repeat("é", seal.MaxContextValueChars)
	}
	c["f"] = ""
	c["f"] = strings.Repeat("x", seal.MaxContextBytes+1-ctxBytes(c))
	return c
}

func ctxBytes(c map[string]string) int {
	n := 0
	for k, v := range c {
		n += len(k) + len(v)
	}
	return n
}

func TestBytesOverIsOverBytesOnly(t *testing.T) {
	c := bytesOver()
	if ctxBytes(c) != seal.MaxContextBytes+1 || len(c) != seal.MaxContextPairs {
		t.Fatalf("%d bytes in %d pairs", ctxBytes(c), len(c))
	}
	for _, v := range c {
		if utf8.RuneCountInString(v) > seal.MaxContextValueChars {
			t.Fatal("a value over 384 characters")
		}
	}
}
