package cellserver

import (
	"testing"

	"github.com/meridian-mmo/meridian/wire"
)

// TestInputGapWait: inputs apply in sequence order across ticks; one that arrives ahead of a
// gap waits for it (InputGapTicks), then the gap is skipped and counted. Interactions share
// the sequence and come out in StepOutput.Interacts in that order.
func TestInputGapWait(t *testing.T) {
	w := newTestWorld(t, func(c *Config) { c.InputGapTicks = 3 })
	out := w.Step(&StepInput{Tick: 1, Joins: []Join{{Client: 1, Spawn: [2]float64{100, 100}}, {Client: 2, Spawn: [2]float64{110, 100}}}})
	target := out.Joined[1].Entity
	mv := func(seq uint32) ClientInput {
		return ClientInput{Client: 1, Input: wire.Input{Seq: seq, MoveX: 127, Action: uint8(seq)}}
	}
	ia := func(seq uint32) ClientInput {
		return ClientInput{Client: 1, Input: wire.Input{Seq: seq}, Interact: &wire.Interact{Seq: seq, Target: target, Kind: wire.InteractChat, Data: []byte("hi")}}
	}
	steps := []struct {
		inputs    []ClientInput
		seq       uint32 // LastInputSeq afterwards
		interacts []uint32
		skipped   int
	}{
		{[]ClientInput{mv(1)}, 1, nil, 0},
		{[]ClientInput{mv(3), ia(4)}, 1, nil, 0},  // 2 is missing: 3 and 4 wait
		{[]ClientInput{mv(2)}, 4, []uint32{4}, 0}, // the gap fills: 2, 3, 4 apply in order
		{[]ClientInput{ia(7), mv(6)}, 4, nil, 0},  // 5 missing
		{nil, 4, nil, 0},                          // still waiting
		{nil, 4, nil, 0},
		{nil, 7, []uint32{7}, 1},                        // InputGapTicks passed: 5 skipped
		{[]ClientInput{mv(5), ia(7), mv(8)}, 8, nil, 0}, // late and replayed ones are rejected
	}
	for i, st := range steps {
		out := w.Step(&StepInput{Tick: wire.Tick(i + 2), Inputs: st.inputs})
		if h := headerOf(t, snapshotFor(out, 1)); h.LastInputSeq != st.seq {
			t.Errorf("step %d: LastInputSeq = %d, want %d", i, h.LastInputSeq, st.seq)
		}
		var got []uint32
		for _, a := range out.Interacts {
			if a.Client != 1 || a.Interact.Target != target || string(a.Interact.Data) != "hi" {
				t.Errorf("step %d: interact %+v", i, a)
			}
			got = append(got, a.Interact.Seq)
		}
		if len(got) != len(st.interacts) || (len(got) > 0 && got[0] != st.interacts[0]) {
			t.Errorf("step %d: interacts %v, want %v", i, got, st.interacts)
		}
		if out.SkippedSeqs != st.skipped {
			t.Errorf("step %d: SkippedSeqs = %d, want %d", i, out.SkippedSeqs, st.skipped)
		}
	}
	if out := w.Step(&StepInput{Tick: 20}); out.Rejected.ReplayedInput != 0 || w.waiting != 0 {
		t.Fatalf("after: rejected %+v, waiting %d", out.Rejected, w.waiting)
	}
}
