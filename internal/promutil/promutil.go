// Package promutil holds the one Prometheus helper that several packages need.
package promutil

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c on reg and returns it, or returns the collector already registered
// under the same descriptor, so two packages in one process (a standalone cell server embeds
// the client edge) can share a metric such as meridian_rejected_inputs_total. reg nil: c is
// returned unregistered. A conflicting registration (same name, different shape) is a
// programming error and panics, as prometheus.MustRegister does.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}
