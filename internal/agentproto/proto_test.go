package agentproto

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, []byte(`{"op":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFrame(&buf, 100)
	if err != nil || string(got) != `{"op":"ping"}` {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestReadFrameErrors(t *testing.T) {
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"too large", []byte{0, 0, 1, 0, 'x'}, ErrFrameTooLarge},
		{"empty", []byte{0, 0, 0, 0}, ErrEmptyFrame},
		{"short header", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"short body", []byte{0, 0, 0, 5, 'a'}, io.ErrUnexpectedEOF},
		{"eof", nil, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(tt.input), 16)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWriteEmptyFrame(t *testing.T) {
	if err := WriteFrame(io.Discard, nil); !errors.Is(err, ErrEmptyFrame) {
		t.Fatalf("err = %v", err)
	}
}
