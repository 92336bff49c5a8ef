// Package build builds a guest image (internal/image): debootstrap of a
// Debian minbase root with the languages' toolchains from the mirror the
// host's apt sources name, Debian's cloud kernel, an initramfs whose /init
// is the agent, the root as an ext4 disk and as a tree, and the manifest,
// content-addressed. Only `codebench image build` links it.
package build

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/codebench/codebench/internal/agentproto"
	"github.com/codebench/codebench/internal/image"
	"github.com/codebench/codebench/internal/lang"
)

// recipeVersion changes whenever the build steps change what they produce.
const recipeVersion = "4"

// imageRecipe changes whenever the steps after debootstrap change what they
// produce (the debootstrapped base stays cached).
const imageRecipe = "3: empty resolv.conf, the sandbox user, /etc/profile without id(1)"

// Job user inside the guest; the agent runs programs as this user.
const (
	jobUser = "runner"
	jobUID  = 1000
)

// Options configure a build.
type Options struct {
	DataDir string
	// AgentPath is the static codebench-agent binary to put in the image.
	AgentPath string
	Suite     string // Debian suite, "bookworm"
	// Mirror overrides the mirror found in the host's apt sources.
	Mirror string
	// KernelMeta is the Debian metapackage that names the kernel.
	KernelMeta string
	Languages  lang.Table
	// Profile is the key of the language profile Languages came from
	// (lang.Table.Profile): the image is linked as images/profile-<key>
	// beside images/current. Empty: no profile link.
	Profile string
	// Progress receives one line per step; nil discards.
	Progress io.Writer
}

func (o *Options) defaults() error {
	if o.DataDir == "" || o.AgentPath == "" {
		return errors.New("image: DataDir and AgentPath are required")
	}
	if o.Suite == "" {
		o.Suite = "bookworm"
	}
	if o.KernelMeta == "" {
		o.KernelMeta = "linux-image-cloud-amd64"
	}
	if o.Languages == nil {
		o.Languages = lang.Builtin()
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return nil
}

// builder carries one build's state.
type builder struct {
	Options
	start time.Time
	step  int
}

const totalSteps = 6

// StepError says which build step failed.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return "image build: " + e.Step + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

func (b *builder) run(name string, fn func() error) error {
	b.step++
	t := time.Now()
	fmt.Fprintf(b.Progress, "[%d/%d] %s ...\n", b.step, totalSteps, name)
	if err := fn(); err != nil {
		return &StepError{Step: name, Err: err}
	}
	fmt.Fprintf(b.Progress, "[%d/%d] %s done in %.1fs (total %.1fs)\n", b.step, totalSteps, name,
		time.Since(t).Seconds(), time.Since(b.start).Seconds())
	return nil
}

// Build produces the image for opts, or returns the cached one when an image
// with the same content hash exists. The hash covers every input: recipe,
// suite, package set, kernel package, agent binary and language table.
func Build(ctx context.Context, opts Options) (*image.Image, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	b := &builder{Options: opts, start: time.Now()}
	var (
		mirror, kernelPkg, kernelDeb, kernelDir, baseDir string
		agentSum                                         string
		pkgs                                             = b.packages()
	)
	if err := b.run("resolve inputs", func() (err error) {
		if mirror = b.Mirror; mirror == "" {
			if mirror, err = DebianMirror("", b.Suite); err != nil {
				return err
			}
		}
		if agentSum, _, err = image.FileSHA256(b.AgentPath); err != nil {
			return fmt.Errorf("agent binary: %w", err)
		}
		kernelPkg, err = resolveKernelPackage(ctx, b.KernelMeta)
		return err
	}); err != nil {
		return nil, err
	}
	if err := b.run("fetch kernel "+kernelPkg, func() (err error) {
		kernelDeb, kernelDir, err = b.fetchKernel(ctx, kernelPkg)
		return err
	}); err != nil {
		return nil, err
	}
	kernelSum, _, err := image.FileSHA256(kernelDeb)
	if err != nil {
		return nil, err
	}
	baseKey := hashOf("base", recipeVersion, b.Suite, strings.Join(pkgs, ","), jobUser)
	hash := hashOf("image", recipeVersion, imageRecipe, baseKey, kernelSum, agentSum, string(mustJSON(b.languageList())),
		strings.Join(GuestModules, ","))
	imgDir := filepath.Join(b.DataDir, image.ImagesSubdir, hash)
	if img, err := image.Load(imgDir); err == nil {
		fmt.Fprintf(b.Progress, "image %s is already built: reusing it\n", hash[:12])
		return img, b.markCurrent(hash)
	}
	if err := b.run("debootstrap "+b.Suite+" (cached by package set)", func() (err error) {
		baseDir, err = b.base(ctx, baseKey, mirror, pkgs)
		return err
	}); err != nil {
		return nil, err
	}

	staging := filepath.Join(b.DataDir, image.ImagesSubdir, image.StagingPrefix+hash[:12]+"-"+randHex(4))
	if err := os.MkdirAll(staging, 0o755); err != nil {
		return nil, err
	}
	defer os.RemoveAll(staging)
	m := image.Manifest{Schema: image.Schema, Hash: hash, Suite: b.Suite, KernelPackage: kernelPkg, AgentSHA256: agentSum, Packages: pkgs,
		BaseSeconds: baseSeconds(baseDir)}
	if err := b.run("initramfs", func() error {
		return b.initramfs(kernelDir, staging, &m)
	}); err != nil {
		return nil, err
	}
	if err := b.run("root filesystem", func() error {
		return b.rootfs(ctx, baseDir, staging, &m)
	}); err != nil {
		return nil, err
	}
	if err := b.run("manifest", func() error {
		return b.finish(staging, imgDir, &m)
	}); err != nil {
		return nil, err
	}
	img, err := image.Load(imgDir)
	if err != nil {
		return nil, err
	}
	return img, b.markCurrent(hash)
}

func (b *builder) packages() []string {
	return b.Languages.Packages()
}

func (b *builder) languageList() []lang.Language {
	var l []lang.Language
	for _, n := range b.Languages.Names() {
		l = append(l, b.Languages[n])
	}
	return l
}

// markCurrent links the image as the current one and as its profile's.
func (b *builder) markCurrent(hash string) error {
	links := []string{image.CurrentLink}
	if b.Profile != "" {
		links = append(links, image.ProfilePrefix+b.Profile)
	}
	for _, name := range links {
		link := filepath.Join(b.DataDir, image.ImagesSubdir, name)
		tmp := link + ".tmp-" + randHex(4)
		if err := os.Symlink(hash, tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, link); err != nil {
			return err
		}
	}
	return nil
}

func resolveKernelPackage(ctx context.Context, meta string) (string, error) {
	out, err := command(ctx, "", "apt-cache", "depends", meta)
	if err != nil {
		return "", fmt.Errorf("%w (is the apt cache up to date? run apt-get update)", err)
	}
	for _, line := range strings.Split(out, "\n") {
		if dep, ok := strings.CutPrefix(strings.TrimSpace(line), "Depends: "); ok && strings.HasPrefix(dep, "linux-image-") {
			return dep, nil
		}
	}
	return "", fmt.Errorf("apt-cache depends %s names no linux-image package", meta)
}

// fetchKernel downloads the kernel package (not installing it) and unpacks it.
func (b *builder) fetchKernel(ctx context.Context, pkg string) (deb, dir string, err error) {
	cache := filepath.Join(b.DataDir, image.CacheSubdir, "kernel")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", "", err
	}
	debs, _ := filepath.Glob(filepath.Join(cache, pkg+"_*.deb"))
	if len(debs) == 0 {
		if _, err := command(ctx, cache, "apt-get", "download", "-q", pkg); err != nil {
			return "", "", err
		}
		debs, _ = filepath.Glob(filepath.Join(cache, pkg+"_*.deb"))
		if len(debs) == 0 {
			return "", "", fmt.Errorf("apt-get download left no %s package", pkg)
		}
	}
	slices.Sort(debs)
	deb = debs[len(debs)-1]
	dir = strings.TrimSuffix(deb, ".deb")
	if _, err := os.Stat(filepath.Join(dir, "boot")); err == nil {
		return deb, dir, nil
	}
	tmp := dir + ".tmp-" + randHex(4)
	defer os.RemoveAll(tmp)
	if _, err := command(ctx, "", "dpkg-deb", "-x", deb, tmp); err != nil {
		return "", "", err
	}
	return deb, dir, os.Rename(tmp, dir)
}

// base returns a debootstrapped tree for the package set, built once and kept
// under the cache; image builds only add files to a hard-linked copy.
func (b *builder) base(ctx context.Context, key, mirror string, pkgs []string) (string, error) {
	dir := filepath.Join(b.DataDir, image.CacheSubdir, "base-"+key[:16])
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		fmt.Fprintf(b.Progress, "      reusing %s\n", dir)
		return dir, nil
	}
	_ = os.RemoveAll(dir)
	tmp := dir + ".tmp-" + randHex(4)
	defer os.RemoveAll(tmp)
	start := time.Now()
	if err := streamCommand(ctx, b.Progress, "debootstrap", "--variant=minbase", b.Suite, tmp, mirror); err != nil {
		return "", err
	}
	if err := b.install(ctx, tmp, pkgs); err != nil {
		return "", err
	}
	if _, err := command(ctx, "", "chroot", tmp, "useradd", "--uid", fmt.Sprint(jobUID), "--user-group",
		"--no-create-home", "--home-dir", agentproto.GuestJobRoot, "--shell", "/bin/sh", jobUser); err != nil {
		return "", err
	}
	// Caches and package lists are dead weight in a read-only root.
	for _, g := range []string{"var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*", "usr/share/doc/*", "usr/share/man/*", "usr/share/locale/*"} {
		matches, _ := filepath.Glob(filepath.Join(tmp, g))
		for _, m := range matches {
			_ = os.RemoveAll(m)
		}
	}
	for _, d := range []string{agentproto.GuestJobRoot, "newroot"} {
		if err := os.MkdirAll(filepath.Join(tmp, d), 0o755); err != nil {
			return "", err
		}
	}
	// The marker holds how long the base took, for the manifest.
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), []byte(fmt.Sprintf("%.1f\n", time.Since(start).Seconds())), 0o644); err != nil {
		return "", err
	}
	return dir, os.Rename(tmp, dir)
}

// install installs pkgs into the debootstrapped tree with apt, which
// resolves what debootstrap's own resolver cannot (alternatives, virtual
// packages, the configure order of forty toolchains), without
// recommends. Some maintainer scripts (the JDK's certificates) need /proc:
// it is mounted for the install and unmounted before anything else
// touches the tree.
func (b *builder) install(ctx context.Context, tree string, pkgs []string) (err error) {
	proc := filepath.Join(tree, "proc")
	if _, err := command(ctx, "", "mount", "-t", "proc", "proc", proc); err != nil {
		return err
	}
	defer func() {
		if _, uerr := command(context.WithoutCancel(ctx), "", "umount", "-l", proc); uerr != nil {
			err = errors.Join(err, fmt.Errorf("unmount the build's /proc: %w", uerr))
		}
	}()
	apt := func(args ...string) error {
		return streamCommand(ctx, b.Progress, "chroot", append([]string{tree, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-q"}, args...)...)
	}
	if err := apt("update"); err != nil {
		return err
	}
	if err := apt(append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)...); err != nil {
		return err
	}
	return apt("clean")
}

func (b *builder) initramfs(kernelDir, staging string, m *image.Manifest) error {
	releases, _ := os.ReadDir(filepath.Join(kernelDir, "lib", "modules"))
	if len(releases) != 1 {
		return fmt.Errorf("want one kernel release in %s, found %d", kernelDir, len(releases))
	}
	m.KernelRelease = releases[0].Name()
	mods, err := resolveModules(filepath.Join(kernelDir, "lib", "modules", m.KernelRelease), GuestModules)
	if err != nil {
		return err
	}
	agent, err := os.ReadFile(b.AgentPath)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	cw := &cpioWriter{w: &buf}
	for _, d := range []string{"dev", "proc", "sys", "newroot", strings.TrimPrefix(agentproto.GuestModulesDir, "/")} {
		cw.Dir(d)
	}
	cw.File("init", 0o755, agent)
	var order []string
	for _, p := range mods {
		body, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		cw.File(strings.TrimPrefix(agentproto.GuestModulesDir, "/")+"/"+filepath.Base(p), 0o644, body)
		order = append(order, filepath.Base(p))
		m.Modules = append(m.Modules, modName(filepath.Base(p)))
	}
	cw.File(strings.TrimPrefix(agentproto.GuestModulesOrder, "/"), 0o644, []byte(strings.Join(order, "\n")+"\n"))
	if err := cw.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(staging, image.InitrdFile), buf.Bytes(), 0o644); err != nil {
		return err
	}
	kernel := filepath.Join(kernelDir, "boot", "vmlinuz-"+m.KernelRelease)
	if err := copyFile(kernel, filepath.Join(staging, image.KernelFile), 0o644); err != nil {
		return err
	}
	if m.Kernel, err = artifact(staging, image.KernelFile); err != nil {
		return err
	}
	m.Initrd, err = artifact(staging, image.InitrdFile)
	return err
}

func (b *builder) rootfs(ctx context.Context, baseDir, staging string, m *image.Manifest) error {
	tree := filepath.Join(staging, "tree")
	// A hard-linked copy costs no space; files we add replace links, never
	// write through them, so the cached base stays pristine.
	if _, err := command(ctx, "", "cp", "-al", baseDir, tree); err != nil {
		return err
	}
	_ = os.Remove(filepath.Join(tree, ".complete"))
	if err := replaceWith(filepath.Join(tree, agentproto.GuestAgentPath), func(dst string) error {
		return copyFile(b.AgentPath, dst, 0o755)
	}); err != nil {
		return err
	}
	// The build host's resolver must not travel into guests: guests have
	// no DNS (docs/NETWORKING.md), and the host's resolver is not theirs.
	if err := replaceWith(filepath.Join(tree, "etc", "resolv.conf"), func(dst string) error {
		return os.WriteFile(dst, nil, 0o644)
	}); err != nil {
		return err
	}
	// A long-lived sandbox's user (agentproto.SandboxUser); the agent
	// mounts its home. Its own group, no password, bash.
	uid := fmt.Sprint(agentproto.SandboxUID)
	for file, line := range map[string]string{
		"passwd": agentproto.SandboxUser + ":x:" + uid + ":" + uid + "::" + agentproto.SandboxHome + ":/bin/bash",
		"group":  agentproto.SandboxUser + ":x:" + uid + ":",
		"shadow": agentproto.SandboxUser + ":!:19000::::::",
	} {
		if err := appendLine(filepath.Join(tree, "etc", file), line); err != nil {
			return err
		}
	}
	// Every command of a long-lived sandbox is a login shell (bash -l -c,
	// as E2B's are): Debian's /etc/profile forks id(1) for the uid, a
	// fork and exec that costs ~10 ms under gVisor. bash knows its uid.
	if err := editFile(filepath.Join(tree, "etc", "profile"), `"$(id -u)"`, `"${EUID:-$(id -u)}"`); err != nil {
		return err
	}
	table := mustJSON(b.languageList())
	if err := replaceWith(filepath.Join(tree, lang.GuestPath), func(dst string) error {
		return os.WriteFile(dst, table, 0o644)
	}); err != nil {
		return err
	}
	for _, l := range b.languageList() {
		info := image.LanguageInfo{Name: l.Name, Version: languageVersion(ctx, tree, l)}
		if info.Version == "" {
			return fmt.Errorf("language %s: neither %v nor dpkg tells its version: is it installed?", l.Name, l.Version)
		}
		m.Languages = append(m.Languages, info)
	}
	size, err := treeSize(tree)
	if err != nil {
		return err
	}
	m.TreeBytes = size
	// Room for metadata plus slack; the root is read-only, so no more.
	blocks := (size*5/4 + 64<<20) / 4096
	img := filepath.Join(staging, image.RootfsFile)
	if _, err := command(ctx, "", "mkfs.ext4", "-q", "-F", "-b", "4096", "-i", "8192", "-O", "^has_journal",
		"-L", "codebench", "-d", tree, img, fmt.Sprint(blocks)); err != nil {
		return err
	}
	// The tree stays, as the root of gVisor sandboxes.
	if err := os.Rename(tree, filepath.Join(staging, image.RootTreeDir)); err != nil {
		return err
	}
	m.RootTree = image.RootTreeDir
	m.Rootfs, err = artifact(staging, image.RootfsFile)
	return err
}

// editFile replaces every old with new in a file of the tree (replacing
// its hard link); a file without old is left as it is.
func editFile(path, old, new string) error {
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), old) {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return replaceWith(path, func(dst string) error {
		return os.WriteFile(dst, []byte(strings.ReplaceAll(string(b), old, new)), fi.Mode().Perm())
	})
}

// appendLine adds a line to a file of the tree, replacing its hard link.
func appendLine(path, line string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return replaceWith(path, func(dst string) error {
		return os.WriteFile(dst, append(old, []byte(line+"\n")...), fi.Mode().Perm())
	})
}

// languageVersion asks the tool itself (some print to stderr; some need /proc,
// which the build chroot lacks), else the version of its Debian package.
func languageVersion(ctx context.Context, tree string, l lang.Language) string {
	if len(l.Version) > 0 {
		out, err := exec.CommandContext(ctx, "chroot", append([]string{tree}, l.Version...)...).CombinedOutput()
		if line := strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0]); err == nil && line != "" {
			return line
		}
	}
	if len(l.Packages) == 0 {
		return ""
	}
	out, err := exec.CommandContext(ctx, "chroot", tree, "dpkg-query", "-W", "-f=${Version}", l.Packages[0]).Output()
	if err != nil {
		return ""
	}
	return l.Packages[0] + " " + strings.TrimSpace(string(out))
}

// baseSeconds is how long the base in dir took to build (its marker's
// content; 0 for a base built before it was recorded).
func baseSeconds(dir string) float64 {
	b, _ := os.ReadFile(filepath.Join(dir, ".complete"))
	var s float64
	_, _ = fmt.Sscan(strings.TrimSpace(string(b)), &s)
	return s
}

func (b *builder) finish(staging, imgDir string, m *image.Manifest) error {
	m.Created = time.Now().UTC().Format(time.RFC3339)
	m.BuildSeconds = time.Since(b.start).Seconds()
	if err := m.Validate(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(staging, image.ManifestFile), mustJSON(m), 0o644); err != nil {
		return err
	}
	_ = os.RemoveAll(imgDir) // a corrupt leftover with our hash
	return os.Rename(staging, imgDir)
}

func artifact(dir, file string) (image.Artifact, error) {
	sum, size, err := image.FileSHA256(filepath.Join(dir, file))
	return image.Artifact{File: file, SHA256: sum, Size: size}, err
}

func hashOf(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func mustJSON(v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err)
	}
	return b
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// replaceWith writes path through write after unlinking whatever is there, so
// a hard link into the cached base is replaced, not written through.
func replaceWith(path string, write func(string) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return write(path)
}

func treeSize(root string) (int64, error) {
	var total int64
	err := filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		total += (info.Size() + 4095) &^ 4095
		return nil
	})
	return total, err
}

// command runs a tool and returns its stdout; the error carries stderr's tail.
func command(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", name, err, tail(stderr.String(), 2000))
	}
	return stdout.String(), nil
}

// streamCommand runs a long tool, forwarding its "I:"/"E:"/"W:" lines.
func streamCommand(ctx context.Context, progress io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var last []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		n := 0
		for sc.Scan() {
			line := sc.Text()
			last = append(last, line)
			if len(last) > 20 {
				last = last[1:]
			}
			n++
			if strings.HasPrefix(line, "E:") || strings.HasPrefix(line, "W:") || n%50 == 0 {
				fmt.Fprintf(progress, "      %s\n", line)
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	err := cmd.Run()
	pw.Close()
	<-done
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, strings.Join(last, "\n"))
	}
	return nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
