package main

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startAPI starts "codebench api" on a free loopback port with a store of
// its own, and waits until it answers.
func startAPI(t *testing.T, logs io.Writer, env ...string) (*exec.Cmd, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	// A node's name is its store's, unless given: an API restarted on the
	// same store is the same node (it republishes its own submissions and
	// reads its own reply queue).
	node, db := "", ""
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "CODEBENCH_API_NODE="); ok {
			node = v
		}
		if v, ok := strings.CutPrefix(e, "CODEBENCH_API_DATABASE_URL="); ok {
			db = v
		}
	}
	if node == "" {
		env = append(env, fmt.Sprintf("CODEBENCH_API_NODE=t-%x", sha256.Sum256([]byte(db)))[:len("CODEBENCH_API_NODE=t-")+12])
	}
	cmd := exec.Command(binary, "api")
	cmd.Env = append(append(os.Environ(), "CODEBENCH_API_ADDR="+addr), env...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	base := "http://" + addr
	// Ready: serving, its store open and the broker connected (a POST
	// before that is refused with 503: no token is given out).
	eventually(t, "the API ready", time.Minute, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	return cmd, base
}

// apiCall sends a JSON request and decodes the JSON answer.
func apiCall(t *testing.T, method, url string, body any) (int, map[string]any) {
	t.Helper()
	code, m, err := jsonRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return code, m
}

// jsonRequest is apiCall without a t (for a test's goroutines).
func jsonRequest(method, url string, body any) (int, map[string]any, error) {
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, r)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m, nil
}

// envCount is the positive number in the environment variable name, else
// def: a test's size, raised by a make target.
func envCount(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func statusID(m map[string]any) float64 {
	st, _ := m["status"].(map[string]any)
	id, _ := st["id"].(float64)
	return id
}

// zipOf is files zipped, base64: what additional_files carries.
func zipOf(t *testing.T, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// killAndRestartAPI kills the API with -9 in the middle of a burst of
// submissions (4 clients, 16 programs that take half a second each, the
// kill after the sixth token), starts it again with the same store, and
// expects every token it gave out answered with its own program's output;
// a request the kill cut off has no token, and nothing to lose.
func killAndRestartAPI(t *testing.T, api *exec.Cmd, logs io.Writer, env []string) {
	base := "http://" + apiAddr(api)
	const burst, clients = 16, 4
	var mu sync.Mutex
	given := map[string]int{} // token: the program's number
	next := make(chan int, burst)
	for i := range burst {
		next <- i
	}
	close(next)
	sixth := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				b, _ := json.Marshal(map[string]any{"source_code": fmt.Sprintf("import time\ntime.sleep(0.5)\nprint(%d)", i), "language_id": 71})
				resp, err := http.Post(base+"/submissions", "application/json", bytes.NewReader(b))
				if err != nil {
					continue // cut off by the kill: no token given
				}
				var m map[string]string
				_ = json.NewDecoder(resp.Body).Decode(&m)
				resp.Body.Close()
				if resp.StatusCode != 201 {
					continue
				}
				mu.Lock()
				given[m["token"]] = i
				if len(given) == 6 {
					once.Do(func() { close(sixth) })
				}
				mu.Unlock()
			}
		}()
	}
	select {
	case <-sixth:
	case <-time.After(time.Minute):
		t.Fatal("no six tokens in a minute")
	}
	if err := api.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = api.Process.Wait()
	wg.Wait()
	time.Sleep(2 * time.Second) // jobs end while no API runs
	_, base = startAPI(t, logs, env...)
	t.Logf("%d of %d submissions got a token before the kill", len(given), burst)
	for tok, i := range given {
		var m map[string]any
		eventually(t, "the result after the restart", 3*time.Minute, func() bool {
			_, m = apiCall(t, "GET", base+"/submissions/"+tok, nil)
			return statusID(m) >= 3
		})
		if statusID(m) != 3 || m["stdout"] != fmt.Sprintf("%d\n", i) {
			t.Errorf("token %s (program %d) after the restart: %v", tok, i, m)
		}
	}
}

// apiAddr is the address an API started by startAPI listens on (its
// setting comes last in the environment it was given).
func apiAddr(cmd *exec.Cmd) string {
	addr := ""
	for _, e := range cmd.Env {
		if v, ok := strings.CutPrefix(e, "CODEBENCH_API_ADDR="); ok {
			addr = v
		}
	}
	return addr
}
