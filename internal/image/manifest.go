// Package image is a built guest image as the runtime sees it: a Debian
// cloud kernel, an initramfs whose /init is the agent, and the root with the
// compilers, both as a read-only ext4 disk (for microVMs) and as a directory
// tree (for gVisor). Images are content-addressed under
// <data dir>/images/<hash>/; this package loads and verifies them. Building
// one is internal/image/build's, which the runtime does not import.
package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/codebench/codebench/internal/agentproto"
)

// agentInTree is checked by Load: a tree without the agent is not an image.
const agentInTree = agentproto.GuestAgentPath

// Schema is the manifest format version.
const Schema = 1

// File names inside an image directory.
const (
	KernelFile    = "vmlinuz"
	InitrdFile    = "initrd.cpio"
	RootfsFile    = "rootfs.ext4"
	RootTreeDir   = "rootfs"
	ManifestFile  = "manifest.json"
	CurrentLink   = "current"
	ImagesSubdir  = "images"
	CacheSubdir   = "cache"
	StagingPrefix = ".staging-"
)

// ErrNoImage means no image has been built yet.
var ErrNoImage = errors.New("no guest image built (run: codebench image build)")

// ErrCorrupt means an image directory does not match its manifest.
var ErrCorrupt = errors.New("guest image is corrupt")

// Artifact is one file of the image.
type Artifact struct {
	File   string `json:"file"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// LanguageInfo is one language the image can run.
type LanguageInfo struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Manifest describes a built image.
type Manifest struct {
	Schema        int            `json:"schema"`
	Hash          string         `json:"hash"`
	Created       string         `json:"created"`
	Suite         string         `json:"suite"`
	KernelPackage string         `json:"kernel_package"`
	KernelRelease string         `json:"kernel_release"`
	Kernel        Artifact       `json:"kernel"`
	Initrd        Artifact       `json:"initrd"`
	Rootfs        Artifact       `json:"rootfs"`
	RootTree      string         `json:"root_tree"`
	AgentSHA256   string         `json:"agent_sha256"`
	Modules       []string       `json:"modules"`
	Packages      []string       `json:"packages"`
	Languages     []LanguageInfo `json:"languages"`
	// TreeBytes is the root tree's size; BaseSeconds the debootstrap and
	// package install of its package set (when that was built, maybe by
	// an earlier build), BuildSeconds this build's own: from nothing, an
	// image takes about their sum.
	TreeBytes    int64   `json:"tree_bytes,omitempty"`
	BaseSeconds  float64 `json:"base_seconds,omitempty"`
	BuildSeconds float64 `json:"build_seconds,omitempty"`
}

// Image is a loaded, checked image.
type Image struct {
	Dir      string
	Manifest Manifest
}

// KernelPath and friends return absolute artifact paths.
func (i *Image) KernelPath() string { return filepath.Join(i.Dir, i.Manifest.Kernel.File) }
func (i *Image) InitrdPath() string { return filepath.Join(i.Dir, i.Manifest.Initrd.File) }
func (i *Image) RootfsPath() string { return filepath.Join(i.Dir, i.Manifest.Rootfs.File) }

// RootTreePath is the root filesystem as a directory tree.
func (i *Image) RootTreePath() string { return filepath.Join(i.Dir, i.Manifest.RootTree) }

// HasLanguage reports whether the image can run name.
func (i *Image) HasLanguage(name string) bool {
	return slices.ContainsFunc(i.Manifest.Languages, func(l LanguageInfo) bool { return l.Name == name })
}

// LanguageNames lists the languages, in manifest order.
func (i *Image) LanguageNames() []string {
	var n []string
	for _, l := range i.Manifest.Languages {
		n = append(n, l.Name)
	}
	return n
}

var hashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Validate checks the manifest on its own.
func (m *Manifest) Validate() error {
	switch {
	case m.Schema != Schema:
		return fmt.Errorf("%w: manifest schema %d, want %d", ErrCorrupt, m.Schema, Schema)
	case !hashRE.MatchString(m.Hash):
		return fmt.Errorf("%w: bad hash %q", ErrCorrupt, m.Hash)
	case len(m.Languages) == 0:
		return fmt.Errorf("%w: no languages", ErrCorrupt)
	case m.RootTree == "" || filepath.Base(m.RootTree) != m.RootTree:
		return fmt.Errorf("%w: bad root tree %q", ErrCorrupt, m.RootTree)
	}
	for _, a := range []Artifact{m.Kernel, m.Initrd, m.Rootfs} {
		if a.File == "" || filepath.Base(a.File) != a.File || !hashRE.MatchString(a.SHA256) || a.Size <= 0 {
			return fmt.Errorf("%w: bad artifact %+v", ErrCorrupt, a)
		}
	}
	return nil
}

// Load reads and checks the image in dir: the manifest must validate, name
// the directory's own hash, and every artifact must have its recorded size.
// (Full hashes are checked by Verify, which reads every byte.)
func Load(dir string) (*Image, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no manifest", ErrNoImage, dir)
	}
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, dir, err)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, err
	}
	if filepath.Base(real) != m.Hash {
		return nil, fmt.Errorf("%w: directory %s holds manifest of %s", ErrCorrupt, real, m.Hash)
	}
	for _, a := range []Artifact{m.Kernel, m.Initrd, m.Rootfs} {
		st, err := os.Stat(filepath.Join(real, a.File))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if st.Size() != a.Size {
			return nil, fmt.Errorf("%w: %s is %d bytes, manifest says %d", ErrCorrupt, a.File, st.Size(), a.Size)
		}
	}
	if _, err := os.Stat(filepath.Join(real, m.RootTree, strings.TrimPrefix(agentInTree, "/"))); err != nil {
		return nil, fmt.Errorf("%w: root tree: %v", ErrCorrupt, err)
	}
	return &Image{Dir: real, Manifest: m}, nil
}

// Verify re-hashes every artifact.
func (i *Image) Verify() error {
	for _, a := range []Artifact{i.Manifest.Kernel, i.Manifest.Initrd, i.Manifest.Rootfs} {
		sum, _, err := FileSHA256(filepath.Join(i.Dir, a.File))
		if err != nil {
			return err
		}
		if sum != a.SHA256 {
			return fmt.Errorf("%w: %s hash %s, manifest says %s", ErrCorrupt, a.File, sum, a.SHA256)
		}
	}
	return nil
}

// Current loads the image the last build marked current in dataDir.
func Current(dataDir string) (*Image, error) {
	dir := filepath.Join(dataDir, ImagesSubdir, CurrentLink)
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoImage
	}
	return Load(dir)
}

// ProfilePrefix names the link to the last image built for a language
// profile: images/profile-<key> (lang.Table.Profile gives the key).
const ProfilePrefix = "profile-"

// Resolve loads an image by hash, by directory, or for "" the last one
// built for the language profile key (an image built before profiles
// existed serves the default profile: it was built from it).
func Resolve(dataDir, ref, profile string) (*Image, error) {
	switch {
	case ref == "" && profile != "":
		dir := filepath.Join(dataDir, ImagesSubdir, ProfilePrefix+profile)
		if _, err := os.Lstat(dir); err == nil {
			return Load(dir)
		}
		if profile == "default" {
			return Current(dataDir)
		}
		return nil, fmt.Errorf("language profile %s: %w: codebench image build --languages %s", profile, ErrNoImage, profile)
	case ref == "":
		return Current(dataDir)
	case hashRE.MatchString(ref):
		return Load(filepath.Join(dataDir, ImagesSubdir, ref))
	default:
		return Load(ref)
	}
}

// ProfileImage is the last image built for a language profile.
type ProfileImage struct {
	Profile string
	Image   *Image
}

// Profiles are the images linked under profile names, by name.
func Profiles(dataDir string) []ProfileImage {
	links, _ := filepath.Glob(filepath.Join(dataDir, ImagesSubdir, ProfilePrefix+"*"))
	slices.Sort(links)
	var out []ProfileImage
	for _, l := range links {
		if img, err := Load(l); err == nil {
			out = append(out, ProfileImage{Profile: strings.TrimPrefix(filepath.Base(l), ProfilePrefix), Image: img})
		}
	}
	return out
}

// FileSHA256 hashes a file, returning the hex digest and its size.
func FileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil)), n, err
}
