package functions_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"aitokens/pkg/devtools/runtimeapi"
)

// floors builds, once and with the same flags as the functions (buildFlags), the
// hello-world aws-lambda-go function and the same with a DynamoDB client
// (functions/testdata/helloworld and dynamodbfloor).
var floors = sync.OnceValues(func() ([2]string, error) {
	var bins [2]string
	for i, name := range []string{"helloworld", "dynamodbfloor"} {
		bins[i] = filepath.Join(binDir, name)
		if out, err := exec.Command("go", append(append([]string{"build"}, buildFlags...), "-o", bins[i], "./testdata/"+name)...).CombinedOutput(); err != nil {
			return bins, fmt.Errorf("build %s: %v\n%s", name, err, out)
		}
	}
	return bins, nil
})

// lambdaEnv is the environment of a function as the template and Lambda set it in AWS: the
// SDK's credentials and region variables, no DynamoDB Local, the KMS key of the sealing
// functions. No event is handed out, so no call leaves the process.
func lambdaEnv(fn string) []string {
	env := append(runtimeapi.LambdaEnviron(),
		"AWS_REGION=eu-central-1", "AWS_DEFAULT_REGION=eu-central-1",
		"AWS_ACCESS_KEY_ID=ASIAEXAMPLECOLDSTART", "AWS_SECRET_ACCESS_KEY=secret", "AWS_SESSION_TOKEN=session",
		"TABLE_NAME=ai-tokens-TokensTable-EXAMPLE", "TENANT_CLAIM=tenant", "REQUEST_TIMEOUT=5s", "AUDIT_RETENTION_DAYS=400", "DYNAMODB_ENDPOINT=",
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/ai-tokens/"+fn, "AWS_LAMBDA_LOG_STREAM_NAME=2026/01/01/[$LATEST]0123456789abcdef")
	if fn == "upsert-token" || fn == "resolve-token" {
		env = append(env, "KMS_KEY_ID=arn:aws:kms:eu-central-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
	}
	return env
}

// initOf starts a binary, waits for its first poll for an event (the end of its init) and
// stops it: the wall-clock init and the CPU time the process spent on it.
func initOf(b *testing.B, binary, function string, env []string) (wall, cpu time.Duration) {
	p, err := runtimeapi.Start(runtimeapi.Invocation{Binary: binary, Function: function, Environ: env})
	if err != nil {
		b.Fatal(err)
	}
	wall, err = p.Ready(context.Background())
	p.Stop()
	if err != nil {
		b.Fatalf("%s: %v\n%s", function, err, p.Logs())
	}
	return wall, p.CPUTime()
}

// BenchmarkColdStartVersusHelloWorld alternates, iteration by iteration, the init of a function
// (process start to its first poll for an event, configured as in AWS) with the init of the
// hello-world aws-lambda-go function, so both see the same load of the machine. It reports both
// inits and their ratio, in wall-clock time and in the CPU time the process used (the steadier
// figure on a busy machine). "dynamodb-floor" is the hello-world with a DynamoDB client: the
// part of any function's ratio that is the SDK's. With COLDSTART_BASELINE naming a directory of
// the same functions built from another revision, those alternate too (before/after in one run).
func BenchmarkColdStartVersusHelloWorld(b *testing.B) {
	bins, err := floors()
	if err != nil {
		b.Fatal(err)
	}
	hello := bins[0]
	for _, fn := range []string{"get-token", "upsert-token", "resolve-token", "dynamodb-floor"} {
		b.Run(fn, func(b *testing.B) {
			env, binary := lambdaEnv(fn), filepath.Join(binDir, fn)
			if fn == "dynamodb-floor" {
				binary = bins[1]
			}
			baseline := os.Getenv("COLDSTART_BASELINE")
			if fn == "dynamodb-floor" {
				baseline = ""
			}
			var fnWall, fnCPU, helloWall, helloCPU, baseWall, baseCPU time.Duration
			for b.Loop() {
				w, c := initOf(b, hello, "helloworld", env)
				helloWall, helloCPU = helloWall+w, helloCPU+c
				w, c = initOf(b, binary, fn, env)
				fnWall, fnCPU = fnWall+w, fnCPU+c
				if baseline != "" {
					w, c = initOf(b, filepath.Join(baseline, fn), fn, env)
					baseWall, baseCPU = baseWall+w, baseCPU+c
				}
			}
			if baseline != "" {
				b.ReportMetric(float64(baseWall)/float64(helloWall), "baseline-init/hello")
				b.ReportMetric(float64(baseCPU)/float64(helloCPU), "baseline-cpu/hello")
			}
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
			b.ReportMetric(ms(fnWall), "init-ms")
			b.ReportMetric(ms(helloWall), "hello-init-ms")
			b.ReportMetric(float64(fnWall)/float64(helloWall), "init/hello")
			b.ReportMetric(ms(fnCPU), "init-cpu-ms")
			b.ReportMetric(ms(helloCPU), "hello-cpu-ms")
			b.ReportMetric(float64(fnCPU)/float64(helloCPU), "cpu/hello")
		})
	}
}
