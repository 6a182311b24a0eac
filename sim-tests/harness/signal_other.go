//go:build !unix

package harness

import (
	"os"
	"syscall"
)

// sysProcAttr: no process groups off Unix.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// signalGroup ends p: off Unix there are no signals to send but kill.
func signalGroup(p *os.Process, sig syscall.Signal) {
	if sig == syscall.SIGKILL {
		_ = p.Kill()
		return
	}
	if err := p.Signal(sig); err != nil {
		_ = p.Kill()
	}
}
