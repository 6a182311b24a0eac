// Package auth owns the formats of the session tokens a client puts in its Hello, and their
// checks: it turns a token into the wire.PlayerID the session plays as, or refuses it.
//
// # What it owns
//
//   - Signed tokens (token.go). A Signer holds a secret of at least MinSecretLen bytes; Mint
//     issues a token for a player until an expiry, Verify checks one. Whoever mints tokens (a
//     login service, the bots) and the gateways that verify them share the secret, which
//     LoadSecret reads from a file (its bytes, surrounding whitespace trimmed, used as they
//     are: e.g. `head -c 48 /dev/urandom | base64 > secret`).
//   - Development tokens (DevPlayer), for a gateway started without a secret.
//
// # Signed token format (version 1)
//
// A token is 70 bytes of ASCII:
//
//	"mt1." payload "." mac
//
// where payload is the unpadded base64url encoding (RFC 4648 §5, no '=') of 16 bytes
//
//	player:uint64le | expires:int64le
//
// (player: the wire.PlayerID, in [1, math.MaxInt64]; expires: Unix time in seconds; 22
// characters), and mac is the unpadded base64url encoding of HMAC-SHA256(secret, the 26 bytes
// "mt1." payload before the second dot) (43 characters). For example, the token of player 42
// expiring at Unix time 1700000000 begins "mt1.KgAAAAAAAAAA8VNlAAAAAA." and ends with the
// MAC under the secret in use.
//
// Verify is strict: it accepts exactly the bytes Mint produces (the exact prefix and length,
// the dots where they belong, canonical base64 only — the encoding that decodes and re-encodes
// to the same characters, so no padding, no line breaks, no non-zero trailing bits — and
// nothing after the MAC), else ErrMalformed; then it compares the MAC in constant time
// (hmac.Equal), else ErrBadSignature; then the token has expired (ErrExpired) once now ≥
// expires; a genuine token naming player 0 or a player above math.MaxInt64 is ErrMalformed.
// So a token Verify accepts is the one Mint gives for its player and expiry. A token cannot
// be revoked before it expires; keep expiries short, and change the secret to revoke all.
//
// # Development mode
//
// DevPlayer authenticates without a secret: the token "player-<n>", n a canonical decimal
// (no sign, no leading zero) in [1, 2^62 − 1], plays as player n; any other token (1 to
// wire.MaxTokenLength bytes) plays as a stable player derived from it: its 64-bit FNV-1a hash
// with bit 63 cleared and bit 62 set, so in [2^62, 2^63 − 1], never colliding with an explicit
// id. Anyone can claim any player in development mode: a gateway runs it only when no secret
// is configured, and says so in its log.
//
// # Rules
//
// The package keeps no state (a Signer is immutable and safe for concurrent use), starts no
// goroutine, reads no clock (callers pass now and the expiry) and does no I/O besides
// LoadSecret. It imports only package wire of Meridian's and the standard library. Verify and
// DevPlayer never panic, whatever the input, and never put token or secret bytes in an error.
// It does not know about sessions, accounts or passwords, and does not issue tokens to
// clients: a login service does, with Mint.
package auth
