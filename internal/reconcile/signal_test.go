package reconcile

import "syscall"

var syscallSignal0 = syscall.Signal(0)
