package envd

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newServer(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	home := t.TempDir()
	srv := httptest.NewServer(Handler(Config{User: "user", Home: home,
		Env: []string{"PATH=/usr/bin:/bin", "HOME=" + home, "SANDBOX_VAR=from-create"}, Log: slog.New(slog.DiscardHandler)}))
	t.Cleanup(srv.Close)
	return srv, home
}

func call(t *testing.T, srv *httptest.Server, method string, req any, resp any) int {
	t.Helper()
	b, _ := json.Marshal(req)
	r, err := http.Post(srv.URL+"/"+method, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if resp != nil {
		_ = json.NewDecoder(r.Body).Decode(resp)
	}
	return r.StatusCode
}

// stream calls a server stream and returns its messages and its end.
func stream(t *testing.T, srv *httptest.Server, method string, req any, onMsg func(json.RawMessage) bool) (msgs []json.RawMessage, end string) {
	t.Helper()
	b, _ := json.Marshal(req)
	env := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b)))
	hr, _ := http.NewRequest(http.MethodPost, srv.URL+"/"+method, bytes.NewReader(append(env, b...)))
	hr.Header.Set("Content-Type", "application/connect+json")
	hr.Header.Set("Connect-Timeout-Ms", "20000")
	r, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(r.Body, hdr[:]); err != nil {
			t.Fatalf("%s: stream cut: %v", method, err)
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[1:]))
		if _, err := io.ReadFull(r.Body, body); err != nil {
			t.Fatal(err)
		}
		if hdr[0]&flagEndStream != 0 {
			return msgs, string(body)
		}
		msgs = append(msgs, body)
		if onMsg != nil && !onMsg(body) {
			return msgs, ""
		}
	}
}

func TestProcessStart(t *testing.T) {
	srv, home := newServer(t)
	yes := true
	msgs, end := stream(t, srv, "process.Process/Start", startRequest{Process: &processConfig{Cmd: "/bin/bash",
		Args: []string{"-c", `echo out; echo err >&2; pwd; echo "$SANDBOX_VAR $MINE"; exit 3`}, Envs: map[string]string{"MINE": "mine"}}, Stdin: &yes}, nil)
	if end != "{}" {
		t.Fatalf("end of stream %s", end)
	}
	var stdout, stderr string
	var ev []startResponse
	for _, m := range msgs {
		var r startResponse
		if err := json.Unmarshal(m, &r); err != nil {
			t.Fatal(err)
		}
		ev = append(ev, r)
		if r.Event.Data != nil {
			stdout += string(r.Event.Data.Stdout)
			stderr += string(r.Event.Data.Stderr)
		}
	}
	if ev[0].Event.Start == nil || ev[0].Event.Start.Pid == 0 {
		t.Fatalf("first event %s, want start with a pid", msgs[0])
	}
	last := ev[len(ev)-1].Event.End
	if last == nil || last.ExitCode != 3 || !last.Exited || last.Status != "exit status 3" || last.Error == nil {
		t.Fatalf("last event %s, want end with exit 3", msgs[len(msgs)-1])
	}
	if want := "out\n" + home + "\nfrom-create mine\n"; stdout != want || stderr != "err\n" {
		t.Fatalf("stdout %q stderr %q, want %q and err", stdout, stderr, want)
	}
	// The wire form of the first and last events, as the SDK reads them.
	if !strings.Contains(string(msgs[0]), `{"event":{"start":{"pid":`) || !strings.Contains(string(msgs[len(msgs)-1]), `"exitCode":3,"exited":true`) {
		t.Fatalf("wire: %s ... %s", msgs[0], msgs[len(msgs)-1])
	}
}

func TestProcessStdinListKill(t *testing.T) {
	srv, _ := newServer(t)
	yes := true
	got := make(chan string, 1)
	var pid uint32
	done := make(chan struct{})
	go func() {
		defer close(done)
		var out string
		stream(t, srv, "process.Process/Start", startRequest{Process: &processConfig{Cmd: "/bin/cat"}, Stdin: &yes, Tag: ptr("cat")}, func(m json.RawMessage) bool {
			var r startResponse
			_ = json.Unmarshal(m, &r)
			if r.Event.Start != nil {
				pid = r.Event.Start.Pid
				got <- "started"
			}
			if r.Event.Data != nil {
				out += string(r.Event.Data.Stdout)
				if out == "ping\n" {
					got <- out
				}
			}
			return true
		})
	}()
	<-got
	if code := call(t, srv, "process.Process/SendInput", sendInputRequest{Process: &processSelector{Pid: &pid}, Input: &processInput{Stdin: []byte("ping\n")}}, nil); code != 200 {
		t.Fatalf("SendInput: %d", code)
	}
	if s := <-got; s != "ping\n" {
		t.Fatal(s)
	}
	var list listResponse
	call(t, srv, "process.Process/List", empty{}, &list)
	if len(list.Processes) != 1 || list.Processes[0].Pid != pid || *list.Processes[0].Tag != "cat" {
		t.Fatalf("list %+v", list)
	}
	if code := call(t, srv, "process.Process/SendSignal", sendSignalRequest{Process: &processSelector{Pid: &pid}, Signal: "SIGNAL_SIGKILL"}, nil); code != 200 {
		t.Fatalf("SendSignal: %d", code)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the killed process's stream did not end")
	}
	var e rpcError
	missing := uint32(999999)
	if code := call(t, srv, "process.Process/SendSignal", sendSignalRequest{Process: &processSelector{Pid: &missing}, Signal: "SIGNAL_SIGKILL"}, &e); code != 404 || e.Code != codeNotFound {
		t.Fatalf("signal to a missing pid: %d %+v", code, e)
	}
}

func ptr[T any](v T) *T { return &v }

func TestFiles(t *testing.T) {
	srv, home := newServer(t)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, p := range []string{"/a/b/one.txt", filepath.Join(home, "two.txt")} {
		h := make(map[string][]string)
		h["Content-Disposition"] = []string{`form-data; name="file"; filename="` + p + `"`}
		w, _ := mw.CreatePart(h)
		_, _ = io.WriteString(w, "content of "+p)
	}
	mw.Close()
	// the home stands in for / here: relative and absolute both resolve
	r, err := http.Post(srv.URL+"/files", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	var written []writtenFile
	_ = json.NewDecoder(r.Body).Decode(&written)
	r.Body.Close()
	if r.StatusCode != 200 || len(written) != 2 || written[1].Path != filepath.Join(home, "two.txt") {
		t.Fatalf("upload: %d %+v", r.StatusCode, written)
	}
	os.RemoveAll("/a/b/one.txt") // written where asked, as the test's user
	r, _ = http.Get(srv.URL + "/files?path=two.txt")
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if string(b) != "content of "+filepath.Join(home, "two.txt") {
		t.Fatalf("download: %q", b)
	}
	r, _ = http.Get(srv.URL + "/files?path=missing")
	var e map[string]any
	_ = json.NewDecoder(r.Body).Decode(&e)
	r.Body.Close()
	if r.StatusCode != 404 || e["code"] != float64(404) {
		t.Fatalf("missing file: %d %v", r.StatusCode, e)
	}
	var ls listDirResponse
	call(t, srv, "filesystem.Filesystem/MakeDir", pathRequest{Path: "d/e"}, nil)
	call(t, srv, "filesystem.Filesystem/ListDir", listDirRequest{Path: ".", Depth: 2}, &ls)
	names := []string{}
	for _, en := range ls.Entries {
		names = append(names, strings.TrimPrefix(en.Path, home)+":"+en.Type)
	}
	if strings.Join(names, " ") != "/d:FILE_TYPE_DIRECTORY /d/e:FILE_TYPE_DIRECTORY /two.txt:FILE_TYPE_FILE" {
		t.Fatalf("list: %v", names)
	}
	if code := call(t, srv, "filesystem.Filesystem/MakeDir", pathRequest{Path: "d"}, &e); code != 409 {
		t.Fatalf("MakeDir of an existing dir: %d", code)
	}
	var moved entryResponse
	call(t, srv, "filesystem.Filesystem/Move", moveRequest{Source: "two.txt", Destination: "d/three.txt"}, &moved)
	if moved.Entry == nil || moved.Entry.Name != "three.txt" || moved.Entry.Size != "31" && moved.Entry.Size == "" {
		t.Fatalf("move: %+v", moved.Entry)
	}
}

func TestWatchDir(t *testing.T) {
	srv, home := newServer(t)
	found := false
	stream(t, srv, "filesystem.Filesystem/WatchDir", watchDirRequest{Path: home}, func(m json.RawMessage) bool {
		var r watchDirResponse
		_ = json.Unmarshal(m, &r)
		if r.Start != nil {
			_ = os.WriteFile(filepath.Join(home, "w.txt"), []byte("x"), 0o644)
		}
		if r.Filesystem != nil && r.Filesystem.Name == "w.txt" && r.Filesystem.Type == eventWrite {
			found = true
			return false
		}
		return true
	})
	if !found {
		t.Fatal("no write event")
	}
}

func TestOtherUserRefused(t *testing.T) {
	srv, _ := newServer(t)
	r, _ := http.Get(srv.URL + "/files?path=x&username=root")
	r.Body.Close()
	if r.StatusCode != http.StatusForbidden {
		t.Fatalf("root's download: %d", r.StatusCode)
	}
}
