package relayclient_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/config"

	"aitokens/pkg/relayclient"
)

// An agent's OpenAI call through the local relay (`make run`): the agent's client is unchanged
// but for its Transport, and holds no key; the relay injects the token's value.
func ExampleNew() {
	rt, err := relayclient.New(relayclient.Config{
		RelayURL: "http://localhost:8080", // make run: the relay is on the API's port
		Tenant:   "acme",
		TokenID:  "openai-relayed",
		Consumer: "agent:support-agent",
		Hosts:    []string{"api.openai.com"}, // every other host is called directly
	})
	if err != nil {
		log.Fatal(err)
	}
	client := &http.Client{Transport: rt} // or openai-go's option.WithHTTPClient(client)

	req, _ := http.NewRequest("POST", "https://api.openai.com/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}`))
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	fmt.Println(res.Status, string(body))
}

// The same in AWS: the relay is the function URL (AuthType AWS_IAM), and each request is signed
// with the agent's own AWS credentials (its role needs lambda:InvokeFunctionUrl on the relay).
func ExampleNew_aws() {
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	rt, err := relayclient.New(relayclient.Config{
		RelayURL:    os.Getenv("RELAY_URL"), // the stack's RelayUrl output
		Tenant:      "acme",
		TokenID:     "openai-relayed",
		Consumer:    "agent:support-agent",
		Hosts:       []string{"api.openai.com"},
		Credentials: cfg.Credentials, // cached by the SDK
		Region:      cfg.Region,      // the function's region
	})
	if err != nil {
		log.Fatal(err)
	}
	client := &http.Client{Transport: rt}
	res, err := client.Get("https://api.openai.com/v1/models")
	if err != nil {
		log.Fatal(err)
	}
	defer res.Body.Close()
	fmt.Println(res.Status)
}
