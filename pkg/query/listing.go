// Package query turns the list and search parameters (q, sort, fields, pageSize, pageNumber)
// into checked values and applies them to token documents.
package query

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"aitokens/pkg/token"
)

const (
	DefaultPageSize = 60
	MaxPageSize     = 1000
	// MaxItemsRead bounds the events one audit-trail page reads past (a list of tokens has no
	// such bound: README "What a list costs").
	MaxItemsRead = 10_000
	// maxPageNumber keeps (number-1)*size far from overflowing.
	maxPageNumber = 1_000_000
)

// Page is a checked page request; Number counts from 1.
type Page struct{ Number, Size int }

// ParsePage checks pageNumber and pageSize ("" takes the default).
func ParsePage(number, size string) (Page, error) {
	p := Page{Number: 1, Size: DefaultPageSize}
	if size != "" {
		n, err := strconv.Atoi(size)
		if err != nil || n < 1 || n > MaxPageSize {
			return p, token.InvalidField("pageSize", fmt.Sprintf("pageSize must be a whole number from 1 to %d", MaxPageSize))
		}
		p.Size = n
	}
	if number != "" {
		n, err := strconv.Atoi(number)
		if err != nil || n < 1 || n > maxPageNumber {
			return p, token.InvalidField("pageNumber", "pageNumber must be a whole number from 1")
		}
		p.Number = n
	}
	return p, nil
}

// PageOf returns page p of all (empty, not nil, past the end).
func PageOf[T any](p Page, all []T) []T {
	start := (p.Number - 1) * p.Size
	if start >= len(all) {
		return []T{}
	}
	return all[start:min(start+p.Size, len(all))]
}

// SortKey is one "field[:asc|desc]" of the sort parameter.
type SortKey struct {
	Field string
	Desc  bool
}

// ParseSort reads "name:desc,id"; id ascending is appended as the last tie-breaker, so that
// paging is stable.
func ParseSort(s string) ([]SortKey, error) {
	var keys []SortKey
	if strings.TrimSpace(s) != "" {
		for _, part := range strings.Split(s, ",") {
			field, dir, _ := strings.Cut(strings.TrimSpace(part), ":")
			if _, ok := token.Fields[field]; !ok {
				return nil, token.InvalidField("sort", "cannot sort by unknown field "+strconv.Quote(field))
			}
			k := SortKey{Field: field}
			switch strings.ToLower(dir) {
			case "", "asc":
			case "desc":
				k.Desc = true
			default:
				return nil, token.InvalidField("sort", "sort direction must be asc or desc, not "+strconv.Quote(dir))
			}
			keys = append(keys, k)
		}
	}
	return append(keys, SortKey{Field: "id"}), nil
}

// Sort orders items by keys, reading each item's document through doc; an absent value sorts
// after every present one. Values compare as q compares them (compare): numbers as numbers,
// dates as instants, strings exactly, false before true.
func Sort[T any](items []T, doc func(T) map[string]any, keys []SortKey) {
	slices.SortStableFunc(items, func(x, y T) int {
		a, b := doc(x), doc(y)
		for _, k := range keys {
			f := fieldRef{name: k.Field, typ: token.Fields[k.Field]}
			va, oka := docValue(a, f)
			vb, okb := docValue(b, f)
			var c int
			switch {
			case !oka && !okb:
				continue
			case !oka:
				return 1
			case !okb:
				return -1
			default:
				c = compare(f.typ, va, vb)
			}
			if k.Desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
}

// Lookup follows a dotted path into a document.
func Lookup(doc map[string]any, path string) (any, bool) {
	var cur any = doc
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// ParseFields reads "id,name,metadata.version"; "" means the whole document.
func ParseFields(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var fields []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		// metadata and egress are objects: they can be shown whole, not queried or sorted on.
		if _, ok := token.Fields[f]; !ok && f != "metadata" && f != "egress" {
			return nil, token.InvalidField("fields", "unknown field "+strconv.Quote(f))
		}
		fields = append(fields, f)
	}
	return fields, nil
}

// Project keeps only the named fields of doc (all of it when fields is empty).
func Project(doc map[string]any, fields []string) map[string]any {
	if len(fields) == 0 {
		return doc
	}
	out := map[string]any{}
	for _, f := range fields {
		v, ok := Lookup(doc, f)
		if !ok {
			continue
		}
		parts := strings.Split(f, ".")
		m := out
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = v
	}
	return out
}
