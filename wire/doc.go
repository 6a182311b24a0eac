// Package wire owns every byte format Meridian puts on a wire: the client protocol's framing,
// its messages, bit-packing, quantisation of positions and angles, and the per-client delta
// snapshot codec. docs/wire.md specifies the same formats to the bit for implementers in other
// languages; TestDocExamples keeps its worked examples in step with this code.
//
// # What it does
//
//   - Framing (frame.go): a frame is length:uint16le | type:uint8 | payload. AppendFrame,
//     BeginFrame/EndFrame build frames in place; SplitFrame parses a buffer; FrameReader reads a
//     stream (a KCP session) with a bounded buffer.
//   - Messages (messages.go, interact.go): Hello, Welcome, Input, Ack, Ping, Pong, Disconnect,
//     Interact and Interaction, each with an AppendFrame method, a Validate method and a DecodeX
//     function; DecodeMessage dispatches on the type byte.
//   - Snapshots (snapshot.go): SnapshotEncoder / AppendSnapshot write a client's view as records
//     against a baseline view the client acknowledged; DecodeSnapshot applies them. An unchanged
//     or constant-velocity entity costs one bit. ViewRing keeps the views of the last
//     BaselineWindow ticks on either side.
//   - Bits (bits.go): BitWriter / BitReader, MSB-first, with the prefix codes the snapshot uses.
//   - Quantisation (quant.go): metres and radians to the integers the wire carries.
//   - Peer link (peer.go): the messages between cell servers (and gateways) over TCP, framed
//     length:uint32le | type:uint8 | payload: hello, migrate (a zstd-compressed block of
//     EntityRecords: a cell's entities moving to another server), handoff and its ack, a
//     session's input, ack, leave and snapshot frame relayed between its home and its entity's
//     owner, ghosts (peer_ghost.go), and a gateway's join and its refusal and interactions
//     between entities with their acks, the view of a client's entity its old owner sends
//     ahead of its handoff, and a gateway's drop of a stale copy of a session's entity
//     (peer_gateway.go; gateways use ids from GatewayIDBase).
//     PeerReader reads a stream with a bounded buffer.
//
// # Testing
//
// Besides unit tests: a property test of the delta codec over random view traces and a lossy,
// reordering link (TestSnapshotDeltaProperty); fuzz targets FuzzDecodeSnapshot, FuzzSplitFrame,
// FuzzFrameReader, FuzzDecodeMessage, FuzzDecodePeer, FuzzPeerReader and FuzzEntityBlockRaw
// with seed corpora in testdata/fuzz (regenerate with
// go test ./wire -run TestFuzzCorpus -args -regen-corpus); and BenchmarkSnapshot over the
// 30 s trace in testdata/snapshot_trace.txt (regenerate with
// go test ./wire -run TestTraceReproducible -args -regen-trace).
//
// # Rules
//
// The package imports no other package of Meridian's, and nothing outside the standard library
// but klauspost/compress/zstd (for migration blocks). It
// does no I/O beyond reading frames from an io.Reader, reads no clock, starts no goroutine and
// uses no global random source: every function is a deterministic function of its arguments.
// Decoders never panic, whatever the input; they bound every allocation by the limits in
// types.go (never by a length read from the input) and wrap the sentinel errors of errors.go
// with context, so callers test them with errors.Is. Message and snapshot encoders never panic
// either, and are allocation-free once their destination buffers have grown.
//
// Decoders are strict: they accept exactly the canonical encoding that the encoders produce
// (shortest prefix code, zero padding, no trailing bytes, no redundant records), so a decoded
// value re-encodes to the same bytes — except a migration's zstd block, where any valid zstd
// encoding of the canonical record block is accepted (the decoded records are canonical).
package wire
