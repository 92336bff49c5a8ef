//go:build tools

// Package tools pins the tc-redirect-tap CNI plugin's version.
package tools

import _ "github.com/awslabs/tc-redirect-tap/cmd/tc-redirect-tap"
