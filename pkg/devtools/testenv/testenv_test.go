package testenv

import (
	"flag"
	"os/exec"
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
		wantRun bool
		want    []string // in what Main writes
	}{
		{"no java", true, false, false, []string{"cannot start DynamoDB Local", "`java` is not on PATH", "go test -short"}},
		{"no java, -short", true, true, true, []string{"-short: DynamoDB Local cannot start", "`java` is not on PATH"}},
		{"no jar", false, false, false, []string{"cannot start DynamoDB Local", "make deps"}},
		{"no jar, -short", false, true, true, []string{"-short: DynamoDB Local cannot start"}},
	}
	short, oldStderr := flag.Lookup("test.short").Value.String(), stderr
	t.Cleanup(func() {
		flag.Set("test.short", short)
		stderr, unavailable, endpoint, client = oldStderr, nil, "", nil
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DYNAMODB_ENDPOINT", "")
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
		})
	}
}
