package main

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"aitokens/pkg/devtools/devkeys"
	"aitokens/pkg/devtools/ebtest"
	"aitokens/pkg/devtools/testenv"
)

// `serve --dev` (make run) creates the table with its stream and reads the stream in process:
// a token created through the API reaches the EventBridge at AWS_ENDPOINT_URL_EVENTBRIDGE as
// one entry with its audit event's key as id.
func TestServeDevPublishesEvents(t *testing.T) {
	testenv.Require(t) // serve --dev starts a DynamoDB Local of its own: not in a -short run without one
	eb := ebtest.New()
	defer eb.Close()
	eb.UseFromEnv(t)
	dataDir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	for k, v := range map[string]string{"DATA_DIR": dataDir, "PORT": strconv.Itoa(port), "DYNAMODB_ENDPOINT": "", "JWKS_FILE": "", "JWKS_URL": "",
		"JWT_ISSUER": "", "JWT_AUDIENCE": "", "TABLE_NAME": "", "KMS_KEY_ID": "", "MASTER_KEY_FILE": ""} {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveUntil(ctx, []string{"--dev"}) }()
	stopped := false // serve's answer was read already
	defer func() {
		cancel()
		if stopped {
			return
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("serve did not stop within 60 s")
		}
	}()
	base := "http://127.0.0.1:" + strconv.Itoa(port) + "/ai-service/acme/agentic/tokens"
	deadline := time.Now().Add(3 * time.Minute) // DynamoDB Local starts on a busy machine
	for {
		if res, err := http.Get(base); err == nil {
			res.Body.Close()
			break
		}
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("serve stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the dev server did not answer within 3 minutes")
		}
		time.Sleep(200 * time.Millisecond)
	}
	key, err := devkeys.Ensure(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	jwt, err := devkeys.Mint(key, devkeys.Claims{Tenant: "acme", Scopes: []string{"ai.agent_manage"}, Subject: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, base+"/openai", strings.NewReader(`{"name":"OpenAI","value":"sk-serve-dev-secret-0000"}`))
	req.Header.Set("Authorization", "Bearer "+jwt)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("create: %v %v", res, err)
	}
	res.Body.Close()
	for deadline := time.Now().Add(30 * time.Second); len(eb.Entries()) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no event on the bus within 30 s")
		}
	}
	e := eb.Entries()[0]
	if e.DetailType != "AI Token Created" || !strings.HasPrefix(e.ID(), "acme/event#openai#") || strings.Contains(e.Detail, "sk-serve") {
		t.Fatalf("entry %+v", e)
	}
}
