package functions_test

import (
	"maps"
	"slices"
	"strconv"
	"testing"

	"aitokens/pkg/config"
)

// templateOnly are the Number parameters that feed the template alone (no setting of
// pkg/config reads them), so their bounds live in template.yaml only. ceiling is AWS's
// documented limit of what the parameter sets, where AWS has one; 0 where it has none.
var templateOnly = map[string]struct {
	ceiling float64
	source  string
}{
	// https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html: 10,000
	// requests per second per account and Region by default (2,500 in the newer Regions), with
	// a burst of 5,000 (AWS's announcement of 2017-06-06); a stage limit above never applies.
	"ThrottlingBurstLimit": {5000, "API Gateway's default account burst quota"},
	"ThrottlingRateLimit":  {10000, "API Gateway's default account throttle quota"},
	// CloudWatch Logs keeps a group at most 3653 days (its retention values end there).
	"LogRetentionDays":         {3653, "CloudWatch Logs' longest retention"},
	"RefusedResolvesThreshold": {0, "an alarm threshold: no AWS limit"},
}

// Every Number parameter is bounded on both sides, its default and allowed values within the
// bounds. One that feeds a setting of pkg/config has config's bounds (config.Ranges, checked by
// TestTemplateParametersCarryConfigBounds); any other is named in templateOnly, within AWS's
// limit where AWS has one. A new Number parameter belongs to one or the other.
func TestNumberParametersAreBounded(t *testing.T) {
	_, tpl, resources := loadTemplate(t)
	params, _ := dig(tpl, "Parameters").(map[string]any)
	// feedsConfig: the parameters that a bounded setting of pkg/config reads.
	feedsConfig := map[string]string{}
	settings := envSettings(tpl, resources)
	for _, r := range config.Ranges() {
		for _, v := range settings[r.Name] {
			if ref, ok := dig(v, "!Ref").(string); ok {
				feedsConfig[ref] = r.Name
			}
		}
	}
	number := func(name, key string) (float64, bool) {
		raw, ok := dig(params[name], key).(string)
		if !ok {
			return 0, false
		}
		n, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			t.Errorf("parameter %s: %s %q is not a number", name, key, raw)
		}
		return n, err == nil
	}
	numbers := 0
	for _, name := range slices.Sorted(maps.Keys(params)) {
		if dig(params[name], "Type") != "Number" {
			continue
		}
		numbers++
		lo, hasMin := number(name, "MinValue")
		hi, hasMax := number(name, "MaxValue")
		if !hasMin || !hasMax {
			t.Errorf("Number parameter %s lacks a bound: MinValue set %v, MaxValue set %v", name, hasMin, hasMax)
			continue
		}
		if lo > hi {
			t.Errorf("parameter %s: MinValue %v above MaxValue %v", name, lo, hi)
		}
		if def, ok := number(name, "Default"); ok && (def < lo || def > hi) {
			t.Errorf("parameter %s: Default %v outside [%v, %v]", name, def, lo, hi)
		}
		for _, v := range strs(dig(params[name], "AllowedValues")) {
			if n, err := strconv.ParseFloat(v, 64); err != nil || n < lo || n > hi {
				t.Errorf("parameter %s: allowed value %s outside [%v, %v]", name, v, lo, hi)
			}
		}
		only, listed := templateOnly[name]
		switch setting, fed := feedsConfig[name]; {
		case fed && listed:
			t.Errorf("parameter %s feeds %s: its bounds are pkg/config's, not templateOnly's", name, setting)
		case fed:
			// TestTemplateParametersCarryConfigBounds compares them with config.Ranges.
		case !listed:
			t.Errorf("Number parameter %s feeds no bounded setting of pkg/config and is not in templateOnly: say where its bounds come from", name)
		case only.ceiling > 0 && hi > only.ceiling:
			t.Errorf("parameter %s: MaxValue %v above %v, %s", name, hi, only.ceiling, only.source)
		}
	}
	for name := range templateOnly {
		if dig(params[name], "Type") != "Number" {
			t.Errorf("templateOnly names %s, which is no Number parameter of template.yaml", name)
		}
	}
	if numbers == 0 {
		t.Fatal("no Number parameter found in template.yaml")
	}
}
