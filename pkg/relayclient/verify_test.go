package relayclient_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// creds are the signing credentials of the tests (a session's, so the token header is covered).
var creds = aws.Credentials{AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", SessionToken: "session-token-example"}

func provider() aws.CredentialsProvider {
	return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil })
}

// signedAt is the fixed signing clock.
var signedAt = time.Date(2026, 12, 7, 3, 4, 5, 0, time.UTC)

const region = "eu-west-1"

// verifySigV4 checks a received request as the function URL's IAM check would: it rebuilds the
// canonical request from what arrived (method, host, path, query, the headers SignedHeaders
// names, the SHA-256 of the body that arrived), signs it with the same secret at the time of
// X-Amz-Date, and compares the signature. A body, path, query or signed header changed on the
// way gives another signature.
func verifySigV4(r *http.Request, body []byte) error {
	auth := r.Header.Get("Authorization")
	fields := map[string]string{}
	rest, ok := strings.CutPrefix(auth, "AWS4-HMAC-SHA256 ")
	if !ok {
		return fmt.Errorf("authorization %q is not SigV4", auth)
	}
	for f := range strings.SplitSeq(rest, ", ") {
		k, v, _ := strings.Cut(f, "=")
		fields[k] = v
	}
	at, err := time.Parse("20060102T150405Z", r.Header.Get("X-Amz-Date"))
	if err != nil {
		return fmt.Errorf("X-Amz-Date: %v", err)
	}
	if want := creds.AccessKeyID + "/" + at.Format("20060102") + "/" + region + "/lambda/aws4_request"; fields["Credential"] != want {
		return fmt.Errorf("credential %q, want %q", fields["Credential"], want)
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	if got := r.Header.Get("X-Amz-Content-Sha256"); got != hash {
		return fmt.Errorf("X-Amz-Content-Sha256 %q is not the SHA-256 of the body that arrived (%s)", got, hash)
	}
	u, err := url.Parse("http://" + r.Host + r.RequestURI)
	if err != nil {
		return err
	}
	again := &http.Request{Method: r.Method, URL: u, Host: r.Host, Header: http.Header{}, ContentLength: int64(len(body))}
	for h := range strings.SplitSeq(fields["SignedHeaders"], ";") {
		switch h {
		case "host", "content-length", "x-amz-date", "x-amz-security-token":
			// the signer writes these from the request, its clock and the credentials
		default:
			if vs := r.Header.Values(h); len(vs) > 0 {
				again.Header[http.CanonicalHeaderKey(h)] = vs
			} else {
				return fmt.Errorf("signed header %s did not arrive", h)
			}
		}
	}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, again, hash, "lambda", region, at); err != nil {
		return err
	}
	if got, want := auth, again.Header.Get("Authorization"); got != want {
		return fmt.Errorf("signature does not verify:\n got %s\nwant %s", got, want)
	}
	// The signer writes the query in canonical form; arriving in that form byte for byte, it
	// reads the same to any verifier (order, "+" against "%20").
	if again.URL.RawQuery != r.URL.RawQuery {
		return fmt.Errorf("query %q arrived, %q is the signed form", r.URL.RawQuery, again.URL.RawQuery)
	}
	if r.Header.Get("X-Amz-Security-Token") != creds.SessionToken {
		return fmt.Errorf("X-Amz-Security-Token %q", r.Header.Get("X-Amz-Security-Token"))
	}
	return nil
}
