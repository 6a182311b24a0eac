package procs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/raftmeta"
)

// WaitFor calls cond every poll until it holds; once within has passed and cond still does not
// hold, it fails the test with what and cond's last word.
func WaitFor(t testing.TB, within, poll time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %s", what, within, why)
		}
		time.Sleep(poll)
	}
}

// CellsAlive is a condition for WaitFor: the partition map the meta nodes serve lists n cell
// servers alive, and also (unless nil) holds for it. Each call reads the map into *mp, for the
// caller to use once the wait is over.
func CellsAlive(ctx context.Context, meta *raftmeta.Client, n int, mp **raftmeta.Map, also func(*raftmeta.Map) (bool, string)) func() (bool, string) {
	return func() (bool, string) {
		m, err := meta.Map(ctx, raftmeta.ReadOptions{})
		if err != nil {
			return false, err.Error()
		}
		*mp = m
		alive := 0
		for _, s := range m.Servers {
			if s.Alive {
				alive++
			}
		}
		ok, why := alive == n, fmt.Sprintf("%d alive", alive)
		if also != nil {
			more, moreWhy := also(m)
			ok = ok && more
			if moreWhy != "" {
				why += ", " + moreWhy
			}
		}
		return ok, why
	}
}

// GatewayLinked is a condition for WaitFor: the gateway gw is linked to n cell servers
// (meridian_gateway_links_up) and routes by a map of version mapVersion or later
// (meridian_gateway_map_version).
func GatewayLinked(ctx context.Context, gw *Process, n int, mapVersion uint64) func() (bool, string) {
	return func() (bool, string) {
		sc, err := gw.Scrape(ctx)
		if err != nil {
			return false, err.Error()
		}
		links, version := sc.Sum("meridian_gateway_links_up"), sc.Sum("meridian_gateway_map_version")
		return links == float64(n) && version >= float64(mapVersion), fmt.Sprintf("%v links up, map version %v", links, version)
	}
}
