// Package runtimeapi is an in-process implementation of the AWS Lambda Runtime API (the
// next/response/error endpoints a function's runtime polls), so a function's real bootstrap
// binary can be run and invoked on a developer's machine without Docker: the `sam local
// invoke` experience for `aitokens invoke` and for the functions' tests.
package runtimeapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

const prefix = "/2018-06-01/runtime"

// Result is what one invocation produced.
type Result struct {
	RequestID string
	Response  []byte // the function's response payload, if it answered
	Error     []byte // the error payload, if it reported an invocation error
	InitError []byte // the error payload, if it reported an init error
	// InitDuration is from process start to the runtime's first poll for an event.
	InitDuration time.Duration
	// InvokeDuration is from handing out the event to receiving the answer.
	InvokeDuration time.Duration
	Logs           []byte // the process's stdout and stderr
}

type outcome struct {
	body  []byte
	isErr bool
}

// server is the Runtime API for one process and one invocation.
type server struct {
	event     []byte
	requestID string
	deadline  time.Duration
	mu        sync.Mutex
	firstPoll time.Time
	handedOut time.Time
	given     bool
	done      chan outcome
	initErr   chan []byte
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == prefix+"/invocation/next":
		s.mu.Lock()
		if s.firstPoll.IsZero() {
			s.firstPoll = time.Now()
		}
		given := s.given
		if !given {
			s.given = true
			s.handedOut = time.Now()
		}
		s.mu.Unlock()
		if given { // one event per run: hold the poll until the process is stopped
			<-r.Context().Done()
			return
		}
		w.Header().Set("Lambda-Runtime-Aws-Request-Id", s.requestID)
		w.Header().Set("Lambda-Runtime-Deadline-Ms", strconv.FormatInt(time.Now().Add(s.deadline).UnixMilli(), 10))
		w.Header().Set("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:000000000000:function:local")
		w.Header().Set("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000;Sampled=0")
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.event)
	case r.Method == http.MethodPost && r.URL.Path == prefix+"/invocation/"+s.requestID+"/response":
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
		s.done <- outcome{body: body}
	case r.Method == http.MethodPost && r.URL.Path == prefix+"/invocation/"+s.requestID+"/error":
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
		s.done <- outcome{body: body, isErr: true}
	case r.Method == http.MethodPost && r.URL.Path == prefix+"/init/error":
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusAccepted)
		s.initErr <- body
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
}

// Invoke starts the binary against a fresh Runtime API, hands it the event, waits for its answer
// (or for its exit) and stops it.
func Invoke(ctx context.Context, inv Invocation) (Result, error) {
	if inv.Timeout == 0 {
		inv.Timeout = 30 * time.Second
	}
	id := make([]byte, 8)
	rand.Read(id)
	s := &server{event: inv.Event, requestID: hex.EncodeToString(id), deadline: inv.Timeout,
		done: make(chan outcome, 1), initErr: make(chan []byte, 1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return Result{}, err
	}
	httpSrv := &http.Server{Handler: s}
	go httpSrv.Serve(ln)
	defer httpSrv.Close()

	var logs bytes.Buffer
	cmd := exec.Command(inv.Binary)
	cmd.Env = append(os.Environ(),
		"AWS_LAMBDA_RUNTIME_API="+ln.Addr().String(),
		"AWS_LAMBDA_FUNCTION_NAME="+inv.Function,
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256",
		"_HANDLER=bootstrap",
	)
	cmd.Env = append(cmd.Env, inv.Env...)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("start %s: %w", inv.Binary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Kill()
		<-exited
	}

	res := Result{RequestID: s.requestID}
	timer := time.NewTimer(inv.Timeout + 10*time.Second)
	defer timer.Stop()
	var answered time.Time
	select {
	case out := <-s.done:
		answered = time.Now()
		if out.isErr {
			res.Error = out.body
		} else {
			res.Response = out.body
		}
	case body := <-s.initErr:
		res.InitError = body
	case err := <-exited:
		res.Logs = logs.Bytes()
		return res, fmt.Errorf("the function exited before answering (%v): %s", err, bytes.TrimSpace(logs.Bytes()))
	case <-timer.C:
		stop()
		return res, errors.New("the function did not answer in time")
	case <-ctx.Done():
		stop()
		return res, ctx.Err()
	}
	s.mu.Lock()
	if !s.firstPoll.IsZero() {
		res.InitDuration = s.firstPoll.Sub(start)
		if !answered.IsZero() {
			res.InvokeDuration = answered.Sub(s.handedOut)
		}
	}
	s.mu.Unlock()
	stop()
	res.Logs = logs.Bytes()
	return res, nil
}
