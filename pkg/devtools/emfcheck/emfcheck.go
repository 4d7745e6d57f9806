// Package emfcheck checks a log line against the CloudWatch Embedded Metric Format
// specification: a JSON schema written from it (emf.schema.json) and, in code, what a schema
// cannot say. For tests; no function links it.
package emfcheck

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"unicode"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed emf.schema.json
var schemaJSON []byte

var schema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("emf.schema.json", doc); err != nil {
		return nil, err
	}
	return c.Compile("emf.schema.json")
})

// Is reports whether line is meant as an EMF document: a JSON object with an _aws member.
func Is(line []byte) bool {
	var probe struct {
		AWS json.RawMessage `json:"_aws"`
	}
	return json.Unmarshal(line, &probe) == nil && probe.AWS != nil
}

// Check returns why line is not a valid EMF document, or nil.
func Check(line []byte) error {
	sch, err := schema()
	if err != nil {
		return fmt.Errorf("emfcheck: the schema: %w", err)
	}
	if !json.Valid(line) {
		return fmt.Errorf("not JSON: %s", line)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
	if err != nil {
		return err
	}
	if err := sch.Validate(inst); err != nil {
		return fmt.Errorf("%s: %w", line, err)
	}
	// The target members: every dimension a string, every metric a number (or up to 100).
	var doc map[string]any
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	if err := d.Decode(&doc); err != nil {
		return err
	}
	aws := doc["_aws"].(map[string]any)
	metricNames := map[string]bool{}
	for _, dir := range aws["CloudWatchMetrics"].([]any) {
		dir := dir.(map[string]any)
		for _, set := range dir["Dimensions"].([]any) {
			for _, name := range set.([]any) {
				v, ok := doc[name.(string)].(string)
				if !ok || v == "" || len(v) > 1024 || strings.TrimSpace(v) == "" || strings.HasPrefix(v, ":") || !ascii(v) {
					return fmt.Errorf("dimension %q: %v is not a non-blank ASCII string of at most 1024 characters: %s", name, doc[name.(string)], line)
				}
				if metricNames[name.(string)] {
					return fmt.Errorf("%q is both a dimension and a metric: %s", name, line)
				}
			}
		}
		for _, m := range dir["Metrics"].([]any) {
			name := m.(map[string]any)["Name"].(string)
			metricNames[name] = true
			switch v := doc[name].(type) {
			case json.Number:
			case []any:
				if len(v) > 100 {
					return fmt.Errorf("metric %q holds %d values, at most 100: %s", name, len(v), line)
				}
				for _, x := range v {
					if _, ok := x.(json.Number); !ok {
						return fmt.Errorf("metric %q holds %v, not a number: %s", name, x, line)
					}
				}
			default:
				return fmt.Errorf("metric %q: %v is not a number: %s", name, doc[name], line)
			}
		}
	}
	return nil
}

func ascii(s string) bool {
	for _, r := range s {
		if r > unicode.MaxASCII || unicode.IsControl(r) {
			return false
		}
	}
	return true
}
