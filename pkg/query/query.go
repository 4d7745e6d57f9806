package query

import "aitokens/pkg/token"

// Query is a parsed q parameter. The nil *Query matches everything.
type Query struct {
	root node
}

type node interface {
	match(doc map[string]any) bool
}

// Parse reads q; until the q language lands any non-empty q is refused.
func Parse(q string) (*Query, error) {
	if q == "" {
		return nil, nil
	}
	return nil, token.InvalidField("q", "q is not supported yet")
}

// Match reports whether doc satisfies the query.
func (q *Query) Match(doc map[string]any) bool {
	return q == nil || q.root.match(doc)
}

// IDs returns the ids a query is limited to, when it is limited by id equality or an IN list
// of ids, so that those keys can be read directly.
func (q *Query) IDs() ([]string, bool) {
	return nil, false
}
