//go:build !invariants

package cellserver

const invariantsEnabled = false
