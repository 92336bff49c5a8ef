package agentproto

// The guest's layout, shared by the image builder and the drivers on the
// host and by the agent in the guest: the one place both sides already meet.
const (
	GuestModulesDir   = "/modules"       // in the initramfs
	GuestModulesOrder = "/modules/order" // one file name per line, load order
	GuestAgentPath    = "/sbin/codebench-agent"
	GuestJobRoot      = "/job"
	GuestRootDevice   = "/dev/vda"

	// A long-lived sandbox's user (E2B's templates have the same): the
	// image has the account; the agent mounts a tmpfs for its home.
	SandboxUser     = "user"
	SandboxUID      = 1002
	SandboxHomeRoot = "/home"
	SandboxHome     = "/home/user"
)
