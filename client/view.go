package client

import (
	"time"

	"github.com/meridian-mmo/meridian/wire"
)

// Entity is one entity of the interpolated view, in world units (metres, radians).
type Entity struct {
	ID      wire.EntityID
	X, Y, Z float64
	Yaw     float64
	Kind    uint8
	Action  uint8
}

// Interpolated returns the world as it should be drawn at local time now: InterpolationDelay
// behind the newest snapshot, blending positions linearly between the two decoded views that
// bracket that moment (the Valve / Fiedler "snapshot interpolation" model). Entities only in the
// newer view appear at their position there; entities already gone are not returned. The view
// is appended to dst.
func (c *Client) Interpolated(now time.Time, dst []Entity) []Entity {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.count == 0 {
		return dst
	}
	hz := float64(c.welcome.TickHz)
	if hz == 0 {
		hz = 20
	}
	newest := &c.history[c.head]
	// The render moment, expressed as a fractional server tick.
	renderTick := float64(newest.tick) + now.Sub(newest.arrived).Seconds()*hz - c.cfg.InterpolationDelay.Seconds()*hz
	if renderTick >= float64(newest.tick) {
		return appendView(dst, newest.slots, nil, 0)
	}
	// Walk back to the newest view at or before renderTick; its successor is the one after.
	after := newest
	for i := 1; i < c.count; i++ {
		d := &c.history[(c.head-i+len(c.history))%len(c.history)]
		if float64(d.tick) <= renderTick {
			f := (renderTick - float64(d.tick)) / float64(after.tick-d.tick)
			return appendView(dst, after.slots, d.slots, f)
		}
		after = d
	}
	return appendView(dst, after.slots, nil, 0) // older than all history: the oldest view
}

// appendView appends the entities of to, blended from their state in from (if present there)
// by fraction f of the way from from to to.
func appendView(dst []Entity, to, from []wire.ViewSlot, f float64) []Entity {
	var prev map[wire.EntityID]*wire.EntityState
	if from != nil {
		prev = make(map[wire.EntityID]*wire.EntityState, len(from))
		for i := range from {
			if from[i].ID != 0 {
				prev[from[i].ID] = &from[i].State
			}
		}
	}
	for i := range to {
		s := &to[i]
		if s.ID == 0 {
			continue
		}
		e := Entity{
			ID: s.ID, Kind: s.State.Kind, Action: s.State.Action,
			X: wire.DequantisePos(s.State.X), Y: wire.DequantisePos(s.State.Y), Z: wire.DequantisePos(s.State.Z),
			Yaw: wire.DequantiseYaw(s.State.Yaw),
		}
		if p, ok := prev[s.ID]; ok {
			e.X = lerp(wire.DequantisePos(p.X), e.X, f)
			e.Y = lerp(wire.DequantisePos(p.Y), e.Y, f)
			e.Z = lerp(wire.DequantisePos(p.Z), e.Z, f)
		}
		dst = append(dst, e)
	}
	return dst
}

func lerp(a, b, f float64) float64 { return a + (b-a)*f }
