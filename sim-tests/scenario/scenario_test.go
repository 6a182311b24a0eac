package scenario

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/sim-tests/metacluster"
)

// TestScenariosShort runs a short version of every scenario on a real local cluster (3 meta
// nodes, 2 cell servers, a gateway, 24 bots over KCP) and checks its invariants: no entity
// lost or duplicated, no client reconnect, no input dropped; and that the report is written.
// Timings are measured and reported, not asserted (make sim runs the full versions).
func TestScenariosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 processes per scenario")
	}
	bin := metacluster.Binary(t)
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			o := DefaultOptions()
			o.Scenario, o.Bots, o.Servers, o.Duration, o.World = name, 24, 2, 20*time.Second, 256
			o.Binary, o.Dir = bin, t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			rep, err := Run(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			inv := rep.Invariants
			t.Logf("%s: tick p99 %.1f ms, max/mean p50 %.2f, %.1f kbit/s per client, %d handoffs, map changes %+v, faults %+v",
				name, rep.TickMS.P99, rep.Load.MaxOverMeanP50, rep.Bandwidth.KbitPerClientP50, rep.Handoffs.Count, rep.MapChanges, rep.Faults)
			if !inv.OK {
				t.Errorf("invariants: %+v", inv)
			}
			if len(rep.Series) < 10 || len(rep.Moments) < len(Scenarios[name].Phases) {
				t.Errorf("%d samples, %d moments: the run was not measured", len(rep.Series), len(rep.Moments))
			}
			for _, f := range rep.Faults {
				if f.RecoveredS < 0 {
					t.Errorf("fault %q: never recovered", f.What)
				}
			}
			dir := t.TempDir()
			if err := WriteReport(dir, rep); err != nil {
				t.Fatal(err)
			}
			for _, f := range append([]string{"report.json", "report.md"}, rep.Pictures...) {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Error(err)
				}
			}
		})
	}
}
