//go:build !invariants

package partitioner

const invariantsEnabled = false
