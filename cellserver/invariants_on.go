//go:build invariants

package cellserver

// invariantsEnabled turns on checkInvariants after every Step (make test builds with
// -tags invariants, as CI does).
const invariantsEnabled = true
