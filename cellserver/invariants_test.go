package cellserver

import (
	"strings"
	"testing"
)

// TestInvariantChecksCatchCorruption: the invariant checker passes on a healthy world and
// names what broke when the store, the grid or a view is corrupted behind its back.
func TestInvariantChecksCatchCorruption(t *testing.T) {
	healthy := func() *World {
		w := newTestWorld(t, func(c *Config) { c.WorldMax = [2]float64{200, 200} })
		var joins []Join
		for i := range 20 {
			joins = append(joins, Join{Client: ClientID(i + 1), Spawn: [2]float64{float64(10 * i), float64(5 * i)}})
		}
		w.Step(&StepInput{Tick: 1, Joins: joins})
		w.Step(&StepInput{Tick: 2})
		if err := w.invariantError(); err != nil {
			t.Fatalf("healthy world: %v", err)
		}
		return w
	}
	cases := []struct {
		name    string
		corrupt func(w *World)
		want    string
	}{
		{"position moved without the grid", func(w *World) { w.st.x[w.st.alive[3]] += 4000 }, "grid"},
		{"entity outside the world", func(w *World) { w.st.z[w.st.alive[0]] = w.maxZ + 1 }, "outside the world"},
		{"index points elsewhere", func(w *World) { w.st.byID[w.st.ids[w.st.alive[1]]] = w.st.alive[2] }, "indexed at row"},
		{"row twice in a view", func(w *World) {
			v := w.clients[0].log.view()
			v[len(v)-1] = v[0]
		}, "two slots"},
		{"speed hack slipped through", func(w *World) { w.st.vx[w.clients[2].row] = 10000 }, "speed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := healthy()
			tc.corrupt(w)
			err := w.invariantError()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}
