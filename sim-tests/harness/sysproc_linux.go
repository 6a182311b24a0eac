//go:build linux

package harness

import "syscall"

// sysProcAttr puts a child in a process group of its own (so the harness can signal the whole
// group) and has the kernel SIGKILL it if the thread that started it dies, which in Go (no
// goroutine of the harness locks its thread) is when the harness's process dies: a crashed or
// SIGKILLed `meridian sim` leaves no cluster behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
