// Package kmstest is a test AWS KMS: an httptest server that answers KMS's JSON protocol
// (X-Amz-Target: TrentService.GenerateDataKey and TrentService.Decrypt), makes real random data
// keys, wraps them with its own key bound to the encryption context, and refuses a Decrypt
// whose context differs, as KMS does. It can throttle, refuse or stall on demand and counts calls.
package kmstest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"
)

// KeyARN is the key id the server answers with.
const KeyARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

// Server is a running test KMS.
type Server struct {
	*httptest.Server
	master cipher.AEAD

	mu       sync.Mutex
	calls    map[string]int
	throttle int    // answer this many next calls with ThrottlingException (-1: forever)
	refuse   string // answer every call with this error type (e.g. AccessDeniedException)
	dataKeys [][]byte
	contexts []map[string]string
	onCall   func(op string)
	stall    chan struct{} // non-nil: every call waits for it to close, or for its client to go
}

// OnCall runs f at the start of every call (before answering), e.g. to cancel a request.
func (s *Server) OnCall(f func(op string)) { s.mu.Lock(); s.onCall = f; s.mu.Unlock() }

// New starts a test KMS.
func New() *Server {
	key := make([]byte, 32)
	rand.Read(key)
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	s := &Server{master: aead, calls: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Throttle makes the next n calls fail with ThrottlingException; n < 0 means every call.
func (s *Server) Throttle(n int) { s.mu.Lock(); s.throttle = n; s.mu.Unlock() }

// Refuse makes every call fail with the given KMS error type ("" to stop).
func (s *Server) Refuse(errorType string) { s.mu.Lock(); s.refuse = errorType; s.mu.Unlock() }

// Stall holds every call from now on (as a KMS that stopped answering would) until Release; a
// held call ends early only when its client gives up, and then answers nothing.
func (s *Server) Stall() {
	s.mu.Lock()
	if s.stall == nil {
		s.stall = make(chan struct{})
	}
	s.mu.Unlock()
}

// Release ends a stall.
func (s *Server) Release() {
	s.mu.Lock()
	if s.stall != nil {
		close(s.stall)
		s.stall = nil
	}
	s.mu.Unlock()
}

// Close releases a stall and stops the server (httptest's Close waits for held calls).
func (s *Server) Close() {
	s.Release()
	s.Server.Close()
}

// Calls returns how many calls each operation got ("GenerateDataKey", "Decrypt").
func (s *Server) Calls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.calls)
}

// DataKeys returns every plaintext data key handed out, so a test can look for them in storage.
func (s *Server) DataKeys() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.dataKeys...)
}

// Contexts returns the encryption context of every call, in order.
func (s *Server) Contexts() []map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]string(nil), s.contexts...)
}

type request struct {
	KeyID             string            `json:"KeyId"`
	KeySpec           string            `json:"KeySpec"`
	CiphertextBlob    []byte            `json:"CiphertextBlob"`
	EncryptionContext map[string]string `json:"EncryptionContext"`
}

func fail(w http.ResponseWriter, status int, errorType, message string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"__type": errorType, "message": message})
}

// aad binds a wrapped key to its encryption context: the pairs, sorted, as KMS does.
func aad(ctx map[string]string) []byte {
	keys := make([]string, 0, len(ctx))
	for k := range ctx {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "\x00" + ctx[k] + "\x00")
	}
	return []byte(b.String())
}

// contextAllowed: tenant and tokenId set, and besides them only egress (64 hex digits).
func contextAllowed(c map[string]string) bool {
	if c["tenant"] == "" || c["tokenId"] == "" {
		return false
	}
	for k, v := range c {
		switch k {
		case "tenant", "tokenId":
		case "egress":
			if len(v) != 64 || strings.Trim(v, "0123456789abcdef") != "" {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// contextWithinLimits: at most 8 pairs, no value over 384 characters, 4096 bytes of keys and
// values in all (pkg/seal.CheckContext says where these come from): a local run must not pass
// a context AWS would refuse or a grant could not pin.
func contextWithinLimits(c map[string]string) bool {
	total := 0
	for k, v := range c {
		if utf8.RuneCountInString(v) > 384 {
			return false
		}
		total += len(k) + len(v)
	}
	return len(c) <= 8 && total <= 4096
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "TrentService.")
	body, _ := io.ReadAll(r.Body)
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		fail(w, 400, "SerializationException", "bad JSON")
		return
	}
	s.mu.Lock()
	s.calls[op]++
	s.contexts = append(s.contexts, req.EncryptionContext)
	throttled := s.throttle != 0
	if s.throttle > 0 {
		s.throttle--
	}
	refuse := s.refuse
	onCall := s.onCall
	stall := s.stall
	s.mu.Unlock()
	if onCall != nil {
		onCall(op)
	}
	if stall != nil {
		// The body is read, so net/http watches the connection and ends r's context when the
		// client gives up.
		select {
		case <-stall:
		case <-r.Context().Done():
			return
		}
	}
	switch {
	case throttled:
		fail(w, 400, "ThrottlingException", "Rate exceeded")
		return
	case refuse != "":
		fail(w, 400, refuse, "refused by the test KMS")
		return
	case !contextWithinLimits(req.EncryptionContext):
		fail(w, 400, "ValidationException", "the encryption context is over its limits (8 pairs, 384 characters a value, 4096 bytes)")
		return
	case !contextAllowed(req.EncryptionContext):
		// What template.yaml's KMS conditions admit (ForAllValues of the keys, tenant and
		// tokenId present): AWS would refuse anything else with AccessDenied.
		fail(w, 400, "AccessDeniedException", "the service must send {tenant, tokenId} and at most egress (a SHA-256 hex digest) as encryption context")
		return
	}
	switch op {
	case "GenerateDataKey":
		if req.KeySpec != "AES_256" || req.KeyID == "" {
			fail(w, 400, "ValidationException", "KeySpec AES_256 and KeyId required")
			return
		}
		dataKey := make([]byte, 32)
		rand.Read(dataKey)
		nonce := make([]byte, s.master.NonceSize())
		rand.Read(nonce)
		blob := s.master.Seal(nonce, nonce, dataKey, aad(req.EncryptionContext))
		s.mu.Lock()
		s.dataKeys = append(s.dataKeys, dataKey)
		s.mu.Unlock()
		reply(w, map[string]any{"CiphertextBlob": blob, "Plaintext": dataKey, "KeyId": KeyARN})
	case "Decrypt":
		n := s.master.NonceSize()
		if len(req.CiphertextBlob) < n {
			fail(w, 400, "InvalidCiphertextException", "")
			return
		}
		dataKey, err := s.master.Open(nil, req.CiphertextBlob[:n], req.CiphertextBlob[n:], aad(req.EncryptionContext))
		if err != nil {
			fail(w, 400, "InvalidCiphertextException", "")
			return
		}
		reply(w, map[string]any{"Plaintext": dataKey, "KeyId": KeyARN, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"})
	default:
		fail(w, 400, "UnknownOperationException", op)
	}
}

func reply(w http.ResponseWriter, body any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(body)
}

// UseFromEnv points the SDK's standard configuration at this server for the rest of the test
// (AWS_ENDPOINT_URL_KMS, region, dummy credentials, no shared config files).
func (s *Server) UseFromEnv(t interface{ Setenv(key, value string) }) {
	t.Setenv("AWS_ENDPOINT_URL_KMS", s.URL)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
}
