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
	n, err := zipEntries(z)
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

// zipEntries is the number of entries a zip's end-of-central-directory
// record declares (it is within the last 22 bytes and a comment of at most
// 64 KiB). A ZIP64 zip (0xffff: more than 65,534 entries, or parts over
// 4 GiB) is an error: nothing this bounded needs it.
func zipEntries(z []byte) (int, error) {
	const eocdLen = 22
	for i := len(z) - eocdLen; i >= 0 && i >= len(z)-eocdLen-0xffff; i-- {
		if z[i] == 'P' && z[i+1] == 'K' && z[i+2] == 5 && z[i+3] == 6 {
			n := int(z[i+10]) | int(z[i+11])<<8
			if n == 0xffff {
				return 0, errors.New("zip64")
			}
			return n, nil
		}
	}
	return 0, errors.New("no end of central directory")
}
