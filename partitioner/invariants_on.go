//go:build invariants

package partitioner

// invariantsEnabled makes Plan check its own output (checkPlan) and panic on a violation
// (make test builds with -tags invariants, as CI does).
const invariantsEnabled = true
