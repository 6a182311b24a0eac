//go:build unix && !linux

package pgtest

import "syscall"

// serverProcAttr runs the server as id (nil: as ourselves). Without Linux's parent-death
// signal, a test binary that dies before Main's end leaves the server running.
func serverProcAttr(id *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: id}
}
