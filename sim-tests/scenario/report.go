package scenario

// Report is what one scenario run measured and checked (report.json; DESIGN.md §6). Times are
// seconds since the bots started unless said otherwise; figures that could not be measured are
// -1.
type Report struct {
	Scenario     string  `json:"scenario"`
	Seed         uint64  `json:"seed"`
	Bots         int     `json:"bots"`
	Servers      int     `json:"servers"`
	DurationS    float64 `json:"duration_s"`
	Partitioning string  `json:"partitioning"` // "dynamic" or "static"
	PGURL        bool    `json:"postgresql"`   // the cluster persisted to PostgreSQL

	TickMS     TickStats      `json:"tick_ms"`
	Load       LoadStats      `json:"load"`
	Bandwidth  BandwidthStats `json:"bandwidth"`
	Handoffs   HandoffStats   `json:"handoffs"`
	MapChanges MapChanges     `json:"map_changes"`
	Invariants Invariants     `json:"invariants"`
	// Seams are what a player would see of the borders: entities blinking out of the view.
	Seams SeamStats `json:"seams"`
	// CPU is what each part of the local cluster cost: on one machine the bots, the gateway,
	// the cell servers and the meta nodes share the cores, and this says which one a run ran
	// out of.
	CPU CPUStats `json:"cpu"`

	// Phases are the scenario's phases as they ran (a crowd converging, a boss fight, ...).
	Phases []Phase `json:"phases"`
	// Faults are what the scenario broke, and when.
	Faults []Fault `json:"faults,omitempty"`
	// Series has one sample per second.
	Series []Sample `json:"series"`
	// Moments are the partition map and the crowd at key moments (drawn as pictures).
	Moments []Moment `json:"moments"`
	// Limits says, for a person, what limited the run if anything did (the bots falling behind,
	// a server over its tick budget, the machine's CPU), from what was measured.
	Limits []string `json:"limits,omitempty"`
	// Pictures are the files written beside report.json, relative to it.
	Pictures []string `json:"pictures,omitempty"`
}

// TickStats are tick durations in milliseconds over the measured part of the run (after the
// bots connected): overall (all servers' ticks together) and per server (by server id).
type TickStats struct {
	P50       float64             `json:"p50"`
	P99       float64             `json:"p99"`
	Max       float64             `json:"max"` // an upper bound: the top histogram bucket's bound
	PerServer map[string]TickStat `json:"per_server"`
}

// TickStat is one server's tick durations, milliseconds.
type TickStat struct {
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
	Ticks int64   `json:"ticks"`
}

// LoadStats: load is each live server's real entities; the imbalance is max/mean over the live
// servers, sampled every second after the crowd formed (the scenario says when).
type LoadStats struct {
	MaxOverMeanP50 float64 `json:"max_over_mean_p50"`
	MaxOverMeanMax float64 `json:"max_over_mean_max"`
	// SecondsToBalance: from the crowd forming until max/mean first stayed ≤ 1.10 for 3
	// samples in a row; -1 if it never did.
	SecondsToBalance float64 `json:"seconds_to_balance"`
}

// BandwidthStats: downstream kbit/s per client (what each bot received, headers of our framing
// included, KCP/UDP overhead not), over the measured part of the run.
type BandwidthStats struct {
	KbitPerClientP50 float64 `json:"kbit_per_client_p50"`
	KbitPerClientP99 float64 `json:"kbit_per_client_p99"`
}

// HandoffStats: handoffs between servers and how long the entity was not simulated
// (meridian_transfer_frozen_ticks, as milliseconds at 20 Hz; an upper bucket bound).
type HandoffStats struct {
	Count        int64   `json:"count"`
	LatencyMSP99 float64 `json:"latency_ms_p99"`
}

// MapChanges counts the partition map's changes the leader made (applied or two-phase started).
type MapChanges struct {
	Splits int64 `json:"splits"`
	Merges int64 `json:"merges"`
	Shifts int64 `json:"shifts"`
	Moves  int64 `json:"moves"`
}

// SeamStats are what the bots' clients saw of the borders over the measured part of the run
// (client.Stats, summed over the bots).
type SeamStats struct {
	// Flickers: entities that left a client's view and were back within client.FlickerTicks
	// ticks (a border or a handoff showing through).
	Flickers uint64 `json:"flickers"`
	// FlickersPerClientMinute is Flickers per bot per minute.
	FlickersPerClientMinute float64 `json:"flickers_per_client_minute"`
	// TickRegressions: snapshots whose tick did not increase (dropped by the client).
	TickRegressions uint64 `json:"tick_regressions"`
	// BaselineMisses: snapshots against a baseline the client did not hold (dropped).
	BaselineMisses uint64 `json:"baseline_misses"`
	// Snapshots: snapshots the clients received; FullSnapshots of them were not deltas (a
	// session's first, and the first from each server a handoff moved it to).
	Snapshots     uint64 `json:"snapshots"`
	FullSnapshots uint64 `json:"full_snapshots"`
}

// CPUStats are the cores each part of the cluster used on average over the measured part of the
// run: CPU seconds (user + system) over wall seconds. The children report their own
// process_cpu_seconds_total; the sim process (the bots' KCP clients, and the measuring) is read
// with getrusage. A killed process counts until its last scrape. -1: not measured.
type CPUStats struct {
	MachineCores int                `json:"machine_cores"`
	Bots         float64            `json:"bots"`    // the sim process
	Gateway      float64            `json:"gateway"` // the gateway
	Cells        float64            `json:"cells"`   // the cell servers together
	PerCell      map[string]float64 `json:"per_cell"`
	Meta         float64            `json:"meta"`  // the meta nodes together
	Total        float64            `json:"total"` // all of the above
}

// Invariants are checked at the end of the run; OK is true when each holds.
type Invariants struct {
	// EntitiesLost: bots whose entity no live server holds (real or in flight) at the end.
	EntitiesLost int `json:"entities_lost"`
	// EntitiesDuplicated: entities real on more than one server at the end.
	EntitiesDuplicated int `json:"entities_duplicated"`
	// ClientReconnects: bot sessions that ended before the scenario ended them (each would
	// have to reconnect).
	ClientReconnects int `json:"client_reconnects"`
	// InputsDropped: input sequence numbers servers skipped (meridian_input_seqs_skipped_total)
	// plus inputs never acknowledged at the end.
	InputsDropped int64 `json:"inputs_dropped"`
	OK            bool  `json:"ok"`
	// Notes explain a failed invariant (which entity, which bot), for a person.
	Notes []string `json:"notes,omitempty"`
}

// Phase is a stretch of the scenario.
type Phase struct {
	Name   string  `json:"name"`
	StartS float64 `json:"start_s"`
	EndS   float64 `json:"end_s"`
}

// Fault is something the scenario broke.
type Fault struct {
	AtS  float64 `json:"at_s"`
	What string  `json:"what"` // "SIGKILL cell server 2", "SIGKILL meta leader 3"
	// RecoveredS: seconds until the cluster served everyone again (every bot's entity real on a
	// live server; for a meta leader, writes accepted again); -1 if it never did.
	RecoveredS float64 `json:"recovered_s"`
}

// Sample is one second of the run.
type Sample struct {
	T float64 `json:"t"`
	// Servers by id: tick p99 and p50 of that second (ms), real entities, cells owned.
	Servers     map[string]ServerSample `json:"servers"`
	MaxOverMean float64                 `json:"max_over_mean"` // -1: no live server
	Bots        int                     `json:"bots"`          // sessions open
	MapVersion  uint64                  `json:"map_version"`
}

// ServerSample is one server in one second.
type ServerSample struct {
	TickP50MS float64 `json:"tick_p50_ms"`
	TickP99MS float64 `json:"tick_p99_ms"`
	Entities  int     `json:"entities"`
	Cells     int     `json:"cells"`
	Alive     bool    `json:"alive"`
}

// Moment is the partition map and where the bots were, at a named moment.
type Moment struct {
	Label string  `json:"label"` // "start", "crowd formed", "boss fight", "dispersed", "after the kill"
	T     float64 `json:"t"`
	// Cells as the map had them: bounds [x0, z0, x1, z1] and owner.
	Cells []MomentCell `json:"cells"`
	// Crowd is the bots' positions (x, z metres).
	Crowd [][2]float64 `json:"crowd"`
	// World is [x0, z0, x1, z1].
	World [4]float64 `json:"world"`
}

// MomentCell is a cell at a moment.
type MomentCell struct {
	ID     uint64     `json:"id"`
	Bounds [4]float64 `json:"bounds"`
	Owner  uint64     `json:"owner"`
}

// Compare is report.json of a --compare run: the same scenario, seed and bots, once with each
// partitioning.
type Compare struct {
	Dynamic *Report `json:"dynamic"`
	Static  *Report `json:"static"`
}
