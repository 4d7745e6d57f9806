package testenv

import (
	"flag"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// fakeM is a package's tests: it records that they ran and ends with its own code.
type fakeM struct{ ran bool }

func (m *fakeM) Run() int { m.ran = true; return 7 }

// Without Java or without the jar, a normal run fails with the reason (CI never passes by
// skipping); a -short run runs the package, and a test that needs a table skips with the reason.
func TestMainWithoutDynamoDBLocal(t *testing.T) {
	_, javaErr := exec.LookPath("java")
	cases := []struct {
		name    string
		noJava  bool // PATH without java; otherwise DYNAMODB_LOCAL_JAR names a missing file
		short   bool
		ci      bool
		wantRun bool
		want    []string // in what Main writes
	}{
		{"no java", true, false, false, false, []string{"cannot start DynamoDB Local", "`java` is not on PATH", "go test -short"}},
		{"no java, CI", true, false, true, false, []string{"cannot start DynamoDB Local", "`java` is not on PATH"}},
		{"no java, -short", true, true, false, true, []string{"-short: DynamoDB Local cannot start", "`java` is not on PATH"}},
		{"no java, -short, CI", true, true, true, true, []string{"-short: DynamoDB Local cannot start", "`java` is not on PATH"}},
		{"no jar", false, false, false, false, []string{"cannot start DynamoDB Local", "make deps"}},
		{"no jar, CI", false, false, true, false, []string{"cannot start DynamoDB Local", "make deps"}},
		{"no jar, -short", false, true, false, true, []string{"-short: DynamoDB Local cannot start"}},
	}
	short, oldStderr := flag.Lookup("test.short").Value.String(), stderr
	t.Cleanup(func() {
		flag.Set("test.short", short)
		stderr, unavailable, endpoint, client = oldStderr, nil, "", nil
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DYNAMODB_ENDPOINT", "")
			t.Setenv("CI", map[bool]string{true: "true", false: ""}[tc.ci])
			if tc.noJava {
				t.Setenv("PATH", t.TempDir())
			} else {
				t.Setenv("DYNAMODB_LOCAL_JAR", t.TempDir()+"/DynamoDBLocal.jar")
			}
			if !tc.noJava && javaErr == nil {
				tc.want = append(tc.want, "DYNAMODB_LOCAL_JAR=")
			}
			flag.Set("test.short", map[bool]string{true: "true", false: "false"}[tc.short])
			var out strings.Builder
			stderr = &out
			m := &fakeM{}
			code := Main(m)
			switch {
			case tc.wantRun && (!m.ran || code != 7):
				t.Fatalf("code %d, ran %v: want the tests run and their code", code, m.ran)
			case !tc.wantRun && (m.ran || code != 1):
				t.Fatalf("code %d, ran %v: want a failure before any test", code, m.ran)
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("%q does not say %q", out.String(), w)
				}
			}
			if !tc.wantRun {
				return
			}
			var needsTable *testing.T
			t.Run("a test that needs a table", func(t *testing.T) {
				needsTable = t
				NewTable(t)
				t.Error("NewTable returned without a database")
			})
			if !needsTable.Skipped() {
				t.Error("the test that needs a table did not skip")
			}
			var needsEndpoint *testing.T
			t.Run("a test that hands the endpoint on", func(t *testing.T) {
				needsEndpoint = t
				t.Errorf("EndpointFor returned %q without a database", EndpointFor(t))
			})
			if !needsEndpoint.Skipped() {
				t.Error("the test that needs the endpoint did not skip")
			}
		})
	}
}

// What a run does without a part: -short skips whatever is missing; a full run fails without
// DynamoDB Local anywhere, and without a browser under CI=true only.
func TestWithoutPart(t *testing.T) {
	cases := []struct {
		short, ci, optional bool
		want                verdict
	}{
		{short: true, ci: false, optional: false, want: skip},
		{short: true, ci: true, optional: false, want: skip},
		{short: true, ci: false, optional: true, want: skip},
		{short: true, ci: true, optional: true, want: skip},
		{short: false, ci: false, optional: false, want: fail},
		{short: false, ci: true, optional: false, want: fail},
		{short: false, ci: false, optional: true, want: skip},
		{short: false, ci: true, optional: true, want: fail},
	}
	for _, c := range cases {
		if got := withoutPart(c.short, c.ci, c.optional); got != c.want {
			t.Errorf("short %v, CI %v, optional %v: %v, want %v", c.short, c.ci, c.optional, got, c.want)
		}
	}
}

// endedTB records how Missing ends a test, which a real *testing.T cannot show for a failure
// without failing this test.
type endedTB struct {
	testing.TB
	skipped, failed string
}

func (e *endedTB) Helper()           {}
func (e *endedTB) Skip(args ...any)  { e.skipped = fmt.Sprint(args...) }
func (e *endedTB) Fatal(args ...any) { e.failed = fmt.Sprint(args...) }

// Missing skips a test that lacks a browser in a -short run whatever CI says, and outside CI;
// under CI=true a full run fails it.
func TestMissingOptionalPart(t *testing.T) {
	short := flag.Lookup("test.short").Value.String()
	t.Cleanup(func() { flag.Set("test.short", short) })
	for _, c := range []struct {
		short, ci bool
		wantFail  bool
	}{{true, true, false}, {true, false, false}, {false, false, false}, {false, true, true}} {
		flag.Set("test.short", strconv.FormatBool(c.short))
		t.Setenv("CI", map[bool]string{true: "true", false: ""}[c.ci])
		e := &endedTB{TB: t}
		Missing(e, "no Chromium")
		if failed := e.failed != ""; failed != c.wantFail || failed == (e.skipped != "") || !strings.Contains(e.skipped+e.failed, "no Chromium") {
			t.Errorf("short %v, CI %v: skipped %q, failed %q; want failed %v", c.short, c.ci, e.skipped, e.failed, c.wantFail)
		}
	}
}
