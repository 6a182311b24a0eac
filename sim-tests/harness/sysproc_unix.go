//go:build unix && !linux

package harness

import "syscall"

// sysProcAttr puts a child in a process group of its own, so the harness can signal the whole
// group. Without Linux's parent-death signal, a harness that dies without Close leaves its
// children running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
