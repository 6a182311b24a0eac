//go:build unix

package scenario

import "syscall"

// selfCPUSeconds is the CPU time (user + system) this process has used; -1 where unknown.
func selfCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
