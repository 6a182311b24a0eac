package procs

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/meridian-mmo/meridian/raftmeta"
)

func TestCellsAlive(t *testing.T) {
	var alive atomic.Int32 // how many of the two servers the fake meta node reports alive
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/map" {
			http.NotFound(w, r)
			return
		}
		m := raftmeta.Map{Version: 7, Servers: []raftmeta.Server{{ID: 1}, {ID: 2}}}
		for i := range int(alive.Load()) {
			m.Servers[i].Alive = true
		}
		_ = json.NewEncoder(w).Encode(m)
	}))
	defer srv.Close()
	meta := raftmeta.NewClient([]string{srv.URL}, nil)
	var mp *raftmeta.Map
	asked := 0
	cond := CellsAlive(context.Background(), meta, 2, &mp, func(m *raftmeta.Map) (bool, string) {
		asked++
		return m.Version == 7, "version 7"
	})
	alive.Store(1)
	if ok, why := cond(); ok || why != "1 alive, version 7" || mp == nil || asked != 1 {
		t.Fatalf("one alive: %v, %q, map %v, also asked %d times", ok, why, mp, asked)
	}
	alive.Store(2)
	if ok, why := cond(); !ok || why != "2 alive, version 7" {
		t.Fatalf("both alive: %v, %q", ok, why)
	}
	if ok, why := CellsAlive(context.Background(), meta, 2, &mp, nil)(); !ok || why != "2 alive" {
		t.Fatalf("without also: %v, %q", ok, why)
	}
}

func TestGatewayLinked(t *testing.T) {
	var links atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "meridian_gateway_links_up %d\nmeridian_gateway_map_version 9\n", links.Load())
	}))
	defer srv.Close()
	gw := &Process{Name: "gateway", MetricsAddr: strings.TrimPrefix(srv.URL, "http://")}
	linked := GatewayLinked(context.Background(), gw, 2, 9)
	links.Store(1)
	if ok, why := linked(); ok || why != "1 links up, map version 9" {
		t.Fatalf("one link: %v, %q", ok, why)
	}
	links.Store(2)
	if ok, _ := linked(); !ok {
		t.Fatal("two links, map version 9: not linked")
	}
	if ok, _ := GatewayLinked(context.Background(), gw, 2, 10)(); ok {
		t.Fatal("linked though routing by map version 9 < 10")
	}
}
