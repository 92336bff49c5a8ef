package envd

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
)

// fileRoutes are envd's plain HTTP file routes: GET /files downloads one
// file, POST /files writes one or several (multipart, or one octet-stream
// body).
type fileRoutes struct{ cfg *Config }

// maxFilesPerUpload bounds the parts of one multipart upload.
const maxFilesPerUpload = 1000

// httpError is envd's REST error body; the SDK reads its code.
func httpError(w http.ResponseWriter, status int, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": status, "message": fmt.Sprintf(format, args...)})
}

func fileStatus(err error) int {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return http.StatusNotFound
	case errors.Is(err, fs.ErrPermission):
		return http.StatusForbidden
	case errors.Is(err, syscall.ENOSPC):
		return http.StatusInsufficientStorage
	case errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.ENOTDIR):
		return http.StatusBadRequest
	default:
		return http.StatusInternalServerError
	}
}

func (f *fileRoutes) get(w http.ResponseWriter, r *http.Request) {
	p := f.cfg.resolve(r.URL.Query().Get("path"))
	file, err := os.Open(p)
	if err != nil {
		httpError(w, fileStatus(err), "%s: %v", p, errors.Unwrap(err))
		return
	}
	defer file.Close()
	fi, err := file.Stat()
	if err != nil {
		httpError(w, fileStatus(err), "%s: %v", p, err)
		return
	}
	if fi.IsDir() {
		httpError(w, http.StatusBadRequest, "%s is a directory", p)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": fi.Name()}))
	http.ServeContent(w, r, "", fi.ModTime(), file)
}

type writtenFile struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Path string `json:"path"`
}

func (f *fileRoutes) post(w http.ResponseWriter, r *http.Request) {
	query := r.URL.Query().Get("path")
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var written []writtenFile
	switch mt {
	case "multipart/form-data":
		mr := multipart.NewReader(r.Body, params["boundary"])
		for {
			part, err := mr.NextRawPart()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				httpError(w, http.StatusBadRequest, "multipart: %v", err)
				return
			}
			if part.FormName() != "file" {
				part.Close()
				continue
			}
			if len(written) >= maxFilesPerUpload {
				httpError(w, http.StatusRequestEntityTooLarge, "more than %d files in one upload", maxFilesPerUpload)
				return
			}
			// The SDK puts the whole path in the filename, which
			// Part.FileName() would cut to its last element.
			_, dp, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
			name := dp["filename"]
			if query != "" {
				name = query // one file written to the path asked
			}
			if name == "" {
				httpError(w, http.StatusBadRequest, "a part has no file name and there is no path")
				return
			}
			wf, status, err := f.write(name, part)
			part.Close()
			if err != nil {
				httpError(w, status, "%v", err)
				return
			}
			written = append(written, wf)
		}
	default: // one file as the body (envd 0.5.7: application/octet-stream)
		if query == "" {
			httpError(w, http.StatusBadRequest, "an octet-stream upload needs ?path=")
			return
		}
		body := io.Reader(r.Body)
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				httpError(w, http.StatusBadRequest, "gzip: %v", err)
				return
			}
			defer zr.Close()
			body = zr
		}
		wf, status, err := f.write(query, body)
		if err != nil {
			httpError(w, status, "%v", err)
			return
		}
		written = append(written, wf)
	}
	if len(written) == 0 {
		httpError(w, http.StatusBadRequest, "no file in the upload")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(written)
}

// write writes one file (parents made, an existing file replaced) as the
// sandbox user.
func (f *fileRoutes) write(name string, body io.Reader) (writtenFile, int, error) {
	p := f.cfg.resolve(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return writtenFile{}, fileStatus(err), err
	}
	file, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return writtenFile{}, fileStatus(err), err
	}
	_, err = io.Copy(file, body)
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return writtenFile{}, fileStatus(err), fmt.Errorf("write %s: %w", p, err)
	}
	return writtenFile{Name: filepath.Base(p), Type: "file", Path: p}, 0, nil
}
