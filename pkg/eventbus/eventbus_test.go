package eventbus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/smithy-go"

	"aitokens/pkg/awsretry"
	"aitokens/pkg/devtools/ebtest"
	"aitokens/pkg/eventbus"
	"aitokens/pkg/token"
)

// record is a stream record of a new audit event item of token id (seq its sequence number),
// with extra attributes in its image.
func record(seq int, id string, extra map[string]events.DynamoDBAttributeValue) events.DynamoDBEventRecord {
	sk := fmt.Sprintf("event#%s#2026-12-01T10:00:00.%03dZ#req-%d", id, seq%1000, seq)
	img := map[string]events.DynamoDBAttributeValue{
		"pk": events.NewStringAttribute("acme"), "sk": events.NewStringAttribute(sk), "at": events.NewStringAttribute("2026-12-01T10:00:00.000Z"),
		"action": events.NewStringAttribute("patch"), "actor": events.NewStringAttribute("admin-ui"), "requestId": events.NewStringAttribute(fmt.Sprint("req-", seq)),
		"tokenId": events.NewStringAttribute(id), "version": events.NewNumberAttribute("3"), "outcome": events.NewStringAttribute("success"),
		"changes": events.NewListAttribute([]events.DynamoDBAttributeValue{events.NewStringAttribute("name"), events.NewStringAttribute("expiresAt")}),
		"ttl":     events.NewNumberAttribute("1799143200"),
	}
	for k, v := range extra {
		img[k] = v
	}
	return events.DynamoDBEventRecord{EventName: "INSERT", Change: events.DynamoDBStreamRecord{SequenceNumber: fmt.Sprint(seq),
		Keys: map[string]events.DynamoDBAttributeValue{"pk": img["pk"], "sk": img["sk"]}, NewImage: img}}
}

func publisher(t *testing.T) (*ebtest.Server, *eventbus.Publisher) {
	eb := ebtest.New()
	t.Cleanup(eb.Close)
	eb.UseFromEnv(t)
	client, err := eventbus.NewClient(context.Background(), awsretry.Policy{MaxAttempts: 1, AttemptTimeout: time.Second, Backoff: awsretry.NoBackoff})
	if err != nil {
		t.Fatal(err)
	}
	return eb, eventbus.New(client, ebtest.Bus, "aitokens", slog.New(slog.DiscardHandler)).WithBudget(10*time.Second, 100*time.Millisecond)
}

func failures(res events.DynamoDBEventResponse) []string {
	var out []string
	for _, f := range res.BatchItemFailures {
		out = append(out, f.ItemIdentifier)
	}
	return out
}

// The detail is built from the audit event's named fields only: whatever else an item holds
// (here, made-up sealed attributes) never reaches the bus.
func TestDetailHoldsNamedFieldsOnly(t *testing.T) {
	eb, p := publisher(t)
	rec := record(1, "openai", map[string]events.DynamoDBAttributeValue{
		"sealCiphertext": events.NewBinaryAttribute([]byte("ciphertext-bytes")), "hint": events.NewStringAttribute("…WXYZ"),
		"value": events.NewStringAttribute("sk-leak"), "sealDigest": events.NewBinaryAttribute([]byte("digest"))})
	res, _ := p.Handle(context.Background(), events.DynamoDBEvent{Records: []events.DynamoDBEventRecord{rec}})
	entries := eb.Entries()
	if len(failures(res)) != 0 || len(entries) != 1 {
		t.Fatalf("%v %v", res, entries)
	}
	want := `{"id":"acme/event#openai#2026-12-01T10:00:00.001Z#req-1","tenant":"acme","tokenId":"openai","at":"2026-12-01T10:00:00.000Z",` +
		`"action":"patch","actor":"admin-ui","requestId":"req-1","version":3,"outcome":"success","changes":["name","expiresAt"]}`
	if e := entries[0]; e.Detail != want || e.DetailType != "AI Token Updated" || e.Source != "aitokens" {
		t.Fatalf("entry %+v\nwant detail %s", e, want)
	}
}

// Only new audit event items are published: a token's change, an event item removed by TTL
// and a record without an image are left alone.
func TestOtherRecordsAreIgnored(t *testing.T) {
	eb, p := publisher(t)
	token := record(1, "openai", nil)
	token.Change.Keys["sk"] = events.NewStringAttribute("token#openai")
	token.EventName = "MODIFY"
	removed := record(2, "openai", nil)
	removed.EventName = "REMOVE"
	res, _ := p.Handle(context.Background(), events.DynamoDBEvent{Records: []events.DynamoDBEventRecord{token, removed}})
	if len(failures(res)) != 0 || len(eb.Calls()) != 0 {
		t.Fatalf("failures %v, calls %d", failures(res), len(eb.Calls()))
	}
	// An INSERT of an event key with no usable image is reported, not dropped.
	broken := record(3, "openai", nil)
	broken.Change.NewImage = nil
	res, _ = p.Handle(context.Background(), events.DynamoDBEvent{Records: []events.DynamoDBEventRecord{broken}})
	if !slices.Equal(failures(res), []string{"3"}) {
		t.Fatalf("a broken record: %v", failures(res))
	}
}

// 25 events go in calls of 10, 10 and 5; the two throttled calls are tried again (after the
// third); an entry refused for good (not worth retrying) is reported at once, the others are
// published.
func TestBatchingThrottlingAndRefusals(t *testing.T) {
	eb, p := publisher(t)
	var batch events.DynamoDBEvent
	for i := range 25 {
		batch.Records = append(batch.Records, record(i+1, fmt.Sprintf("t%02d", i), nil))
	}
	eb.Throttle(2)
	eb.FailEntries(-1, "AccessDeniedException", func(e ebtest.Entry) bool { return strings.Contains(e.Detail, `"tokenId":"t12"`) })
	start := time.Now()
	res, _ := p.Handle(context.Background(), batch)
	var sizes []int
	for _, c := range eb.Calls() {
		sizes = append(sizes, len(c))
	}
	if !slices.Equal(failures(res), []string{"13"}) || !slices.Equal(sizes, []int{10, 10, 5, 10, 10}) || len(eb.Entries()) != 24 || time.Since(start) > 5*time.Second {
		t.Fatalf("failures %v, calls of %v, %d accepted, %v", failures(res), sizes, len(eb.Entries()), time.Since(start))
	}
}

// Every action the service writes has a detail-type of its own; an unknown one is published
// under DetailTypeOther rather than held back.
func TestDetailTypes(t *testing.T) {
	for _, a := range token.Actions {
		if eventbus.DetailType(a) == eventbus.DetailTypeOther || !strings.HasPrefix(eventbus.DetailType(a), "AI Token ") {
			t.Errorf("%s: %q", a, eventbus.DetailType(a))
		}
	}
	if eventbus.DetailType("something_new") != eventbus.DetailTypeOther {
		t.Error("an unknown action")
	}
}

// EventBridge's limits of one call (issue 27), which the test EventBridge enforces as AWS does:
// a call of entries totalling 256 KB or more by the documented formula is refused whole, one
// just under is taken, and so are 10 entries but not 11.
func TestTestEventBridgeEnforcesPutEventsLimits(t *testing.T) {
	eb := ebtest.New()
	t.Cleanup(eb.Close)
	eb.UseFromEnv(t)
	client, err := eventbus.NewClient(context.Background(), awsretry.Policy{MaxAttempts: 1, AttemptTimeout: 5 * time.Second, Backoff: awsretry.NoBackoff})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	entry := func(size int) types.PutEventsRequestEntry {
		e := types.PutEventsRequestEntry{Source: aws.String("aitokens"), DetailType: aws.String("AI Token Updated"), EventBusName: aws.String(ebtest.Bus),
			Time: &at, Resources: []string{"arn:aws:dynamodb:us-east-1:111122223333:table/t"}}
		pad := size - eventbus.EntrySize(e) - len(`{"p":""}`)
		// Multi-byte characters (and one quote JSON escapes): the size is of UTF-8 bytes, not of the request.
		e.Detail = aws.String(`{"p":"` + strings.Repeat("€", pad/3) + strings.Repeat("x", pad%3) + `"}`)
		if eventbus.EntrySize(e) != size {
			t.Fatalf("entry of %d bytes, want %d", eventbus.EntrySize(e), size)
		}
		return e
	}
	cases := []struct {
		name    string
		entries []types.PutEventsRequestEntry
		ok      bool
	}{
		{"one entry of 256 KB - 1", []types.PutEventsRequestEntry{entry(eventbus.MaxRequestBytes - 1)}, true},
		{"one entry of 256 KB", []types.PutEventsRequestEntry{entry(eventbus.MaxRequestBytes)}, false},
		{"two entries of 128 KB", []types.PutEventsRequestEntry{entry(eventbus.MaxRequestBytes / 2), entry(eventbus.MaxRequestBytes / 2)}, false},
		{"10 entries", slices.Repeat([]types.PutEventsRequestEntry{entry(1000)}, 10), true},
		{"11 entries", slices.Repeat([]types.PutEventsRequestEntry{entry(1000)}, 11), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := client.PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: c.entries})
			var apiErr smithy.APIError
			switch {
			case c.ok && (err != nil || out.FailedEntryCount != 0):
				t.Fatalf("refused: %v %+v", err, out)
			case !c.ok && (!errors.As(err, &apiErr) || apiErr.ErrorCode() != "ValidationException"):
				t.Fatalf("%v, want a ValidationException", err)
			}
		})
	}
}

// A batch whose entries would make a call of 256 KB or more is cut into calls under it (and of
// at most 10 entries), every entry published once; an entry that alone is 256 KB or more is
// never sent (EventBridge would refuse its whole call) and is reported, saying why, while the
// others go out.
func TestBatchesAreCutToPutEventsLimits(t *testing.T) {
	eb, _ := publisher(t)
	big := func(seq int, n int) events.DynamoDBEventRecord {
		// The usage attribute carries into the detail: 90 KB of it makes an entry of ~90 KB.
		return record(seq, fmt.Sprintf("t%02d", seq), map[string]events.DynamoDBAttributeValue{"usage": events.NewStringAttribute(strings.Repeat("u", n))})
	}
	var batch events.DynamoDBEvent
	for i := range 7 {
		batch.Records = append(batch.Records, big(i+1, 90*1024))
	}
	batch.Records = append(batch.Records, big(8, eventbus.MaxRequestBytes))
	for i := range 12 {
		batch.Records = append(batch.Records, record(9+i, fmt.Sprintf("s%02d", i), nil))
	}
	var logs strings.Builder
	p := eventbus.New(clientOf(t), ebtest.Bus, "aitokens", slog.New(slog.NewJSONHandler(&logs, nil))).WithBudget(10*time.Second, 100*time.Millisecond)
	res, sum := p.Publish(context.Background(), batch)
	if !slices.Equal(failures(res), []string{"8"}) || sum.Published != 19 || sum.Failed != 1 || len(eb.Entries()) != 19 {
		t.Fatalf("failures %v, summary %+v, %d accepted", failures(res), sum, len(eb.Entries()))
	}
	var sizes []int
	for _, c := range eb.Calls() {
		total := 0
		for _, e := range c {
			total += e.Size()
			if strings.Contains(e.Detail, `"tokenId":"t08"`) {
				t.Fatal("the entry over the limit was sent")
			}
		}
		if total >= ebtest.MaxRequestBytes || len(c) > eventbus.MaxEntries {
			t.Fatalf("a call of %d entries and %d bytes", len(c), total)
		}
		sizes = append(sizes, len(c))
	}
	// 90 KB entries two to a call; the small ones fill the call of the last big one to 10, then 3.
	if !slices.Equal(sizes, []int{2, 2, 2, 10, 3}) {
		t.Fatalf("calls of %v entries", sizes)
	}
	if !strings.Contains(logs.String(), "not less than EventBridge's PutEvents limit of 262144") {
		t.Fatalf("the refusal is not logged with its reason:\n%s", logs.String())
	}
}

func clientOf(t *testing.T) *eventbridge.Client {
	client, err := eventbus.NewClient(context.Background(), awsretry.Policy{MaxAttempts: 1, AttemptTimeout: 5 * time.Second, Backoff: awsretry.NoBackoff})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// longest is the longest run of c that pattern matches (it fails on an unbounded pattern).
func longest(t *testing.T, pattern, c string) string {
	t.Helper()
	re := regexp.MustCompile(pattern)
	matched := false
	for n := 1; n < 10_000; n++ {
		switch ok := re.MatchString(strings.Repeat(c, n)); {
		case ok:
			matched = true
		case matched:
			return strings.Repeat(c, n-1)
		}
	}
	t.Fatalf("%s is unbounded", pattern)
	return ""
}

// The largest audit event the service writes (every field at the bound of what fills it; the
// actor, a JWT's sub, within API Gateway's 10,240 bytes of request line and headers, "Quotas
// for configuring and running an HTTP API") is far under 256 KB, and 10 of them still go in one
// call: in production the cut by size never splits a batch; it guards against what the code
// cannot bound.
func TestLargestEventsGoTenToACall(t *testing.T) {
	eb, p := publisher(t)
	tenant := longest(t, token.TenantPattern, "t")
	id := longest(t, token.IDPattern, "i")
	usage := token.Usage{Kind: "oauth-client", RefID: longest(t, token.RefIDPattern, "r")}
	var records []events.DynamoDBEventRecord
	for i := range eventbus.MaxEntries {
		rid := fmt.Sprintf("c6af9ac6-7b61-11e6-9a41-%012d", i) // a Lambda request id
		sk := "event#" + id + "#2026-12-01T10:00:00.000Z#" + rid + "#" + usage.Key()
		str := events.NewStringAttribute
		img := map[string]events.DynamoDBAttributeValue{"pk": str(tenant), "sk": str(sk), "at": str("2026-12-01T10:00:00.000Z"),
			"action": str(token.ActionUsageUnregister), "actor": str(strings.Repeat("a", 10240)), "requestId": str(rid), "tokenId": str(id),
			"version": events.NewNumberAttribute("2147483647"), "outcome": str("key_service_unavailable"),
			"changes": events.NewListAttribute([]events.DynamoDBAttributeValue{str("name"), str("expiresAt"), str("restricted"), str("replacedBy")}),
			"usage":   str(usage.Kind + "/" + usage.RefID), "replaces": str(id), "replacedBy": str(id), "lead": str(strings.Repeat("l", 32)),
			"expiresAt": str("9999-12-31T23:59:59.999Z")}
		records = append(records, events.DynamoDBEventRecord{EventName: "INSERT", Change: events.DynamoDBStreamRecord{SequenceNumber: fmt.Sprint(i + 1),
			Keys: map[string]events.DynamoDBAttributeValue{"pk": img["pk"], "sk": img["sk"]}, NewImage: img}})
	}
	res, sum := p.Publish(context.Background(), events.DynamoDBEvent{Records: records})
	calls := eb.Calls()
	if len(failures(res)) != 0 || sum.Published != eventbus.MaxEntries || len(calls) != 1 {
		t.Fatalf("failures %v, %+v, %d calls", failures(res), sum, len(calls))
	}
	total, largest := 0, 0
	for _, e := range calls[0] {
		total += e.Size()
		largest = max(largest, e.Size())
	}
	t.Logf("largest event entry %d bytes; 10 of them %d of EventBridge's %d", largest, total, eventbus.MaxRequestBytes)
	if total >= eventbus.MaxRequestBytes {
		t.Fatalf("10 of the largest entries are %d bytes, over EventBridge's %d", total, eventbus.MaxRequestBytes)
	}
}
