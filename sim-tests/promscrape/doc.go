// Package promscrape reads what Meridian's processes expose on /metrics: the Prometheus text
// format (0.0.4) parsed into samples, sums over series, and histograms (quantiles, bounds,
// differences between two scrapes). It is what the whole-cluster tests and `meridian sim`
// measure with.
//
// It must not import testing (`meridian sim` links it) nor be imported by production code.
package promscrape
