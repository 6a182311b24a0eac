package scenario

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/meridian-mmo/meridian/wire"
)

// A Scenario is a crowd's script: phases that each give every bot a behaviour for a share of
// the run, and faults injected at a point of it.
type Scenario struct {
	Name        string
	Description string
	// Phases run in order; their Share of the duration adds up to 1.
	Phases []PhaseSpec
	// Formed is the phase from whose start the crowd counts as formed (load balance is judged
	// from there; "" = the first).
	Formed string
	// Fault (optional) happens at FaultAt (a share of the duration, from the start).
	Fault   FaultKind
	FaultAt float64
	// FlashJoin: the bots all dial at once (DialWorkers = bots) instead of 32 at a time.
	FlashJoin bool
}

// PhaseSpec is one phase of a scenario.
type PhaseSpec struct {
	Name     string
	Share    float64 // of the duration
	Behavior string  // bots.ParseBehavior's names
	// InteractEvery: how often each bot interacts with another in its view (0: never), with
	// InteractKind (0: chat).
	InteractEvery time.Duration
	InteractKind  wire.InteractKind
}

// FaultKind is what a scenario breaks.
type FaultKind string

const (
	NoFault    FaultKind = ""
	KillServer FaultKind = "server-kill" // SIGKILL the cell server with the most entities
	KillLeader FaultKind = "leader-kill" // SIGKILL the metadata service's Raft leader
)

// hotspotPhases: a crowd converges on the world's centre, fights a world boss there (attacks
// on each other, one every 2 s each), then disperses.
func hotspotPhases() []PhaseSpec {
	return []PhaseSpec{
		{Name: "converge", Share: 0.4, Behavior: "gather:0.5,0.5,0.08"},
		{Name: "boss fight", Share: 0.35, Behavior: "gather:0.5,0.5,0.05", InteractEvery: 2 * time.Second, InteractKind: wire.InteractAttack},
		{Name: "disperse", Share: 0.25, Behavior: "wander"},
	}
}

// Scenarios are the scenarios `meridian sim` runs, by name.
var Scenarios = map[string]Scenario{
	"hotspot": {Name: "hotspot", Description: "a crowd converges on one point, fights a world boss there, then disperses",
		Phases: hotspotPhases(), Formed: "boss fight"},
	"migration": {Name: "migration", Description: "the crowd gathers in the west, then walks across the world to the east",
		Phases: []PhaseSpec{
			{Name: "gather west", Share: 0.35, Behavior: "gather:0.2,0.5,0.08"},
			{Name: "walk east", Share: 0.45, Behavior: "gather:0.8,0.5,0.08"},
			{Name: "settle", Share: 0.2, Behavior: "gather:0.8,0.5,0.12", InteractEvery: 3 * time.Second},
		}, Formed: "gather west"},
	"flash-crowd": {Name: "flash-crowd", Description: "every bot joins at once, straight into a hotspot",
		Phases: []PhaseSpec{
			{Name: "rush", Share: 0.5, Behavior: "gather:0.5,0.5,0.1", InteractEvery: 3 * time.Second},
			{Name: "stay", Share: 0.5, Behavior: "gather:0.5,0.5,0.1", InteractEvery: 3 * time.Second},
		}, Formed: "stay", FlashJoin: true},
	"uniform": {Name: "uniform", Description: "bots wander everywhere",
		Phases: []PhaseSpec{{Name: "wander", Share: 1, Behavior: "wander", InteractEvery: 3 * time.Second}}},
	"leader-kill": {Name: "leader-kill", Description: "a hotspot, with the metadata service's Raft leader SIGKILLed while the crowd forms",
		Phases: hotspotPhases(), Formed: "boss fight", Fault: KillLeader, FaultAt: 0.3},
	"server-kill": {Name: "server-kill", Description: "a hotspot, with the busiest cell server SIGKILLed during the boss fight",
		Phases: hotspotPhases(), Formed: "boss fight", Fault: KillServer, FaultAt: 0.55},
}

// Names lists the scenarios, sorted.
func Names() []string {
	var out []string
	for n := range Scenarios {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Lookup finds a scenario by name.
func Lookup(name string) (Scenario, error) {
	s, ok := Scenarios[name]
	if !ok {
		return Scenario{}, fmt.Errorf("scenario: unknown scenario %q (want one of %s)", name, strings.Join(Names(), ", "))
	}
	return s, nil
}
