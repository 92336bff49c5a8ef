// This module only pins and builds awslabs' tc-redirect-tap CNI plugin
// (make cni): it is not part of the codebench module.
module github.com/codebench/codebench/tools/tc-redirect-tap

go 1.22

require github.com/awslabs/tc-redirect-tap v0.0.0-20211025175357-e30dfca224c2

require (
	github.com/containernetworking/cni v1.0.1 // indirect
	github.com/containernetworking/plugins v1.0.1 // indirect
	github.com/hashicorp/errwrap v1.0.0 // indirect
	github.com/hashicorp/go-multierror v1.1.0 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/vishvananda/netlink v1.1.1-0.20210330154013-f5de75959ad5 // indirect
	github.com/vishvananda/netns v0.0.0-20210104183010-2eb08e3e575f // indirect
	golang.org/x/sys v0.0.0-20210809222454-d867a43fc93e // indirect
)
