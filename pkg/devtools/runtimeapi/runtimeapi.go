// Package runtimeapi is an in-process implementation of the AWS Lambda Runtime API (the
// next/response/error endpoints a function's runtime polls), so a function's real bootstrap
// binary can be run and invoked on a developer's machine without Docker: the `sam local
// invoke` experience for `aitokens invoke` and for the functions' tests.
package runtimeapi

import (
	"aitokens/pkg/devtools/syncbuf"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const prefix = "/2018-06-01/runtime"

// Result is what one invocation produced.
type Result struct {
	RequestID string
	TraceID   string // the X-Ray trace id handed out with the event (the Root of its trace header)
	Response  []byte // the function's response payload, if it answered
	Error     []byte // the error payload, if it reported an invocation error
	InitError []byte // the error payload, if it reported an init error
	// InitDuration is from process start to the runtime's first poll for an event.
	InitDuration time.Duration
	// InvokeDuration is from handing out the event to receiving the answer.
	InvokeDuration time.Duration
	Logs           []byte // the process's stdout and stderr
	// Streamed says the function answered with a streamed response (Invoke read it whole into
	// Response); StreamErrorType and StreamError are the error it reported in the stream's
	// trailers (Lambda-Runtime-Function-Error-Type and -Body, decoded), if it broke off.
	Streamed        bool
	StreamErrorType string
	StreamError     []byte
	handedOut       time.Time
}

type outcome struct {
	body   []byte
	isErr  bool
	stream *Stream
}

// Stream is a streamed response as it arrives: a function URL's with InvokeMode
// RESPONSE_STREAM (aws-lambda-go's lambdaurl) posts it chunked, a JSON prelude (statusCode,
// headers, cookies), 8 NUL bytes, then the body, and reports an error that breaks it off in
// its trailers.
type Stream struct {
	ContentType string
	body        *io.PipeReader
	done        chan struct{} // closed once the whole stream and its trailers were read
	errType     string
	errBody     []byte
}

// Read reads the stream as the function writes it.
func (s *Stream) Read(p []byte) (int, error) { return s.body.Read(p) }

// Close stops reading; the rest of the stream is discarded.
func (s *Stream) Close() error { return s.body.Close() }

// Trailer waits until the stream has ended and returns the error it reported, if any (its
// Lambda-Runtime-Function-Error-Type, and -Body decoded from base64).
func (s *Stream) Trailer(ctx context.Context) (errType string, errBody []byte, err error) {
	select {
	case <-s.done:
		return s.errType, s.errBody, nil
	case <-ctx.Done():
		return "", nil, ctx.Err()
	}
}

// streamed says whether a response is posted as a stream: with Lambda's streaming response
// mode header, or as the function URL integration's content type (aws-lambda-go sends no mode
// header, and posts every response chunked, so neither chunking nor trailers tell).
func streamed(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Lambda-Runtime-Function-Response-Mode"), "streaming") ||
		r.Header.Get("Content-Type") == IntegrationResponse
}

// IntegrationResponse is the content type of a function URL's streamed response.
const IntegrationResponse = "application/vnd.awslambda.http-integration-response"

// pending is an event handed to the process, waiting for its answer.
type pending struct {
	requestID string
	traceID   string
	event     []byte
	handedOut time.Time
	done      chan outcome
}

// server is the Runtime API of one process: it hands out the events queued for it, one at a
// time, as a warm Lambda execution environment does.
type server struct {
	deadline  time.Duration
	queue     chan *pending
	mu        sync.Mutex
	firstPoll time.Time
	polled    chan struct{} // closed at the first poll: the end of the function's init
	inflight  map[string]*pending
	initErr   chan []byte
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == prefix+"/invocation/next":
		s.mu.Lock()
		if s.firstPoll.IsZero() {
			s.firstPoll = time.Now()
			close(s.polled)
		}
		s.mu.Unlock()
		var p *pending
		select {
		case p = <-s.queue:
		case <-r.Context().Done(): // no more events: hold the poll until the process is stopped
			return
		}
		s.mu.Lock()
		p.handedOut = time.Now()
		s.inflight[p.requestID] = p
		s.mu.Unlock()
		w.Header().Set("Lambda-Runtime-Aws-Request-Id", p.requestID)
		w.Header().Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(s.deadline).UnixMilli(), 10))
		w.Header().Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:local")
		w.Header().Set("Lambda-Runtime-Trace-Id", "Root="+p.traceID+";Parent=0000000000000001;Sampled=0")
		w.Header().Set("Content-Type", "application/json")
		w.Write(p.event)
	case r.Method == http.MethodPost && r.URL.Path == prefix+"/init/error":
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
		s.initErr <- body
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, prefix+"/invocation/"):
		id, kind, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, prefix+"/invocation/"), "/")
		s.mu.Lock()
		p := s.inflight[id]
		delete(s.inflight, id)
		s.mu.Unlock()
		if p == nil || (kind != "response" && kind != "error") {
			http.Error(w, "unknown invocation", http.StatusNotFound)
			return
		}
		if kind == "response" && streamed(r) {
			// Handed to the caller as it arrives; the trailers are read once the body ended.
			pr, pw := io.Pipe()
			st := &Stream{ContentType: r.Header.Get("Content-Type"), body: pr, done: make(chan struct{})}
			p.done <- outcome{stream: st}
			_, err := io.Copy(pw, r.Body)
			st.errType = r.Trailer.Get("Lambda-Runtime-Function-Error-Type")
			if b := r.Trailer.Get("Lambda-Runtime-Function-Error-Body"); b != "" {
				st.errBody, _ = base64.StdEncoding.DecodeString(b)
			}
			close(st.done)
			pw.CloseWithError(err) // nil: EOF
			w.WriteHeader(http.StatusAccepted)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
		p.done <- outcome{body: body, isErr: kind == "error"}
	default:
		http.Error(w, "unknown Runtime API call", http.StatusNotFound)
	}
}

// Invocation is one run of a function binary with one event.
type Invocation struct {
	Binary   string
	Function string   // AWS_LAMBDA_FUNCTION_NAME
	Env      []string // extra environment, KEY=VALUE
	Event    []byte
	Timeout  time.Duration // the function's deadline; 30 s when zero
	// Environ is the environment the process starts from, before the Runtime API's variables
	// and Env; this process's own environment when nil (LambdaEnviron is one like Lambda's).
	Environ []string
}

// LambdaEnviron is an environment like the one Lambda gives a provided.al2023 function before
// its own variables: a measurement or a test that uses it sees none of this machine's
// settings (such as AWS_CA_BUNDLE, which makes the AWS SDK parse a CA bundle at init).
func LambdaEnviron() []string {
	return []string{"PATH=/usr/local/bin:/usr/bin/:/bin:/opt/bin", "LANG=en_US.UTF-8", "TZ=:UTC",
		"AWS_LAMBDA_INITIALIZATION_TYPE=on-demand"}
}

// Invoke starts the binary against a fresh Runtime API, hands it the event, waits for its answer
// (or for its exit) and stops it.
func Invoke(ctx context.Context, inv Invocation) (Result, error) {
	p, err := Start(inv)
	if err != nil {
		return Result{}, err
	}
	res, err := p.Invoke(ctx, inv.Event)
	p.Stop()
	res.Logs = p.Logs()
	if err != nil && res.Response == nil && res.Error == nil && res.InitError == nil {
		return res, fmt.Errorf("%w: %s", err, bytes.TrimSpace(res.Logs))
	}
	return res, nil
}

// Process is a function binary kept running between invocations, as a warm Lambda is.
type Process struct {
	srv     *server
	httpSrv *http.Server
	cmd     *exec.Cmd
	logs    *syncbuf.Buffer
	start   time.Time
	exited  chan struct{}
	waitErr error
	timeout time.Duration
}

// envRewriter, when set, changes every process's environment before it starts.
var envRewriter func(function string, env []string) []string

// RewriteEnv makes every process started afterwards start with f(function, environment): the
// functions' tests point each function's AWS endpoints at recording proxies this way
// (pkg/devtools/awsrecord), whichever test starts it. Call it before any process starts (in
// TestMain), never concurrently with Start.
func RewriteEnv(f func(function string, env []string) []string) { envRewriter = f }

// Start runs the binary against a fresh Runtime API; Invoke hands it events one at a time.
func Start(inv Invocation) (*Process, error) {
	if inv.Timeout == 0 {
		inv.Timeout = 30 * time.Second
	}
	s := &server{deadline: inv.Timeout, queue: make(chan *pending), inflight: map[string]*pending{}, initErr: make(chan []byte, 1),
		polled: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Process{srv: s, httpSrv: &http.Server{Handler: s}, logs: &syncbuf.Buffer{}, exited: make(chan struct{}), timeout: inv.Timeout}
	go p.httpSrv.Serve(ln)
	p.cmd = exec.Command(inv.Binary)
	environ := inv.Environ
	if environ == nil {
		environ = os.Environ()
	}
	p.cmd.Env = append(slices.Clip(environ),
		"AWS_LAMBDA_RUNTIME_API="+ln.Addr().String(),
		"AWS_LAMBDA_FUNCTION_NAME="+inv.Function,
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256",
		"_HANDLER=bootstrap",
	)
	p.cmd.Env = append(p.cmd.Env, inv.Env...)
	if envRewriter != nil {
		p.cmd.Env = envRewriter(inv.Function, p.cmd.Env)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		p.httpSrv.Close()
		return nil, fmt.Errorf("start %s: %w", inv.Binary, err)
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.exited) }()
	return p, nil
}

// Invoke hands the running process one event and waits for its answer; a streamed answer is
// read whole into Response, with the error its trailers report.
func (p *Process) Invoke(ctx context.Context, event []byte) (Result, error) {
	res, st, err := p.InvokeStream(ctx, event)
	if err != nil || st == nil {
		return res, err
	}
	res.Streamed = true
	read := make(chan error, 1)
	go func() {
		var err error
		res.Response, err = io.ReadAll(st)
		read <- err
	}()
	timer := time.NewTimer(p.timeout + 10*time.Second)
	defer timer.Stop()
	select {
	case err = <-read:
	case <-timer.C:
		err = errors.New("the function's stream did not end in time")
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		st.Close()
		<-read
		return res, err
	}
	res.StreamErrorType, res.StreamError, _ = st.Trailer(ctx)
	res.InvokeDuration = time.Since(res.handedOut)
	return res, nil
}

// InvokeStream hands the running process one event and waits for the start of its answer: a
// streamed one is returned as the Stream, to read as it arrives (Result holds the ids and init
// duration); any other is in Result, with a nil Stream.
func (p *Process) InvokeStream(ctx context.Context, event []byte) (Result, *Stream, error) {
	res, out, err := p.invoke(ctx, event)
	return res, out.stream, err
}

func (p *Process) invoke(ctx context.Context, event []byte) (res Result, out outcome, err error) {
	id := make([]byte, 8+12)
	rand.Read(id)
	// An X-Ray trace id: version 1, the time in hex seconds, 96 random bits.
	trace := fmt.Sprintf("1-%08x-%s", time.Now().Unix(), hex.EncodeToString(id[8:]))
	pe := &pending{requestID: hex.EncodeToString(id[:8]), traceID: trace, event: event, done: make(chan outcome, 1)}
	res = Result{RequestID: pe.requestID, TraceID: trace}
	timer := time.NewTimer(p.timeout + 10*time.Second)
	defer timer.Stop()
	select {
	case p.srv.queue <- pe:
	case body := <-p.srv.initErr:
		res.InitError = body
		return res, out, nil
	case <-p.exited:
		return res, out, fmt.Errorf("the function exited before taking the event (%v)", p.waitErr)
	case <-timer.C:
		return res, out, errors.New("the function did not ask for the event in time")
	case <-ctx.Done():
		return res, out, ctx.Err()
	}
	select {
	case out = <-pe.done:
		switch {
		case out.stream != nil:
		case out.isErr:
			res.Error = out.body
		default:
			res.Response = out.body
		}
	case <-p.exited:
		return res, out, fmt.Errorf("the function exited before answering (%v)", p.waitErr)
	case <-timer.C:
		return res, out, errors.New("the function did not answer in time")
	case <-ctx.Done():
		return res, out, ctx.Err()
	}
	answered := time.Now()
	p.srv.mu.Lock()
	res.InitDuration = p.srv.firstPoll.Sub(p.start)
	res.handedOut = pe.handedOut
	res.InvokeDuration = answered.Sub(pe.handedOut)
	p.srv.mu.Unlock()
	return res, out, nil
}

// Ready waits until the process polls for its first event (its init is over) and returns the
// time from its start, without handing it an event.
func (p *Process) Ready(ctx context.Context) (time.Duration, error) {
	timer := time.NewTimer(p.timeout + 10*time.Second)
	defer timer.Stop()
	select {
	case <-p.srv.polled:
		p.srv.mu.Lock()
		defer p.srv.mu.Unlock()
		return p.srv.firstPoll.Sub(p.start), nil
	case body := <-p.srv.initErr:
		return 0, fmt.Errorf("init error: %s", body)
	case <-p.exited:
		return 0, fmt.Errorf("the function exited during init (%v)", p.waitErr)
	case <-timer.C:
		return 0, errors.New("the function did not poll for an event in time")
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// CPUTime is the user and system CPU time the process used; it is known once Stop returned.
// Stopped right after Ready, it is the CPU cost of the init alone, a figure that, unlike the
// wall-clock init, barely moves with the load of a shared machine.
func (p *Process) CPUTime() time.Duration {
	select {
	case <-p.exited:
		return p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
	default:
		return 0
	}
}

// Logs is what the process wrote to stdout and stderr so far.
func (p *Process) Logs() []byte { return p.logs.Bytes() }

// Stop ends the process and its Runtime API.
func (p *Process) Stop() {
	p.cmd.Process.Kill()
	<-p.exited
	p.httpSrv.Close()
}
