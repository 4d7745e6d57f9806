package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	mrand "math/rand/v2"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"aitokens/pkg/token"
)

// Every write is made of rounds: read what the write depends on (consistently), then one
// TransactWriteItems conditioned on exactly what was read, with the audit event stamped at that
// moment. A round that loses to a concurrent change (a failed condition, or DynamoDB cancelling
// for a conflicting transaction) reads again. WriteRounds bounds the rounds of one request; the
// SDK's retryer (awsretry) retries each call inside a round, and the request's deadline bounds both.
const WriteRounds = 8

// errMoved is a round that lost to a concurrent change: the write reads again and retries.
var errMoved = &token.Error{Kind: token.Conflict, Reason: token.ConcurrentChange}

// rounds runs round until it is not errMoved, WriteRounds times at most, with a short growing
// pause between rounds so that two writers that conflict do not meet again at once.
func (s *Store) rounds(ctx context.Context, round func() error) error {
	for attempt := range WriteRounds {
		if err := round(); err != errMoved {
			return err
		}
		if err := s.pause(ctx, attempt); err != nil {
			return err
		}
	}
	return &token.Error{Kind: token.Conflict, Reason: token.ConcurrentChange}
}

func (s *Store) pause(ctx context.Context, attempt int) error {
	// Doubling, to 160 ms, and jittered (half to one and a half of it): writers that met would
	// otherwise pause alike and meet again, round after round (a crowd of them on one token
	// then ran out of rounds).
	base := min(5*time.Millisecond<<attempt, 160*time.Millisecond)
	timer := time.NewTimer(base/2 + mrand.N(base))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return classify(ctx.Err())
	case <-timer.C:
		return nil
	}
}

// transact runs items once. It returns nil, nil when they committed; on a transaction cancelled
// by failed conditions, which items' conditions failed; errMoved when DynamoDB cancelled it for a
// concurrent transaction on the same items (TransactionConflict: the round is read and tried again).
func (s *Store) transact(ctx context.Context, items []types.TransactWriteItem) (failed []bool, err error) {
	if err := checkTransaction(items); err != nil {
		return nil, err
	}
	_, err = s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: items})
	var canceled *types.TransactionCanceledException
	if !errors.As(err, &canceled) {
		return nil, classify(err)
	}
	failed = make([]bool, len(items))
	for i, r := range canceled.CancellationReasons {
		switch aws.ToString(r.Code) {
		case "ConditionalCheckFailed":
			failed[i] = true
		case "TransactionConflict":
			return nil, errMoved
		}
	}
	return failed, nil
}

// state is what a write reads first: the token's identity, version and usage count, which its
// transaction then requires unchanged, and the facts its event and timestamps need.
type state struct {
	found        bool
	uid          string // "" for a token created before tokens had one
	version      int
	usageCount   int
	modifiedAt   time.Time
	requestID    string     // the request that wrote the token last
	expiresAt    *time.Time // nil: never
	replacedBy   string
	retiresAt    *time.Time // a replaced token's retirement (nil: not replaced, or replaced before retiresAt was kept)
	restricted   bool
	eventAt      string        // the stamp of its last event, as stored ("" for a token written before eventAt was kept)
	listed       bool          // has its list keys and is counted (listing.go)
	egress       *token.Egress // its egress policy (nil: none), which a replacement may only narrow
	egressDigest string
}

var stateProjection = projectionExpr{expr: aws.String("#v, #c, #u, #m, #r, #e, #rb, #ra, #rs, #ea, #ln, #eg, #egd"), names: map[string]string{
	"#v": attrVersion, "#c": "usageCount", "#u": attrUID, "#m": "modifiedAt", "#r": attrRequestID,
	"#e": "expiresAt", "#rb": "replacedBy", "#ra": attrRetiresAt, "#rs": "restricted", "#ea": attrEventAt, "#ln": attrByName,
	"#eg": "egress", "#egd": attrEgressDigest}}

const (
	attrRetiresAt    = "retiresAt"
	attrEventAt      = "eventAt"
	attrEgressDigest = "egressDigest"
)

func (s *Store) state(ctx context.Context, tenant, id string) (state, error) {
	it, err := s.getItem(ctx, tenant, id, stateProjection)
	if token.KindOf(err) == token.NotFound {
		return state{}, nil
	}
	if err != nil {
		return state{}, err
	}
	st := state{found: true, uid: it.UID, version: it.Version, usageCount: it.UsageCount, requestID: it.RequestID,
		replacedBy: it.ReplacedBy, restricted: it.Restricted, eventAt: it.EventAt, listed: it.ByName != "",
		egress: it.Egress.egress(), egressDigest: it.EgressDigest}
	if it.RetiresAt != "" {
		at, _ := time.Parse(time.RFC3339Nano, it.RetiresAt)
		st.retiresAt = &at
	}
	st.modifiedAt, _ = time.Parse(time.RFC3339Nano, it.ModifiedAt)
	if it.ExpiresAt != "" {
		at, _ := time.Parse(time.RFC3339Nano, it.ExpiresAt)
		st.expiresAt = &at
	}
	return st, nil
}

// sameToken is the condition (and its values) that the token is still the one st read: it
// exists, has the same identity (a token deleted and created again under the same id is another
// token, so a write aimed at the old one fails on the new one) and the same version.
func (st state) sameToken() (string, map[string]types.AttributeValue) {
	values := map[string]types.AttributeValue{":v": &types.AttributeValueMemberN{Value: strconv.Itoa(st.version)}}
	if st.uid == "" {
		return "attribute_exists(pk) AND attribute_not_exists(uid) AND version = :v", values
	}
	values[":uid"] = &types.AttributeValueMemberS{Value: st.uid}
	return "attribute_exists(pk) AND uid = :uid AND version = :v", values
}

// retirement is when the replaced token st read stops resolving: its retiresAt, or for a token
// replaced before retiresAt was kept, its expiresAt then (nil: not replaced).
func (st state) retirement() *time.Time {
	if st.retiresAt == nil && st.replacedBy != "" {
		return st.expiresAt
	}
	return st.retiresAt
}

// sameRetirement is the condition that the token's retiresAt is still the one st read (adding
// its value to values), so that a write never moves a retirement it did not see.
func (st state) sameRetirement(values map[string]types.AttributeValue) string {
	if st.retiresAt == nil {
		return "attribute_not_exists(retiresAt)"
	}
	values[":retires"] = &types.AttributeValueMemberS{Value: token.FormatTime(*st.retiresAt)}
	return "retiresAt = :retires"
}

// eventsBefore is the condition that every event recorded on the token so far (its eventAt) is
// stamped before at, the stamp of the event being written, adding it to values as :eventAt
// (which the write then sets as the token's eventAt).
//
// Every write that records an event on a token (create, update, patch, replace on both tokens,
// usage register and unregister, a forced delete's chunks, delete, reminders) takes part in one
// ordering: it stamps its event after the token's eventAt as read (stamp), requires in its
// transaction that no event stamped at or after its own committed meanwhile, and sets eventAt to
// its stamp. So each committed event is stamped after every event committed before it: a token's
// events sort in the order they committed, whatever the writers' clocks say, and nothing that
// committed before a delete is stamped after it. A write that read earlier but lost the race to
// one stamped later reads again and is stamped after it; writes that commit in the order of
// their stamps (concurrent usage registrations, mostly) never conflict on it.
func eventsBefore(at time.Time, values map[string]types.AttributeValue) string {
	values[":eventAt"] = &types.AttributeValueMemberS{Value: token.FormatTime(at)}
	return "(attribute_not_exists(eventAt) OR eventAt < :eventAt)" // fixed-width UTC: string order is time order
}

// stamp is the time of an event on the token st read, made now: after its last modification and
// its last event (by a millisecond, the precision of stored times, at least), so that
// modifiedAt only goes forward and its events sort in commit order (eventsBefore), even when the
// clocks of two writers disagree.
func (s *Store) stamp(st state) time.Time {
	now := s.now().UTC()
	floor := st.modifiedAt
	if at, err := time.Parse(time.RFC3339Nano, st.eventAt); err == nil && at.After(floor) {
		floor = at
	}
	if floor = floor.Add(time.Millisecond); now.Before(floor) {
		return floor
	}
	return now
}

// newUID is the identity of a token created now.
func newUID() string {
	b := make([]byte, 12)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
