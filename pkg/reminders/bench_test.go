package reminders_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"golang.org/x/sync/errgroup"

	"aitokens/pkg/devtools/testenv"
	"aitokens/pkg/reminders"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

// seed writes n tokens of tenants t0..t9 in bulk (BatchWriteItem, no audit trail): the first
// expiring spread over the next 6 days, half of the rest expiring 60 days to 2 years from now
// (outside every window), the others never. Items are laid down as the store writes them.
func seed(b *testing.B, table string, n, expiring int, now time.Time) {
	b.Helper()
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	item := func(i int) map[string]types.AttributeValue {
		id := fmt.Sprintf("tok-%06d", i)
		it := map[string]types.AttributeValue{"pk": s(fmt.Sprintf("t%d", i%10)), "sk": s("token#" + id), "id": s(id), "name": s(id),
			"version": &types.AttributeValueMemberN{Value: "1"}, "usageCount": &types.AttributeValueMemberN{Value: "0"},
			"createdAt": s(token.FormatTime(now)), "modifiedAt": s(token.FormatTime(now)), "uid": s(fmt.Sprintf("uid%09d", i))}
		var exp time.Time
		switch {
		case i < expiring:
			exp = now.Add(time.Duration(i+1) * 6 * 24 * time.Hour / time.Duration(expiring+1))
		case i%2 == 0:
			exp = now.Add(60*24*time.Hour + time.Duration(i)*time.Minute*10)
		default:
			return it
		}
		it["expiresAt"], it["expiryDay"] = s(token.FormatTime(exp)), s(exp.UTC().Format(time.DateOnly))
		return it
	}
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(8)
	for start := 0; start < n; start += 25 {
		g.Go(func() error {
			var reqs []types.WriteRequest
			for i := start; i < min(start+25, n); i++ {
				reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: item(i)}})
			}
			in := map[string][]types.WriteRequest{table: reqs}
			for len(in) > 0 {
				out, err := testenv.Client().BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: in})
				if err != nil {
					return err
				}
				in = out.UnprocessedItems
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSweepReads is what one hourly sweep reads and calls with 10 tokens expiring this
// week among 10,000 and (with BENCH_SWEEP_100K=1: seeding them takes DynamoDB Local about 7
// minutes here) among 100,000 (docs/benchmarks.md): the first sweep writes their reminders,
// the next ones find them written. DynamoDB calls are counted at a proxy.
func BenchmarkSweepReads(b *testing.B) {
	sizes := []int{10_000}
	if os.Getenv("BENCH_SWEEP_100K") == "1" {
		sizes = append(sizes, 100_000)
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("tokens=%d", n), func(b *testing.B) {
			table := testenv.NewTable(b)
			testenv.LeaveInvariants(b, table, "tokens seeded in bulk have no audit trail")
			now := time.Now().UTC()
			start := time.Now()
			seed(b, table, n, 10, now)
			b.Logf("seeded %d tokens in %v", n, time.Since(start).Round(time.Second))
			proxy := testenv.NewFaultProxy(b)
			client, err := store.NewClient(context.Background(), proxy.URL, testenv.Policy)
			if err != nil {
				b.Fatal(err)
			}
			sw := reminders.New(store.New(client, table), defaults, slog.New(slog.DiscardHandler))
			// The first round writes the 10 reminders; the next ones are the steady state of an
			// hourly sweep (all written already).
			for b.Loop() {
				before := len(proxy.Calls())
				res, err := sw.Sweep(context.Background(), fmt.Sprintf("bench-%d", b.N))
				if err != nil {
					b.Fatal(err)
				}
				calls := proxy.Calls()[before:]
				b.Logf("sweep: index items %d (%d queries, %.1f RCU), markers read %d, written %d, already %d; calls %s",
					res.IndexItemsRead, res.IndexQueries, res.IndexReadUnits, res.MarkersRead, res.Expiring+res.Expired, res.AlreadyWritten, count(calls))
				b.ReportMetric(float64(res.IndexItemsRead), "index-items")
				b.ReportMetric(res.IndexReadUnits, "index-RCU")
				b.ReportMetric(float64(len(calls)), "dynamodb-calls")
			}
		})
	}
}

// count summarises calls as "Query×38 BatchGetItem×1 ...".
func count(calls []string) string {
	n := map[string]int{}
	var order []string
	for _, c := range calls {
		if n[c] == 0 {
			order = append(order, c)
		}
		n[c]++
	}
	var parts []string
	for _, c := range order {
		parts = append(parts, fmt.Sprintf("%s×%d", c, n[c]))
	}
	return strings.Join(parts, " ")
}
