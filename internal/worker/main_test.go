package worker_test

import (
	"os"
	"testing"

	"github.com/codebench/codebench/internal/testenv"
)

// TestMain lets the QEMU driver re-execute this test binary as its jail helper.
func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
