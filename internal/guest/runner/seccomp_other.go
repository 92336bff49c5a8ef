//go:build !(linux && amd64)

package runner

import "errors"

func restrictThread() error {
	return errors.New("the job seccomp filter is built for linux/amd64 only")
}
