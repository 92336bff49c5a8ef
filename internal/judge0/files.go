package judge0

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/codebench/codebench/internal/job"
	"github.com/codebench/codebench/internal/untrusted"
)

// errExtract is why additional_files cannot be unpacked; its text is the
// 422's message.
var errExtract = errors.New("additional_files")

// Unzip unpacks additional_files, a zip, into the job's files: every entry
// a file at the zip's top level (directory entries are skipped; a file in
// a directory is refused, the sandbox's work directory is flat), a valid
// file name, UTF-8 text (a job's files travel as JSON strings), none named
// like the program's source file, at most job.MaxFiles of them.
// The bytes unpacked are counted as they are read, never taken from the
// zip's own headers, and stop at maxBytes: a zip bomb costs at most that.
func Unzip(z []byte, maxBytes int64, source string) (map[string]string, error) {
	// Counted before the zip's directory is read (and an entry allocated
	// for each record in it): directories count too, so allow a few more.
	n, err := zipEntries(z, 4*job.MaxFiles)
	if err != nil {
		return nil, fmt.Errorf("%w: is not a valid zip file", errExtract)
	}
	if n > 4*job.MaxFiles {
		return nil, fmt.Errorf("%w: more than %d files", errExtract, job.MaxFiles)
	}
	r, err := zip.NewReader(bytes.NewReader(z), int64(len(z)))
	if err != nil {
		return nil, fmt.Errorf("%w: is not a valid zip file", errExtract)
	}
	files := map[string]string{}
	var total int64
	for _, f := range r.File {
		name := f.Name
		if strings.HasSuffix(name, "/") {
			continue
		}
		if strings.Contains(name, "/") || strings.Contains(name, `\`) {
			return nil, fmt.Errorf("%w: %s is in a directory; only files at the zip's top level are supported", errExtract, untrusted.Quote(name))
		}
		if !job.ValidFileName(name) || name == source {
			return nil, fmt.Errorf("%w: %s is not a file name a submission may use", errExtract, untrusted.Quote(name))
		}
		if _, dup := files[name]; dup {
			return nil, fmt.Errorf("%w: %s is in the zip twice", errExtract, untrusted.Quote(name))
		}
		if len(files) == job.MaxFiles {
			return nil, fmt.Errorf("%w: more than %d files", errExtract, job.MaxFiles)
		}
		body, err := readBounded(f, maxBytes-total)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", errExtract, untrusted.Quote(name), err)
		}
		total += int64(len(body))
		if !utf8.Valid(body) {
			return nil, fmt.Errorf("%w: %s is not UTF-8 text", errExtract, untrusted.Quote(name))
		}
		files[name] = string(body)
	}
	return files, nil
}

// errTooBig: what is unpacked is over the bound.
var errTooBig = errors.New("unpacks to more than max_extract_size")

// readBounded reads one entry, at most left bytes of it.
func readBounded(f *zip.File, left int64) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, errors.New("cannot be read")
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, left+1))
	if err != nil {
		return nil, errors.New("cannot be unpacked")
	}
	if int64(len(body)) > left {
		return nil, errTooBig
	}
	return body, nil
}

// zipEntries counts a zip's entries, directories included, by walking its
// central directory's records (nothing is allocated for them), up to
// limit+1: the zip is refused before archive/zip reads it. The directory
// must lie within the archive, before its end record, and hold exactly the
// entries that record declares (the 16-bit count wraps at 65,536: a zip of
// 65,539 entries declares 3, and the walk finds more). A ZIP64 zip (0xffff)
// is an error: nothing this bounded needs it.
func zipEntries(z []byte, limit int) (int, error) {
	const eocdLen, recordLen = 22, 46
	le16 := func(b []byte) int { return int(b[0]) | int(b[1])<<8 }
	le32 := func(b []byte) int64 { return int64(b[0]) | int64(b[1])<<8 | int64(b[2])<<16 | int64(b[3])<<24 }
	for i := len(z) - eocdLen; i >= 0 && i >= len(z)-eocdLen-0xffff; i-- {
		if z[i] != 'P' || z[i+1] != 'K' || z[i+2] != 5 || z[i+3] != 6 {
			continue
		}
		declared := le16(z[i+10:])
		size, offset := le32(z[i+12:]), le32(z[i+16:])
		if declared == 0xffff || size == 0xffffffff || offset == 0xffffffff {
			return 0, errors.New("zip64")
		}
		if offset+size > int64(i) {
			return 0, errors.New("the central directory is not within the archive")
		}
		n := 0
		for pos, end := offset, offset+size; pos < end; n++ {
			if n > limit {
				return n, nil
			}
			if pos+recordLen > end || z[pos] != 'P' || z[pos+1] != 'K' || z[pos+2] != 1 || z[pos+3] != 2 {
				return 0, errors.New("a central directory record is broken")
			}
			pos += recordLen + int64(le16(z[pos+28:])+le16(z[pos+30:])+le16(z[pos+32:]))
		}
		if n != declared {
			return 0, fmt.Errorf("the end record declares %d entries, the directory holds %d", declared, n)
		}
		return n, nil
	}
	return 0, errors.New("no end of central directory")
}
