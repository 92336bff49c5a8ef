package judge0

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

type zipEntry struct {
	name string
	body []byte
}

func makeZip(t *testing.T, entries ...zipEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		w, err := zw.Create(e.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// eocd is the offset of a zip's end record.
func eocd(z []byte) int { return bytes.LastIndex(z, []byte("PK\x05\x06")) }

// declare is z with its end record declaring n entries.
func declare(z []byte, n int) []byte {
	z = bytes.Clone(z)
	i := eocd(z)
	z[i+8], z[i+9], z[i+10], z[i+11] = byte(n), byte(n>>8), byte(n), byte(n>>8)
	return z
}

// moveDirectory is z with its end record placing the directory at offset.
func moveDirectory(z []byte, offset uint32) []byte {
	z = bytes.Clone(z)
	i := eocd(z)
	z[i+16], z[i+17], z[i+18], z[i+19] = byte(offset), byte(offset>>8), byte(offset>>16), byte(offset>>24)
	return z
}

// wrappedZip is a central directory of n directory entries and an end
// record that declares n mod 65,536 of them (no ZIP64 record): what a
// writer that lets the count wrap makes.
func wrappedZip(n int) []byte {
	var b bytes.Buffer
	for k := range n {
		name := fmt.Sprintf("%x/", k)
		rec := make([]byte, 46)
		copy(rec, "PK\x01\x02")
		rec[28], rec[29] = byte(len(name)), 0
		b.Write(rec)
		b.WriteString(name)
	}
	size := b.Len()
	end := make([]byte, 22)
	copy(end, "PK\x05\x06")
	end[8], end[9], end[10], end[11] = byte(n), byte(n>>8), byte(n), byte(n>>8)
	end[12], end[13], end[14], end[15] = byte(size), byte(size>>8), byte(size>>16), byte(size>>24)
	b.Write(end)
	return b.Bytes()
}

func TestUnzip(t *testing.T) {
	many := make([]zipEntry, 65)
	for i := range many {
		many[i] = zipEntry{fmt.Sprintf("f%d.txt", i), []byte("x")}
	}
	bomb := bytes.Repeat([]byte{0}, 4<<20) // compresses to a few KB
	manyDirs := make([]zipEntry, 1000)
	for i := range manyDirs {
		manyDirs[i] = zipEntry{fmt.Sprintf("d%d/", i), nil}
	}
	cases := []struct {
		name    string
		zip     []byte
		want    map[string]string
		wantErr string
	}{
		{"files", makeZip(t, zipEntry{"greet.h", []byte("#define GREETING \"hi\"\n")}, zipEntry{"data.txt", []byte("1 2 3\n")}),
			map[string]string{"greet.h": "#define GREETING \"hi\"\n", "data.txt": "1 2 3\n"}, ""},
		{"a directory entry is skipped", makeZip(t, zipEntry{"lib/", nil}, zipEntry{"a.txt", []byte("a")}), map[string]string{"a.txt": "a"}, ""},
		{"empty", makeZip(t), map[string]string{}, ""},
		{"a file in a directory", makeZip(t, zipEntry{"lib/a.h", []byte("a")}), nil, "in a directory"},
		{"a path out", makeZip(t, zipEntry{"../../etc/passwd", []byte("a")}), nil, "in a directory"},
		{"an option-like name", makeZip(t, zipEntry{"-rf", []byte("a")}), nil, "not a file name"},
		{"the program's own source", makeZip(t, zipEntry{"main.c", []byte("int main(){}")}), nil, "not a file name"},
		{"twice", makeZip(t, zipEntry{"a", []byte("a")}, zipEntry{"a", []byte("b")}), nil, "twice"},
		{"too many files", makeZip(t, many...), nil, "more than 64 files"},
		{"a zip bomb", makeZip(t, zipEntry{"zeros", bomb}), nil, "more than max_extract_size"},
		{"bombs that add up", makeZip(t, zipEntry{"a", bomb[:600<<10]}, zipEntry{"b", bomb[:600<<10]}), nil, "more than max_extract_size"},
		{"binary", makeZip(t, zipEntry{"a.bin", []byte{0xff, 0xfe, 0}}), nil, "not UTF-8"},
		{"not a zip", []byte("hello"), nil, "not a valid zip"},
		// 1,000 empty directories: refused by the count in the zip's last
		// record, before its directory is read.
		{"a directory of many entries", makeZip(t, manyDirs...), nil, "more than 64 files"},
		// 65,539 entries: the end record's 16-bit count wraps to 3; the
		// walk of the directory counts them (and stops past the bound).
		{"a count that wraps", wrappedZip(65539), nil, "more than 64 files"},
		{"a count that does not match the directory", declare(makeZip(t, zipEntry{"a", []byte("a")}, zipEntry{"b", []byte("b")}), 1), nil, "not a valid zip"},
		{"a directory outside the archive", moveDirectory(makeZip(t, zipEntry{"a", []byte("a")}), 1<<30), nil, "not a valid zip"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "a zip bomb" && len(c.zip) > 64<<10 {
				t.Fatalf("the bomb is %d bytes zipped", len(c.zip))
			}
			got, err := Unzip(c.zip, 1<<20, "main.c")
			if c.wantErr != "" {
				if err == nil || !errors.Is(err, errExtract) || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}

// TestValidateAdditionalFiles: additional_files is base64 whatever
// base64_encoded says; its files become the job's, its errors 422's.
func TestValidateAdditionalFiles(t *testing.T) {
	c := New([]Language{{ID: 50, Name: "C", SourceFile: "main.c", Ours: "c"}}, DefaultLimits)
	z := base64.StdEncoding.EncodeToString(makeZip(t, zipEntry{"greet.h", []byte("x")}))
	src, id := "int main(){}", Number{V: 50, Valid: true, Text: "50"}
	for _, b64 := range []bool{false, true} {
		code := src
		if b64 {
			code = base64.StdEncoding.EncodeToString([]byte(src))
		}
		v, errs := c.Validate(&Request{SourceCode: &code, LanguageID: &id, AdditionalFiles: &z}, b64)
		if errs != nil {
			t.Fatal(errs)
		}
		if v.Job.Files["greet.h"] != "x" || len(v.Options.AdditionalFiles) == 0 {
			t.Fatalf("files %v", v.Job.Files)
		}
	}
	bad := base64.StdEncoding.EncodeToString(makeZip(t, zipEntry{"main.c", []byte("x")}))
	_, errs := c.Validate(&Request{SourceCode: &src, LanguageID: &id, AdditionalFiles: &bad}, false)
	if len(errs["additional_files"]) != 1 || strings.HasPrefix(errs["additional_files"][0], "additional_files") {
		t.Fatalf("errs %v", errs)
	}
	small := DefaultLimits
	small.MaxExtractSize = 1
	big := base64.StdEncoding.EncodeToString(makeZip(t, zipEntry{"big.txt", bytes.Repeat([]byte("a"), 2048)}))
	if _, errs := New(c.Languages(), small).Validate(&Request{SourceCode: &src, LanguageID: &id, AdditionalFiles: &big}, false); !strings.Contains(fmt.Sprint(errs), "max_extract_size") {
		t.Fatalf("errs %v", errs)
	}
}
