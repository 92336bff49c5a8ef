package gvisor

import (
	"github.com/codebench/codebench/internal/sandbox"
)

// The OCI runtime spec, as much of it as a sandbox needs (runtime-spec
// 1.0; runsc reads it from the bundle's config.json).
type (
	ociConfig struct {
		Version  string   `json:"ociVersion"`
		Process  process  `json:"process"`
		Root     root     `json:"root"`
		Hostname string   `json:"hostname"`
		Mounts   []mount  `json:"mounts"`
		Linux    linuxCfg `json:"linux"`
	}
	process struct {
		Terminal     bool         `json:"terminal"`
		User         user         `json:"user"`
		Args         []string     `json:"args"`
		Env          []string     `json:"env"`
		Cwd          string       `json:"cwd"`
		Capabilities capabilities `json:"capabilities"`
		Rlimits      []rlimit     `json:"rlimits"`
	}
	user struct {
		UID uint32 `json:"uid"`
		GID uint32 `json:"gid"`
	}
	capabilities struct {
		Bounding    []string `json:"bounding"`
		Effective   []string `json:"effective"`
		Permitted   []string `json:"permitted"`
		Inheritable []string `json:"inheritable"`
	}
	rlimit struct {
		Type string `json:"type"`
		Hard uint64 `json:"hard"`
		Soft uint64 `json:"soft"`
	}
	root struct {
		Path     string `json:"path"`
		Readonly bool   `json:"readonly"`
	}
	mount struct {
		Destination string   `json:"destination"`
		Type        string   `json:"type"`
		Source      string   `json:"source"`
		Options     []string `json:"options,omitempty"`
	}
	linuxCfg struct {
		Namespaces  []namespace `json:"namespaces"`
		CgroupsPath string      `json:"cgroupsPath,omitempty"`
		Resources   *resources  `json:"resources,omitempty"`
	}
	resources struct {
		Memory *memoryResources `json:"memory,omitempty"`
		Pids   *pidsResources   `json:"pids,omitempty"`
		CPU    *cpuResources    `json:"cpu,omitempty"`
	}
	// cpuResources is a CPU bandwidth limit: quota per period, in µs.
	cpuResources struct {
		Quota  int64  `json:"quota"`
		Period uint64 `json:"period"`
	}
	memoryResources struct {
		Limit int64 `json:"limit"`
	}
	pidsResources struct {
		Limit int64 `json:"limit"`
	}
	namespace struct {
		Type string `json:"type"`
	}
)

// A sandbox's host cgroup allows the guest's memory plus this much for the
// Sentry and gofer, and this many host tasks (the Sentry's threads and,
// under systrap, its stub processes, which grow with the job's).
const (
	sandboxOverheadMB = 256
	sandboxPids       = 1024
)

// agentCaps are what the agent, root inside the sandbox, needs: mount its
// cgroups, own and remove the job's files, switch to the job user, set
// limits, kill the job's processes. The job runs as the unprivileged user
// and has none of them.
var agentCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
	"CAP_SYS_ADMIN", "CAP_SYS_RESOURCE",
}

// ociSpec is the bundle of one sandbox: the image's root tree, read-only;
// tmpfs for /tmp, /job and /dev/shm with the sizes a VM has; no devices but
// gVisor's own; its own namespaces, network included (runsc --network=none
// leaves it only loopback).
func ociSpec(spec sandbox.Spec) ociConfig {
	nosuid := []string{"nosuid", "nodev"}
	return ociConfig{
		Version: "1.0.2",
		Process: process{
			Args: agentArgs,
			Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cwd:  "/",
			Capabilities: capabilities{
				Bounding: agentCaps, Effective: agentCaps, Permitted: agentCaps, Inheritable: []string{},
			},
			Rlimits: []rlimit{{Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 4096}},
		},
		Root:     root{Path: spec.RootDir, Readonly: true},
		Hostname: "codebench",
		Mounts: []mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: nosuid},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "nodev", "noexec", "ro"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: append([]string{"mode=1777", "size=64m"}, nosuid...)},
			{Destination: "/job", Type: "tmpfs", Source: "tmpfs", Options: append([]string{"mode=0755", "size=128m"}, nosuid...)},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: append([]string{"mode=1777", "size=16m"}, nosuid...)},
		},
		Linux: linuxCfg{Namespaces: []namespace{{"pid"}, {"network"}, {"ipc"}, {"uts"}, {"mount"}}},
	}
}
