//go:build !unix

package scenario

// selfCPUSeconds is unknown here.
func selfCPUSeconds() float64 { return -1 }
