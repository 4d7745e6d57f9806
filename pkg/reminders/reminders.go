// Package reminders is the expiry sweeper (the hourly sweep-expiring function): it writes an
// `expiring` audit event when a token comes within a lead time of its expiresAt, and an
// `expired` one when expiresAt has passed, each once per token and expiry value. The events
// reach EventBridge like every other audit event (pkg/eventbus).
//
// Which reminder is due follows from the time alone: with leads L1 > L2 > ... > Ln, the
// lead-Li reminder is due from expiresAt-Li until expiresAt-Li+1 (the last one until
// expiresAt), and the expired one from expiresAt until expiresAt+lookback. A sweep writes the
// one due now, if it was not written yet, so a token gets one reminder per lead, in order; one
// whose window passed while the sweeper was not running (or that was created or given its
// expiry inside a later window) is skipped rather than sent late and out of date. A new
// expiresAt is another expiry value: its reminders are due again (re-armed). A deleted token
// has none: the write requires the token, with that expiresAt, in the same transaction.
//
// The cost grows with the tokens that expire in the window, never with all tokens: the sweep
// reads the sparse expiry index (only tokens with expiresAt, one partition per UTC day) for the
// days from now-lookback to now+the longest lead, with the exact bounds on its sort key; then,
// for those tokens, their reminders' markers (a batch read); and only for a reminder not yet
// written, the token and one transaction.
package reminders

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"aitokens/pkg/config"
	"aitokens/pkg/store"
	"aitokens/pkg/token"
)

// Actor is the actor of the reminder events.
const Actor = "sweep-expiring"

// Sweeper writes the reminders that are due.
type Sweeper struct {
	store    *store.Store
	leads    []time.Duration // longest first
	lookback time.Duration
	now      func() time.Time
	log      *slog.Logger
}

// New is a sweeper over st with the configured leads and lookback.
func New(st *store.Store, cfg config.Events, log *slog.Logger) *Sweeper {
	leads := slices.Clone(cfg.ReminderLeads)
	slices.SortFunc(leads, func(a, b time.Duration) int { return cmp.Compare(b, a) })
	return &Sweeper{store: st, leads: leads, lookback: cfg.ReminderLookback, now: time.Now, log: log}
}

// WithClock is the sweeper taking "now" from now (tests step it). The store's clock stamps the
// events; give it the same clock.
func (s *Sweeper) WithClock(now func() time.Time) *Sweeper {
	c := *s
	c.now = now
	return &c
}

// FormatLead is how a lead is written in an event: whole hours as "168h", else Go's duration.
func FormatLead(d time.Duration) string {
	if d%time.Hour == 0 {
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	}
	return d.String()
}

// Due is the reminder of a token due at now: the lead ("" for expired), and whether one is.
func (s *Sweeper) Due(expiresAt, now time.Time) (lead string, due bool) {
	left := expiresAt.Sub(now)
	switch {
	case left <= 0:
		return "", now.Sub(expiresAt) <= s.lookback
	case len(s.leads) == 0 || left > s.leads[0]:
		return "", false
	}
	// The shortest lead that covers what is left: the window now lies in.
	for i := len(s.leads) - 1; i >= 0; i-- {
		if left <= s.leads[i] {
			return FormatLead(s.leads[i]), true
		}
	}
	return "", false
}

// Result is what one sweep did, and what it read.
type Result struct {
	From            string  `json:"from"` // the window of expiry times read
	To              string  `json:"to"`
	Days            int     `json:"days"`            // index partitions (UTC days) queried
	IndexItemsRead  int     `json:"indexItemsRead"`  // tokens read from the expiry index: those expiring in the window
	IndexQueries    int     `json:"indexQueries"`    // Query calls (pages) on the index
	IndexReadUnits  float64 `json:"indexReadUnits"`  // read capacity units DynamoDB reported for them
	MarkersRead     int     `json:"markersRead"`     // reminders found written already
	Due             int     `json:"due"`             // tokens with a reminder due now
	Expiring        int     `json:"expiring"`        // expiring events written
	Expired         int     `json:"expired"`         // expired events written
	AlreadyWritten  int     `json:"alreadyWritten"`  // due, but written by an earlier sweep
	Gone            int     `json:"gone"`            // due, not written: the token was deleted or its expiry changed meanwhile (or a concurrent sweep wrote it)
	Failed          int     `json:"failed"`          // could not be written now (the next sweep tries again)
	DurationSeconds float64 `json:"durationSeconds"` // of the sweep
}

// Sweep writes the reminders due now, recorded under requestID. It goes on past a failed write
// (logged) and returns the errors with the result, so that a failing sweep is retried (the next
// one, or Lambda's retry) without repeating what it wrote. Its caller logs the result.
func (s *Sweeper) Sweep(ctx context.Context, requestID string) (Result, error) {
	start := time.Now()
	now := s.now().UTC()
	maxLead := time.Duration(0)
	if len(s.leads) > 0 {
		maxLead = s.leads[0]
	}
	from, to := now.Add(-s.lookback), now.Add(maxLead)
	res := Result{From: token.FormatTime(from), To: token.FormatTime(to),
		Days: int(to.Truncate(24*time.Hour).Sub(from.Truncate(24*time.Hour))/(24*time.Hour)) + 1}
	found, read, err := s.store.ExpiringBetween(ctx, from, to)
	res.IndexItemsRead, res.IndexQueries, res.IndexReadUnits = read.Items, read.Queries, read.Units
	if err != nil {
		return res, fmt.Errorf("read the expiry index: %w", err)
	}
	var due []store.Reminder
	for _, t := range found {
		if lead, ok := s.Due(t.ExpiresAt, now); ok {
			due = append(due, store.Reminder{Tenant: t.Tenant, TokenID: t.ID, UID: t.UID, ExpiresAt: t.ExpiresAt, Lead: lead})
		}
	}
	res.Due = len(due)
	done, markers, err := s.store.Reminded(ctx, due)
	res.MarkersRead = markers
	if err != nil {
		return res, fmt.Errorf("read the reminders written: %w", err)
	}
	var errs []error
	for i, r := range due {
		if done[i] {
			res.AlreadyWritten++
			continue
		}
		written, err := s.store.RecordReminder(ctx, r, token.Event{Actor: Actor, RequestID: requestID})
		switch {
		case err != nil:
			res.Failed++
			errs = append(errs, err)
			s.log.ErrorContext(ctx, "reminder not written", "tenant", r.Tenant, "tokenId", r.TokenID, "lead", r.Lead, "error", err.Error())
		case !written:
			res.Gone++
		case r.Lead == "":
			res.Expired++
		default:
			res.Expiring++
		}
	}
	res.DurationSeconds = time.Since(start).Seconds()
	if len(errs) > 0 {
		return res, fmt.Errorf("%d reminders not written: %w", res.Failed, errors.Join(errs...))
	}
	return res, nil
}
