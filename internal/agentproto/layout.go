package agentproto

// The guest's layout, shared by the image builder and the drivers on the
// host and by the agent in the guest: the one place both sides already meet.
const (
	GuestModulesDir   = "/modules"       // in the initramfs
	GuestModulesOrder = "/modules/order" // one file name per line, load order
	GuestAgentPath    = "/sbin/codebench-agent"
	GuestJobRoot      = "/job"
	GuestRootDevice   = "/dev/vda"
)
