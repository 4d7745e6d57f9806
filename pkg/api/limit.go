package api

import (
	"net/http"

	"aitokens/pkg/token"
)

// LimitConcurrency serves at most n requests at once; one more is answered at once with a JSON
// 503 and Retry-After rather than queued, so a flood cannot pile up goroutines and connections
// behind a slow dependency.
func LimitConcurrency(next http.Handler, n int) http.Handler {
	slots := make(chan struct{}, n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			next.ServeHTTP(w, r)
		default:
			writeError(w, &token.Error{Kind: token.Unavailable, Message: "The server is busy; try again later."})
		}
	})
}
