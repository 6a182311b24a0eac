// Package simtests is the home of Meridian's simulations: bots (a load generator over real
// KCP), scenarios, the cluster harness, invariant checks and reports. Production packages
// must not import anything under sim-tests/; only cmd/meridian (for `meridian bots` and
// `meridian sim`) and tests do.
package simtests
