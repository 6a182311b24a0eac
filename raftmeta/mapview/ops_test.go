package mapview

import (
	"errors"
	"strings"
	"testing"

	"github.com/meridian-mmo/meridian/raftmeta"
)

func TestMergePair(t *testing.T) {
	q := quadMap() // 1 | 3 on the left (x<8192), 2 | 4 on the right
	tr := troubleMap()
	for _, tc := range []struct {
		name      string
		m         raftmeta.Map
		cell      raftmeta.CellID
		low, high raftmeta.CellID
		err       string
	}{
		{"low leaf", q, 1, 1, 3, ""},
		{"high leaf", q, 3, 1, 3, ""},
		{"right column", q, 4, 2, 4, ""},
		{"sibling split", tr, 2, 0, 0, "cell 2's sibling is split into cells 3, 4: merge those first"},
		{"deep pair", tr, 4, 3, 4, ""},
		{"pair under the low side", tr, 5, 1, 5, ""},
		{"whole world", singleMap(), 1, 0, 0, "cell 1 is the whole world"},
		{"unknown cell", q, 42, 0, 0, "cell 42: no such cell"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			low, high, err := MergePair(tc.m, tc.cell)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if low.ID != tc.low || high.ID != tc.high {
				t.Errorf("pair = %d, %d; want %d, %d", low.ID, high.ID, tc.low, tc.high)
			}
			if low.Epoch == 0 || high.Epoch == 0 {
				t.Error("pair cells lack their epochs")
			}
		})
	}
	if _, _, err := MergePair(q, 42); !errors.Is(err, ErrNoCell) {
		t.Errorf("unknown cell: %v is not ErrNoCell", err)
	}
}

func TestMergePairTopLevelSplitSibling(t *testing.T) {
	// Cell 2 is the high half of the root and a leaf; its sibling (the root's low side) is split.
	b := newBuilder(0, 0, 100, 100)
	two := b.split(1, raftmeta.AxisX, 50)
	b.split(1, raftmeta.AxisZ, 50)
	if _, _, err := MergePair(b.done(), two); err == nil || !strings.Contains(err.Error(), "cells 1, 3") {
		t.Fatalf("err = %v", err)
	}
}

func TestSplitPoint(t *testing.T) {
	wide := raftmeta.Cell{Bounds: raftmeta.Rect{0, 100, 1000, 300}}
	tall := raftmeta.Cell{Bounds: raftmeta.Rect{-400, -1000, -200, 1000}}
	square := raftmeta.Cell{Bounds: raftmeta.Rect{0, 0, 64, 64}}
	for _, tc := range []struct {
		c    raftmeta.Cell
		axis raftmeta.Axis
		want raftmeta.Axis
		at   float64
	}{
		{wide, "", raftmeta.AxisX, 500},
		{tall, "", raftmeta.AxisZ, 0},
		{square, "", raftmeta.AxisX, 32},
		{wide, raftmeta.AxisZ, raftmeta.AxisZ, 200},
		{tall, raftmeta.AxisX, raftmeta.AxisX, -300},
	} {
		axis, at, err := SplitPoint(tc.c, tc.axis)
		if err != nil || axis != tc.want || at != tc.at {
			t.Errorf("SplitPoint(%v, %q) = %q, %v, %v; want %q, %v", tc.c.Bounds, tc.axis, axis, at, err, tc.want, tc.at)
		}
	}
	if _, _, err := SplitPoint(wide, "y"); err == nil {
		t.Error("axis y accepted")
	}
}

func TestFind(t *testing.T) {
	m := quadMap()
	if c, ok := FindCell(m, 4); !ok || c.ID != 4 || c.Owner != 2 {
		t.Errorf("FindCell(4) = %+v, %v", c, ok)
	}
	if _, ok := FindCell(m, 9); ok {
		t.Error("FindCell(9) found")
	}
	if s, ok := FindServer(m, 2); !ok || s.ID != 2 {
		t.Errorf("FindServer(2) = %+v, %v", s, ok)
	}
	if _, ok := FindServer(m, 3); ok {
		t.Error("FindServer(3) found")
	}
}
