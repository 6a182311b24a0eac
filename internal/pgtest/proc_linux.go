package pgtest

import "syscall"

// serverProcAttr runs the server as id (nil: as ourselves) and has the kernel send it SIGQUIT,
// an immediate shutdown, if the test binary dies first.
func serverProcAttr(id *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: id, Pdeathsig: syscall.SIGQUIT}
}
