package testenv

import (
	"cmp"
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/dynamodb/attributevalue"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"aitokens/pkg/token"
)

// The invariants of the table, written down once and checked after every test that uses
// DynamoDB Local (NewTable registers the check). They read the raw items, independently of
// pkg/store's own code, so a second write path that breaks one is caught by whichever test
// happens to run it:
//
//  1. every usage item has its token, of the same identity (uid);
//  2. a token's usageCount equals its usage items, and its consumers are exactly their keys;
//  3. a token's audit trail, in key order, is a sequence of lives: a create at version 1, one
//     update, patch or replaced per later version (in that order: versions commit in time order), usage
//     events at the version the token then had (every write that records an event takes part in
//     one order, so none commits between a read and a commit of another), ending in a
//     delete or forced delete at the last version; every usage change of a life has its
//     event (registers less unregisters = usageCount); the live token is at the trail's
//     last version, with modifiedAt the time of its last version's event and never before
//     createdAt; a token id with events but no token ends its trail with a delete.
//
// Refused resolves (action resolve) change nothing and are left out of 3. Reminders (expiring,
// expired) change nothing either and are skipped by the walk of 3, but:
//
//  4. a reminder lies within a life of its token (after a create, before the delete that ends
//     it): it is written only in one transaction with the token's existence, and a delete that
//     commits after it is stamped after it (no event sorts after its token's delete);
//  5. every reminder marker (sk "reminder#...") has its event, of the same action, lead and
//     expiresAt: they are written in one transaction.
//
// And the promises of replace (docs/security.md, Promises):
//
//  6. a replaced token (replacedBy) has its retirement (retiresAt) and an expiresAt equal to it
//     (a retirement only moves earlier, with the expiry); no token that was never replaced has one;
//  7. a successor is at least as restricted as its predecessor: when both exist and the
//     predecessor is restricted, the successor is too, unless a change of either one's
//     restriction (an update or patch with "restricted" in its changes) came after the replace;
//  8. a token's events sort in commit order: its eventAt (the stamp of its last event, kept by
//     every write that records one) is the time of the last event of its trail, reminders
//     included, and no two requests' events on a token share a stamp.

//
// And the promises of scale (docs/security.md, Promises):
//
//  9. every token has the list indexes' sort keys, each what its id, name and times give
//     (byName: the name cut to 900 bytes at a character, "\x01", the id; byCreated and byModified:
//     the time, "#", the id; byExpires: expiresAt, "#", the id, or "~" and the id without one);
// 10. the tenant's counter items (sk "count#NN") count its tokens: each the number of tokens
//     whose id falls to it (FNV-1a of the id, modulo 16).
//
// And the egress promises (docs/security.md, Egress):
//
// 11. a token's egress policy, when it has one, is valid, and its egressDigest (the digest the
//     create bound into the value's encryption context) is the policy's digest; a token without
//     a policy has no digest (a write that changed a policy would have to re-seal the value);
// 12. a replacement never widens where the value may go: when both exist and the predecessor
//     has a policy, the successor has one whose every host the predecessor's allows.

type rawToken struct {
	ID         string   `dynamodbav:"id"`
	Name       string   `dynamodbav:"name"`
	ByName     string   `dynamodbav:"byName"`
	ByCreated  string   `dynamodbav:"byCreated"`
	ByModified string   `dynamodbav:"byModified"`
	ByExpires  string   `dynamodbav:"byExpires"`
	UID        string   `dynamodbav:"uid"`
	Version    int      `dynamodbav:"version"`
	UsageCount int      `dynamodbav:"usageCount"`
	Consumers  []string `dynamodbav:"consumers,stringset"`
	CreatedAt  string   `dynamodbav:"createdAt"`
	ModifiedAt string   `dynamodbav:"modifiedAt"`
	ExpiresAt  string   `dynamodbav:"expiresAt"`
	RetiresAt  string   `dynamodbav:"retiresAt"`
	Restricted bool     `dynamodbav:"restricted"`
	Replaces   string   `dynamodbav:"replaces"`
	ReplacedBy string   `dynamodbav:"replacedBy"`
	EventAt    string   `dynamodbav:"eventAt"`
	Egress     *struct {
		AllowedHosts []string `dynamodbav:"allowedHosts"`
		In           string   `dynamodbav:"in"`
		Name         string   `dynamodbav:"name"`
		Template     string   `dynamodbav:"template"`
	} `dynamodbav:"egress"`
	EgressDigest string `dynamodbav:"egressDigest"`
}

// egress is the token's policy in the domain's type (nil: none).
func (t rawToken) egress() *token.Egress {
	if t.Egress == nil {
		return nil
	}
	return &token.Egress{AllowedHosts: t.Egress.AllowedHosts,
		Inject: token.Inject{In: t.Egress.In, Name: t.Egress.Name, Template: t.Egress.Template}}
}

type rawUsage struct {
	TokenID  string `dynamodbav:"tokenId"`
	TokenUID string `dynamodbav:"tokenUid"`
	Kind     string `dynamodbav:"kind"`
	RefID    string `dynamodbav:"refId"`
}

type rawEvent struct {
	SK        string   `dynamodbav:"sk"`
	At        string   `dynamodbav:"at"`
	Action    string   `dynamodbav:"action"`
	TokenID   string   `dynamodbav:"tokenId"`
	Version   int      `dynamodbav:"version"`
	Usage     string   `dynamodbav:"usage"`
	Lead      string   `dynamodbav:"lead"`
	Expires   string   `dynamodbav:"expiresAt"`
	Changes   []string `dynamodbav:"changes"`
	RequestID string   `dynamodbav:"requestId"`
}

type rawMarker struct {
	SK      string `dynamodbav:"sk"`
	TokenID string `dynamodbav:"tokenId"`
	Action  string `dynamodbav:"action"`
	Lead    string `dynamodbav:"lead"`
	Expires string `dynamodbav:"expiresAt"`
	EventSK string `dynamodbav:"eventSk"`
}

// partition is one tenant's items.
type partition struct {
	tokens map[string]rawToken
	usages map[string][]rawUsage // by token id
	events map[string][]rawEvent // by token id, in key order
	// reminder markers, and every event by its sort key (resolves included), for invariant 5
	markers  []rawMarker
	eventsBy map[string]rawEvent
	counts   map[string]int // counter item sk -> its count, for invariant 7
}

// Violations returns every broken invariant of table, one line each.
func Violations(ctx context.Context, db *dynamodb.Client, table string) ([]string, error) {
	parts := map[string]*partition{}
	pages := dynamodb.NewScanPaginator(db, &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, raw := range page.Items {
			var k struct {
				PK string `dynamodbav:"pk"`
				SK string `dynamodbav:"sk"`
			}
			if err := attributevalue.UnmarshalMap(raw, &k); err != nil {
				return nil, err
			}
			p := parts[k.PK]
			if p == nil {
				p = &partition{tokens: map[string]rawToken{}, usages: map[string][]rawUsage{}, events: map[string][]rawEvent{},
					eventsBy: map[string]rawEvent{}, counts: map[string]int{}}
				parts[k.PK] = p
			}
			switch kind, _, _ := strings.Cut(k.SK, "#"); kind {
			case "token":
				var t rawToken
				err = attributevalue.UnmarshalMap(raw, &t)
				p.tokens[t.ID] = t
			case "usage":
				var u rawUsage
				err = attributevalue.UnmarshalMap(raw, &u)
				p.usages[u.TokenID] = append(p.usages[u.TokenID], u)
			case "event":
				var e rawEvent
				err = attributevalue.UnmarshalMap(raw, &e)
				if e.Action != token.ActionResolve && e.Action != token.ActionRelay { // refusals, not changes
					p.events[e.TokenID] = append(p.events[e.TokenID], e)
				}
				p.eventsBy[e.SK] = e
			case "count":
				var c struct {
					N int `dynamodbav:"tokens"`
				}
				err = attributevalue.UnmarshalMap(raw, &c)
				p.counts[k.SK] = c.N
			case "reminder":
				var m rawMarker
				err = attributevalue.UnmarshalMap(raw, &m)
				p.markers = append(p.markers, m)
			default:
				err = fmt.Errorf("an item of no known kind: %q", k.SK)
			}
			if err != nil {
				return nil, err
			}
		}
	}
	var out []string
	for tenant, p := range parts {
		for _, v := range p.violations() {
			out = append(out, tenant+": "+v)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (p *partition) violations() []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	for id, usages := range p.usages {
		t, ok := p.tokens[id]
		for _, u := range usages {
			switch {
			case !ok:
				bad("usage %s/%s of token %s, which does not exist", u.Kind, u.RefID, id)
			case u.TokenUID != t.UID:
				bad("usage %s/%s of token %s belongs to another life of it (uid %q, token %q)", u.Kind, u.RefID, id, u.TokenUID, t.UID)
			}
		}
	}
	for id, t := range p.tokens {
		var keys []string
		for _, u := range p.usages[id] {
			keys = append(keys, u.Kind+"#"+u.RefID)
		}
		slices.Sort(keys)
		consumers := slices.Sorted(slices.Values(t.Consumers))
		if t.UsageCount != len(keys) {
			bad("token %s: usageCount %d, but %d usage items", id, t.UsageCount, len(keys))
		}
		if !slices.Equal(consumers, keys) {
			bad("token %s: consumers %v, but usages %v", id, consumers, keys)
		}
		if t.ModifiedAt < t.CreatedAt {
			bad("token %s: modifiedAt %s before createdAt %s", id, t.ModifiedAt, t.CreatedAt)
		}
		switch {
		case t.ReplacedBy != "" && (t.RetiresAt == "" || t.ExpiresAt != t.RetiresAt):
			bad("token %s: replaced by %s, retiresAt %q, expiresAt %q: a replaced token must expire at its retirement", id, t.ReplacedBy, t.RetiresAt, t.ExpiresAt)
		case t.ReplacedBy == "" && t.RetiresAt != "":
			bad("token %s: retiresAt %s, but never replaced", id, t.RetiresAt)
		}
		if old, ok := p.tokens[t.Replaces]; ok && t.Replaces != "" && old.ReplacedBy == id && old.Restricted && !t.Restricted &&
			!restrictionChanged(p.events[id], "create") && !restrictionChanged(p.events[t.Replaces], "replaced") {
			bad("token %s: open, but its predecessor %s is restricted and neither one's restriction changed since the replace", id, t.Replaces)
		}
	}
	shards := map[string]int{}
	for id, t := range p.tokens {
		h := fnv.New32a()
		h.Write([]byte(id))
		shards[fmt.Sprintf("count#%02d", h.Sum32()%16)]++
		name := t.Name
		if len(name) > 900 {
			cut := 900
			for !utf8.RuneStart(name[cut]) {
				cut--
			}
			name = name[:cut]
		}
		expires := "~" + id
		if t.ExpiresAt != "" {
			expires = t.ExpiresAt + "#" + id
		}
		want := rawToken{ByName: name + "\x01" + id, ByCreated: t.CreatedAt + "#" + id, ByModified: t.ModifiedAt + "#" + id, ByExpires: expires}
		if t.ByName != want.ByName || t.ByCreated != want.ByCreated || t.ByModified != want.ByModified || t.ByExpires != want.ByExpires {
			bad("token %s: list keys %q %q %q %q, its fields give %q %q %q %q", id, t.ByName, t.ByCreated, t.ByModified, t.ByExpires,
				want.ByName, want.ByCreated, want.ByModified, want.ByExpires)
		}
	}
	for sk := range p.counts {
		shards[sk] += 0
	}
	for sk, n := range shards {
		if p.counts[sk] != n {
			bad("counter %s says %d tokens, %d tokens fall to it", sk, p.counts[sk], n)
		}
	}
	for id, t := range p.tokens {
		e := t.egress()
		switch {
		case e == nil && t.EgressDigest != "":
			bad("token %s: egressDigest %s, but no egress policy", id, t.EgressDigest)
		case e == nil:
		case e.Validate() != nil:
			bad("token %s: its egress policy is invalid: %s", id, token.As(e.Validate()).Details[0].Message)
		case e.Digest() != t.EgressDigest:
			bad("token %s: egress policy of digest %s, but its value was bound to %q", id, e.Digest(), t.EgressDigest)
		}
		old, ok := p.tokens[t.Replaces]
		if !ok || t.Replaces == "" || old.ReplacedBy != id || old.egress() == nil {
			continue
		}
		if e == nil {
			bad("token %s: no egress policy, but its predecessor %s has one", id, t.Replaces)
		} else if err := e.CheckNarrows(*old.egress()); err != nil {
			bad("token %s: its egress policy widens its predecessor %s's: %s", id, t.Replaces, token.As(err).Details[0].Message)
		}
	}
	for _, m := range p.markers {
		if e, ok := p.eventsBy[m.EventSK]; !ok || e.TokenID != m.TokenID || e.Action != m.Action || e.Lead != m.Lead || e.Expires != m.Expires {
			bad("reminder marker %s has no event %s of the same token, action, lead and expiry", m.SK, m.EventSK)
		}
	}
	ids := map[string]bool{}
	for id := range p.tokens {
		ids[id] = true
	}
	for id := range p.events {
		ids[id] = true
	}
	for id := range ids {
		for _, v := range trailViolations(p.tokens, id, p.events[id]) {
			bad("token %s: %s", id, v)
		}
	}
	return out
}

// restrictionChanged reports whether an update or patch of the restriction follows the last
// event of action since in a token's events.
func restrictionChanged(events []rawEvent, since string) bool {
	sorted := slices.SortedFunc(slices.Values(events), func(a, b rawEvent) int { return cmp.Compare(a.SK, b.SK) })
	changed := false
	for _, e := range sorted {
		switch {
		case e.Action == since:
			changed = false
		case (e.Action == "update" || e.Action == "patch") && slices.Contains(e.Changes, "restricted"):
			changed = true
		}
	}
	return changed
}

// trailViolations walks one token id's trail (invariant 3).
func trailViolations(tokens map[string]rawToken, id string, events []rawEvent) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	slices.SortFunc(events, func(a, b rawEvent) int { return cmp.Compare(a.SK, b.SK) })
	alive, version, usages, lastChange, lastEvent := false, 0, 0, "", rawEvent{}
	for _, e := range events {
		if lastEvent.At == e.At && lastEvent.RequestID != e.RequestID && e.Action != "create" { // a new life has a clock of its own
			bad("events of two requests (%s, %s) share the stamp %s", lastEvent.RequestID, e.RequestID, e.At)
		}
		lastEvent = e
		switch e.Action {
		case "create":
			if alive {
				bad("created again at %s while alive at version %d", e.At, version)
			}
			if e.Version != 1 {
				bad("created at version %d", e.Version)
			}
			alive, version, usages, lastChange = true, 1, 0, e.At
			continue
		case "update", "patch", "replaced":
			if alive && e.Version != version+1 {
				bad("%s at %s records version %d after version %d (events out of commit order, or a change without its event)", e.Action, e.At, e.Version, version)
			}
			version, lastChange = e.Version, e.At
		case "usage_register", "usage_unregister":
			if alive && e.Version != version {
				bad("%s %s at %s records version %d, the token was at %d", e.Action, e.Usage, e.At, e.Version, version)
			}
			if e.Action == "usage_register" {
				usages++
			} else {
				usages--
			}
		case "expiring", "expired":
			if !alive {
				bad("%s reminder at %s on no living token", e.Action, e.At)
			}
			continue
		case "delete", "force_delete":
			if alive && e.Version != version {
				bad("%s at %s records version %d, the token was at %d", e.Action, e.At, e.Version, version)
			}
			if e.Action == "delete" && usages != 0 {
				bad("deleted at %s with %d usages", e.At, usages)
			}
			alive = false
			continue
		default:
			bad("event of unknown action %q", e.Action)
			continue
		}
		if !alive {
			bad("%s at %s on no living token (its create has no event)", e.Action, e.At)
		}
	}
	t, exists := tokens[id]
	switch {
	case exists && !alive:
		bad("exists at version %d, but its trail has no create after its last delete", t.Version)
	case !exists && alive:
		bad("its trail says it lives at version %d, but it is gone without a delete event", version)
	case exists:
		if t.Version != version {
			bad("at version %d, but its trail ends at version %d", t.Version, version)
		}
		if t.UsageCount != usages {
			bad("usageCount %d, but its trail registers %d usages net", t.UsageCount, usages)
		}
		if t.ModifiedAt != lastChange {
			bad("modifiedAt %s, but its last change was recorded at %s", t.ModifiedAt, lastChange)
		}
		if t.EventAt != "" && t.EventAt != lastEvent.At {
			bad("eventAt %s, but its last event (%s) was stamped %s (events out of commit order, or an event that did not keep eventAt)", t.EventAt, lastEvent.Action, lastEvent.At)
		}
	}
	return out
}

// CheckInvariants fails t with every invariant that table breaks.
func CheckInvariants(t testing.TB, table string) {
	t.Helper()
	violations, err := Violations(context.Background(), client, table)
	if err != nil {
		t.Errorf("invariants of %s: cannot read the table: %v", table, err)
		return
	}
	for _, v := range violations {
		t.Errorf("invariant broken in table %s: %s", table, v)
	}
}
