package envd

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

// protoFields reads a .proto file's messages (nested ones as Outer.Inner),
// their fields, and its services' methods.
func protoFields(t *testing.T, path string) (pkg string, fields map[string][]string, methods []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fields = map[string][]string{}
	fieldRE := regexp.MustCompile(`^(?:optional |repeated )?(?:map<[^>]+>|[\w.]+)\s+(\w+)\s*=\s*\d+;`)
	var stack []string // message names, "" for other blocks
	service := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "package "):
			pkg = strings.TrimSuffix(strings.TrimPrefix(line, "package "), ";")
		case strings.HasPrefix(line, "service "):
			service = strings.Fields(line)[1]
		case strings.HasPrefix(line, "rpc "):
			methods = append(methods, "/"+pkg+"."+service+"/"+strings.Fields(strings.SplitN(line, "(", 2)[0])[1])
		case strings.HasPrefix(line, "message ") && strings.HasSuffix(line, "{}"):
			name := strings.Fields(line)[1]
			fields[strings.Join(append(names(stack), name), ".")] = nil
		case strings.HasPrefix(line, "message "):
			stack = append(stack, strings.Fields(line)[1])
		case strings.HasSuffix(line, "{"):
			stack = append(stack, "")
		case line == "}":
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		default:
			if m := fieldRE.FindStringSubmatch(line); m != nil && len(stack) > 0 {
				msg := strings.Join(names(stack), ".")
				fields[msg] = append(fields[msg], m[1])
			}
		}
	}
	return pkg, fields, methods
}

func names(stack []string) []string {
	var out []string
	for _, s := range stack {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// lowerCamel is proto3 JSON's name of a field.
func lowerCamel(s string) string {
	parts := strings.Split(s, "_")
	for i := 1; i < len(parts); i++ {
		parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
	}
	return strings.Join(parts, "")
}

func jsonNames(v any) []string {
	var out []string
	rt := reflect.TypeOf(v)
	for i := range rt.NumField() {
		out = append(out, strings.Split(rt.Field(i).Tag.Get("json"), ",")[0])
	}
	return out
}

// TestProtoNames holds the hand-written messages to proto/*.proto: every
// message the SDK sends or reads has exactly the proto's fields, by their
// JSON names, and every method of both services has a route.
func TestProtoNames(t *testing.T) {
	goTypes := map[string]any{
		"process.PTY": pty{}, "process.PTY.Size": ptySize{}, "process.ProcessConfig": processConfig{},
		"process.ProcessInfo": processInfo{}, "process.ListResponse": listResponse{}, "process.StartRequest": startRequest{},
		"process.UpdateRequest": updateRequest{}, "process.ProcessEvent": processEvent{},
		"process.ProcessEvent.StartEvent": startEvent{}, "process.ProcessEvent.DataEvent": dataEvent{},
		"process.ProcessEvent.EndEvent": endEvent{}, "process.StartResponse": startResponse{}, "process.ConnectResponse": startResponse{},
		"process.SendInputRequest": sendInputRequest{}, "process.ProcessInput": processInput{},
		"process.SendSignalRequest": sendSignalRequest{}, "process.CloseStdinRequest": closeStdinRequest{},
		"process.ConnectRequest": connectRequest{}, "process.ProcessSelector": processSelector{},
		"filesystem.MoveRequest": moveRequest{}, "filesystem.MoveResponse": entryResponse{}, "filesystem.MakeDirRequest": pathRequest{},
		"filesystem.MakeDirResponse": entryResponse{}, "filesystem.RemoveRequest": pathRequest{}, "filesystem.StatRequest": pathRequest{},
		"filesystem.StatResponse": entryResponse{}, "filesystem.EntryInfo": entryInfo{}, "filesystem.ListDirRequest": listDirRequest{},
		"filesystem.ListDirResponse": listDirResponse{}, "filesystem.WatchDirRequest": watchDirRequest{},
		"filesystem.FilesystemEvent": filesystemEvent{}, "filesystem.WatchDirResponse": watchDirResponse{},
	}
	h := Handler(Config{User: "user", Home: t.TempDir()})
	seen := 0
	for _, file := range []string{"proto/process.proto", "proto/filesystem.proto"} {
		pkg, fields, methods := protoFields(t, file)
		for msg, fs := range fields {
			v, ok := goTypes[pkg+"."+msg]
			if !ok {
				continue
			}
			seen++
			var want []string
			for _, f := range fs {
				want = append(want, lowerCamel(f))
			}
			if got := jsonNames(v); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("%s.%s: Go %T has JSON fields %v, the proto %v", pkg, msg, v, got, want)
			}
		}
		for _, m := range methods {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, m, nil))
			if w.Code == http.StatusNotFound {
				t.Errorf("no route for %s", m)
			}
		}
	}
	if seen != len(goTypes) {
		t.Errorf("the protos name %d of the %d messages", seen, len(goTypes))
	}
}
