package eventbus_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"aitokens/pkg/awsretry"
	"aitokens/pkg/devtools/ebtest"
	"aitokens/pkg/eventbus"
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
	for _, a := range []string{"create", "update", "patch", "delete", "force_delete", "usage_register", "usage_unregister", "resolve", "expiring", "expired", "replaced"} {
		if eventbus.DetailType(a) == eventbus.DetailTypeOther || !strings.HasPrefix(eventbus.DetailType(a), "AI Token ") {
			t.Errorf("%s: %q", a, eventbus.DetailType(a))
		}
	}
	if eventbus.DetailType("something_new") != eventbus.DetailTypeOther {
		t.Error("an unknown action")
	}
}
