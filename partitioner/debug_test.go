package partitioner

import (
	"os"
	"testing"
)

func TestDebugSeed(t *testing.T) {
	if os.Getenv("PDEBUG") == "" {
		t.Skip()
	}
}
