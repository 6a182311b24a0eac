package procs

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/meridian-mmo/meridian/cellserver"
	"github.com/meridian-mmo/meridian/wire"
)

// fakeCell serves /debug/entities with whatever *h holds at the time.
func fakeCell(t *testing.T, name string, h *cellserver.Holdings) *Process {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/entities" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(h)
	}))
	t.Cleanup(srv.Close)
	return &Process{Name: name, MetricsAddr: strings.TrimPrefix(srv.URL, "http://")}
}

func TestAskCells(t *testing.T) {
	h1 := &cellserver.Holdings{Real: []wire.EntityID{1, 2}, InFlight: []wire.EntityID{2, 3}}
	h2 := &cellserver.Holdings{Real: []wire.EntityID{3}, InFlight: []wire.EntityID{}}
	held, err := AskCells(context.Background(), []*Process{fakeCell(t, "cell1", h1), fakeCell(t, "cell2", h2)})
	if err != nil {
		t.Fatal(err)
	}
	wantReal := map[wire.EntityID][]string{1: {"cell1"}, 2: {"cell1"}, 3: {"cell2"}}
	wantInFlight := map[wire.EntityID][]string{2: {"cell1"}, 3: {"cell1"}}
	if !reflect.DeepEqual(held.Real, wantReal) || !reflect.DeepEqual(held.InFlight, wantInFlight) {
		t.Fatalf("held %+v", held)
	}
	if n := held.InFlightCount(); n != 2 {
		t.Fatalf("%d in flight", n)
	}
	// Entity 2 is real and in flight on cell1 (listed once), 3 real on cell2 and in flight on cell1.
	want := map[wire.EntityID][]string{1: {"cell1"}, 2: {"cell1"}, 3: {"cell2", "cell1"}}
	if on := held.RealOrInFlight(); !reflect.DeepEqual(on, want) {
		t.Fatalf("real or in flight %v, want %v", on, want)
	}
}

// fatalTB records the first Fatalf and ends the goroutine that called it, as testing.T does.
type fatalTB struct {
	testing.TB
	fatal string
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// fatalOf runs fn with a fatalTB and returns its Fatalf message ("" if none).
func fatalOf(t *testing.T, fn func(tb testing.TB)) string {
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() { defer close(done); fn(f) }()
	<-done
	return f.fatal
}

func TestOneCopyEach(t *testing.T) {
	bots := map[wire.EntityID]bool{1: true, 2: true}
	c := &OneCopyEach{Bots: bots}
	settled := map[wire.EntityID][]string{1: {"cell1"}, 2: {"cell2"}}
	for i, round := range []struct {
		on       map[wire.EntityID][]string
		inFlight int
		done     bool
		why      string
	}{
		{settled, 0, false, "holdings stable: false"}, // the first round has nothing to agree with
		{settled, 1, false, "1 entities in flight"},
		{map[wire.EntityID][]string{1: {"cell1"}}, 0, false, "holdings stable: false"},
		{map[wire.EntityID][]string{1: {"cell1"}}, 0, false, "bot entity 2 on no server"},
		{settled, 0, false, "holdings stable: false"},
		{settled, 0, true, "2 entities held for 2 bots"},
	} {
		done, why := c.Check(t, round.on, round.inFlight)
		if done != round.done || !strings.Contains(why, round.why) {
			t.Fatalf("round %d: %v, %q; want %v, %q", i, done, why, round.done, round.why)
		}
	}

	twice := map[wire.EntityID][]string{1: {"cell1", "cell2"}, 2: {"cell2"}}
	msg := fatalOf(t, func(tb testing.TB) {
		c := &OneCopyEach{Bots: bots}
		c.Check(tb, twice, 0)
		c.Check(tb, twice, 0)
	})
	if !strings.Contains(msg, "entity 1 real on [cell1 cell2]") {
		t.Fatalf("an entity on two servers in two agreeing rounds: %q", msg)
	}
	stranger := map[wire.EntityID][]string{1: {"cell1"}, 2: {"cell2"}, 9: {"cell1"}}
	msg = fatalOf(t, func(tb testing.TB) {
		c := &OneCopyEach{Bots: bots}
		c.Check(tb, stranger, 0)
		c.Check(tb, stranger, 0)
	})
	if !strings.Contains(msg, "entity 9 real on cell1 is no bot's") {
		t.Fatalf("an entity of no bot in two agreeing rounds: %q", msg)
	}
}

// TestProcessScrape: a Process scrapes its metrics address; asking a server without
// /debug/entities for its holdings fails naming the process, the address and the status.
func TestProcessScrape(t *testing.T) {
	p := fakeCell(t, "cell1", &cellserver.Holdings{})
	if _, err := p.Scrape(context.Background()); err == nil || !strings.HasPrefix(err.Error(), "cell1: "+p.MetricsAddr+"/metrics: 404") {
		t.Fatalf("scraping a server without /metrics: %v", err)
	}
	p.MetricsAddr = strings.TrimPrefix(httptest.NewServer(http.NotFoundHandler()).URL, "http://")
	if _, err := p.Holdings(context.Background()); err == nil || !strings.HasPrefix(err.Error(), "cell1: "+p.MetricsAddr+"/debug/entities: 404") {
		t.Fatalf("holdings from a server without /debug/entities: %v", err)
	}
}
