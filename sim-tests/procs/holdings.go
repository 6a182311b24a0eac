package procs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"testing"

	"github.com/meridian-mmo/meridian/cellserver"
	"github.com/meridian-mmo/meridian/sim-tests/promscrape"
	"github.com/meridian-mmo/meridian/wire"
)

// Holdings asks a cell server what it holds (/debug/entities).
func (p *Process) Holdings(ctx context.Context) (cellserver.Holdings, error) {
	var h cellserver.Holdings
	err := promscrape.Get(ctx, p.MetricsAddr, "/debug/entities", func(body io.Reader) error {
		return json.NewDecoder(body).Decode(&h)
	})
	if err != nil {
		return h, fmt.Errorf("%s: %w", p.Name, err)
	}
	return h, nil
}

// Held is what several cell servers hold, asked one after the other (so not at one instant):
// for each entity, the names of the servers it is real on, and of those it is in flight on.
type Held struct {
	Real     map[wire.EntityID][]string
	InFlight map[wire.EntityID][]string
}

// AskCells asks each cell server in turn what it holds.
func AskCells(ctx context.Context, cells []*Process) (Held, error) {
	held := Held{Real: map[wire.EntityID][]string{}, InFlight: map[wire.EntityID][]string{}}
	for _, c := range cells {
		h, err := c.Holdings(ctx)
		if err != nil {
			return Held{}, err
		}
		for _, e := range h.Real {
			held.Real[e] = append(held.Real[e], c.Name)
		}
		for _, e := range h.InFlight {
			held.InFlight[e] = append(held.InFlight[e], c.Name)
		}
	}
	return held, nil
}

// InFlightCount is how many entities the servers reported in flight.
func (h Held) InFlightCount() int {
	n := 0
	for _, on := range h.InFlight {
		n += len(on)
	}
	return n
}

// RealOrInFlight lists, for each entity, the servers it is real on and then those it is in
// flight on but not real on.
func (h Held) RealOrInFlight() map[wire.EntityID][]string {
	out := map[wire.EntityID][]string{}
	for e, on := range h.Real {
		out[e] = slices.Clone(on)
	}
	for e, on := range h.InFlight {
		for _, s := range on {
			if !slices.Contains(out[e], s) {
				out[e] = append(out[e], s)
			}
		}
	}
	return out
}

// OneCopyEach checks, one round of samples after another, that the cell servers hold the
// bots' entities and nothing else, each on exactly one server. The servers are sampled one
// after the other, not at one instant: a handoff or migration between two samples could show
// an entity on both, or on neither. So a state counts only when two consecutive rounds agree
// and nothing is in flight; a duplicate in such a state is real.
type OneCopyEach struct {
	Bots map[wire.EntityID]bool // the bots' entities
	prev map[wire.EntityID][]string
}

// Check takes one round: on, the servers each entity was found on, and inFlight, how many
// entities were in flight. It returns true once the state counts and every bot's entity is on
// exactly one server and nothing else is held; otherwise why not. It fails the test at once if
// a state that counts has an entity on two servers, or one that is no bot's.
func (c *OneCopyEach) Check(t testing.TB, on map[wire.EntityID][]string, inFlight int) (bool, string) {
	t.Helper()
	stable := reflect.DeepEqual(on, c.prev)
	c.prev = on
	if inFlight > 0 || !stable {
		return false, fmt.Sprintf("%d entities in flight; holdings stable: %v", inFlight, stable)
	}
	for e, servers := range on {
		if len(servers) > 1 {
			t.Fatalf("entity %d real on %v in two agreeing rounds of samples", e, servers)
		}
		if !c.Bots[e] {
			t.Fatalf("entity %d real on %s is no bot's", e, servers[0])
		}
	}
	for e := range c.Bots {
		if len(on[e]) == 0 {
			return false, fmt.Sprintf("bot entity %d on no server", e)
		}
	}
	return len(on) == len(c.Bots), fmt.Sprintf("%d entities held for %d bots", len(on), len(c.Bots))
}
