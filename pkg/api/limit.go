package api

import (
	"aitokens/pkg/token"
)

// limiter serves at most cap(l) requests at once; one more is answered at once with a JSON 503
// and Retry-After rather than queued, so a flood cannot pile up goroutines and connections
// behind a slow dependency. It sits inside wrap, after routing, so that a refused request is
// answered and logged (route, tenant, status) exactly as every other request. A nil limiter
// admits every request (a Lambda serves one request at a time anyway).
type limiter chan struct{}

func newLimiter(n int) limiter {
	if n <= 0 {
		return nil
	}
	return make(limiter, n)
}

// acquire takes a slot if one is free now; release gives it back.
func (l limiter) acquire() (release func(), ok bool) {
	if l == nil {
		return func() {}, true
	}
	select {
	case l <- struct{}{}:
		return func() { <-l }, true
	default:
		return nil, false
	}
}

func errBusy() error {
	return &token.Error{Kind: token.Unavailable, Message: "The server is busy; try again later."}
}
