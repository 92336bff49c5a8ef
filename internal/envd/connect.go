package envd

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"
)

// The Connect protocol (connectrpc.com/docs/protocol) with the JSON codec,
// as much of it as the E2B SDK uses: unary calls (POST, application/json)
// and server streams (application/connect+json, one enveloped request, then
// enveloped messages and an end-of-stream message). No compression: the SDK
// asks for none.

// maxRequest bounds a request message: the largest the SDK sends is a
// SendInput, whose chunks are small; a Start carries a command line.
const maxRequest = 1 << 20

// rpcError is a Connect error: a code of the protocol and a message.
type rpcError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *rpcError) Error() string { return e.Code + ": " + e.Message }

func errorf(code, format string, args ...any) error {
	return &rpcError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Connect codes the server answers with.
const (
	codeInvalidArgument = "invalid_argument"
	codeNotFound        = "not_found"
	codeAlreadyExists   = "already_exists"
	codePermission      = "permission_denied"
	codeFailedPrecond   = "failed_precondition"
	codeResource        = "resource_exhausted"
	codeUnimplemented   = "unimplemented"
	codeInternal        = "internal"
	codeDeadline        = "deadline_exceeded"
)

// httpStatus maps a Connect code to its HTTP status (the protocol's table).
func httpStatus(code string) int {
	switch code {
	case codeInvalidArgument, codeFailedPrecond:
		return http.StatusBadRequest
	case codeNotFound:
		return http.StatusNotFound
	case codeAlreadyExists:
		return http.StatusConflict
	case codePermission:
		return http.StatusForbidden
	case codeResource:
		return http.StatusTooManyRequests
	case codeUnimplemented:
		return http.StatusNotImplemented
	case codeDeadline:
		return http.StatusGatewayTimeout
	default:
		return http.StatusInternalServerError
	}
}

func asRPC(err error) *rpcError {
	var e *rpcError
	if errors.As(err, &e) {
		return e
	}
	return &rpcError{Code: codeInternal, Message: err.Error()}
}

func writeUnaryError(w http.ResponseWriter, err error) {
	e := asRPC(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus(e.Code))
	_ = json.NewEncoder(w).Encode(e)
}

func contentType(r *http.Request) string {
	t, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return t
}

// unary serves a unary method.
func unary[Req, Resp any](fn func(r *http.Request, req *Req) (*Resp, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeUnaryError(w, errorf(codeUnimplemented, "use POST"))
			return
		}
		if contentType(r) != "application/json" {
			w.Header().Set("Accept-Post", "application/json")
			http.Error(w, "codebench serves the Connect protocol with the JSON codec only", http.StatusUnsupportedMediaType)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxRequest+1))
		if err != nil {
			writeUnaryError(w, errorf(codeInvalidArgument, "read request: %v", err))
			return
		}
		if len(body) > maxRequest {
			writeUnaryError(w, errorf(codeResource, "request above %d bytes", maxRequest))
			return
		}
		var req Req
		if len(body) > 0 {
			if err := json.Unmarshal(body, &req); err != nil {
				writeUnaryError(w, errorf(codeInvalidArgument, "decode request: %v", err))
				return
			}
		}
		resp, err := fn(r, &req)
		if err != nil {
			writeUnaryError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(resp)
	}
}

// Envelope flags.
const (
	flagCompressed = 0x01
	flagEndStream  = 0x02
)

// streamCall is a server stream being answered.
type streamCall struct {
	w       http.ResponseWriter
	flush   http.Flusher
	timeout time.Duration // Connect-Timeout-Ms; 0: none
	// keepalive is the client's Keepalive-Ping-Interval; 0: none.
	keepalive time.Duration
}

// keepalives ticks at the client's Keepalive-Ping-Interval (never without
// one); stop stops it.
func (s *streamCall) keepalives() (tick <-chan time.Time, stop func()) {
	if s.keepalive <= 0 {
		return nil, func() {}
	}
	t := time.NewTicker(s.keepalive)
	return t.C, t.Stop
}

// send writes one message.
func (s *streamCall) send(msg any) error {
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if err := writeEnvelope(s.w, 0, b); err != nil {
		return err
	}
	s.flush.Flush()
	return nil
}

func writeEnvelope(w io.Writer, flags byte, b []byte) error {
	hdr := make([]byte, 5, 5+len(b))
	hdr[0] = flags
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(b)))
	_, err := w.Write(append(hdr, b...))
	return err
}

// serverStream serves a server-streaming method: fn sends messages, and its
// error (or none) is the end of the stream.
func serverStream[Req any](fn func(r *http.Request, req *Req, s *streamCall) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || contentType(r) != "application/connect+json" {
			http.Error(w, "a server stream takes POST application/connect+json", http.StatusUnsupportedMediaType)
			return
		}
		var req Req
		if err := readEnvelope(r.Body, &req); err != nil {
			writeStreamStart(w)
			endStream(w, err)
			return
		}
		s := &streamCall{w: w}
		s.flush, _ = w.(http.Flusher)
		if s.flush == nil {
			http.Error(w, "streaming unsupported", http.StatusInternalServerError)
			return
		}
		if ms, err := strconv.ParseInt(r.Header.Get("Connect-Timeout-Ms"), 10, 64); err == nil && ms > 0 {
			s.timeout = time.Duration(ms) * time.Millisecond
		}
		if sec, err := strconv.ParseInt(r.Header.Get("Keepalive-Ping-Interval"), 10, 64); err == nil && sec > 0 {
			s.keepalive = time.Duration(min(sec, 3600)) * time.Second
		}
		writeStreamStart(w)
		endStream(w, fn(r, &req, s))
	}
}

func writeStreamStart(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/connect+json")
	w.WriteHeader(http.StatusOK)
}

// endStream writes the end-of-stream message: {} or the error.
func endStream(w http.ResponseWriter, err error) {
	end := map[string]any{}
	if err != nil {
		end["error"] = asRPC(err)
	}
	b, _ := json.Marshal(end)
	_ = writeEnvelope(w, flagEndStream, b)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

// readEnvelope reads a stream's one request message.
func readEnvelope(body io.Reader, v any) error {
	var hdr [5]byte
	if _, err := io.ReadFull(body, hdr[:]); err != nil {
		return errorf(codeInvalidArgument, "read request envelope: %v", err)
	}
	if hdr[0]&flagCompressed != 0 {
		return errorf(codeUnimplemented, "compressed requests are not served")
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxRequest {
		return errorf(codeResource, "request above %d bytes", maxRequest)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(body, b); err != nil {
		return errorf(codeInvalidArgument, "read request: %v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return errorf(codeInvalidArgument, "decode request: %v", err)
	}
	return nil
}
