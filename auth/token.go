package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"time"

	"github.com/meridian-mmo/meridian/wire"
)

// MinSecretLen is the fewest bytes of secret a Signer accepts.
const MinSecretLen = 32

// The signed token layout (doc.go).
const (
	tokenPrefix  = "mt1."
	payloadLen   = 16                              // player:uint64le | expires:int64le
	payloadChars = 22                              // base64.RawURLEncoding.EncodedLen(payloadLen)
	macChars     = 43                              // base64.RawURLEncoding.EncodedLen(sha256.Size)
	signedLen    = len(tokenPrefix) + payloadChars // the bytes the MAC covers
	tokenLen     = signedLen + 1 + macChars        // 70
)

var b64 = base64.RawURLEncoding

// Verify's failures, with their detail, made once (Verify allocates nothing to refuse a token).
var (
	errLength    = fmt.Errorf("%w: not %d bytes", ErrMalformed, tokenLen)
	errPrefix    = fmt.Errorf("%w: not a %q token", ErrMalformed, tokenPrefix)
	errSeparator = fmt.Errorf("%w: no separator before the MAC", ErrMalformed)
	errPayload   = fmt.Errorf("%w: payload is not canonical base64url", ErrMalformed)
	errMAC       = fmt.Errorf("%w: MAC is not canonical base64url", ErrMalformed)
	errPlayer    = fmt.Errorf("%w: player outside [1, MaxInt64]", ErrMalformed)
	errDevLength = fmt.Errorf("%w: development token not 1 to %d bytes", ErrMalformed, wire.MaxTokenLength)
	errNoSigner  = fmt.Errorf("%w: Signer not made by NewSigner", ErrWeakSecret)
)

// Signer mints and verifies signed tokens with one secret. It is immutable and safe for
// concurrent use; make it with NewSigner (a zero or nil Signer refuses every call with
// ErrWeakSecret). Printing it does not print the secret.
type Signer struct {
	secret []byte
}

// NewSigner returns a Signer over a copy of secret, or ErrWeakSecret if secret is shorter
// than MinSecretLen bytes.
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("%w: %d bytes, need at least %d", ErrWeakSecret, len(secret), MinSecretLen)
	}
	return &Signer{secret: bytes.Clone(secret)}, nil
}

// String hides the secret (from %v and %+v, of a Signer or a *Signer).
func (Signer) String() string { return "auth.Signer{secret: redacted}" }

// GoString hides the secret from %#v.
func (s Signer) GoString() string { return s.String() }

func (s *Signer) ok() bool { return s != nil && len(s.secret) >= MinSecretLen }

// Mint returns the token of player p that expires at expires (truncated to whole seconds;
// Unix time, so any time.Time from year -292277022657 to 292277026596), in the format of
// doc.go. A player outside [1, math.MaxInt64] is ErrMalformed.
func (s *Signer) Mint(p wire.PlayerID, expires time.Time) ([]byte, error) {
	if !s.ok() {
		return nil, errNoSigner
	}
	if p == 0 || uint64(p) > math.MaxInt64 {
		return nil, fmt.Errorf("%w: player %d outside [1, %d]", ErrMalformed, uint64(p), int64(math.MaxInt64))
	}
	var payload [payloadLen]byte
	binary.LittleEndian.PutUint64(payload[0:8], uint64(p))
	binary.LittleEndian.PutUint64(payload[8:16], uint64(expires.Unix()))
	tok := make([]byte, 0, tokenLen)
	tok = append(tok, tokenPrefix...)
	tok = b64.AppendEncode(tok, payload[:])
	mac := s.mac(tok)
	tok = append(tok, '.')
	tok = b64.AppendEncode(tok, mac[:])
	return tok, nil
}

// Verify returns the player a token minted by this Signer's secret names, if it has not
// expired at now. It accepts only the exact bytes Mint produces: anything else is
// ErrMalformed; a token whose MAC this secret does not give, ErrBadSignature; a genuine token
// with now ≥ its expiry, ErrExpired (doc.go gives the order of the checks). It never panics,
// and allocates only to report an expiry.
func (s *Signer) Verify(token []byte, now time.Time) (wire.PlayerID, error) {
	if !s.ok() {
		return 0, errNoSigner
	}
	p, exp, mac, err := parse(token)
	if err != nil {
		return 0, err
	}
	want := s.mac(token[:signedLen])
	if !hmac.Equal(mac[:], want[:]) {
		return 0, ErrBadSignature
	}
	if now.Unix() >= exp {
		return 0, fmt.Errorf("%w at %s", ErrExpired, time.Unix(exp, 0).UTC().Format(time.RFC3339))
	}
	if p == 0 || p > math.MaxInt64 {
		return 0, errPlayer
	}
	return wire.PlayerID(p), nil
}

// mac is HMAC-SHA256(secret, signed).
func (s *Signer) mac(signed []byte) [sha256.Size]byte {
	h := hmac.New(sha256.New, s.secret)
	h.Write(signed)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// parse splits a token into its player, expiry and MAC, accepting only the canonical
// encoding (it checks the layout, not the MAC or the values).
func parse(token []byte) (player uint64, expires int64, mac [sha256.Size]byte, err error) {
	switch {
	case len(token) != tokenLen:
		return 0, 0, mac, errLength
	case string(token[:len(tokenPrefix)]) != tokenPrefix:
		return 0, 0, mac, errPrefix
	case token[signedLen] != '.':
		return 0, 0, mac, errSeparator
	}
	var payload [payloadLen]byte
	if !decodeCanonical(payload[:], token[len(tokenPrefix):signedLen]) {
		return 0, 0, mac, errPayload
	}
	if !decodeCanonical(mac[:], token[signedLen+1:]) {
		return 0, 0, mac, errMAC
	}
	player = binary.LittleEndian.Uint64(payload[0:8])
	expires = int64(binary.LittleEndian.Uint64(payload[8:16]))
	return player, expires, mac, nil
}

// decodeCanonical decodes src, unpadded base64url, into exactly len(dst) bytes, and reports
// whether it did and src is the one encoding of them (the decoder alone would skip line
// breaks and ignore non-zero trailing bits). len(src) is b64.EncodedLen(len(dst)), at most
// macChars.
func decodeCanonical(dst, src []byte) bool {
	var buf [sha256.Size]byte // ≥ DecodedLen(len(src)) for every src parse passes
	n, err := b64.Decode(buf[:], src)
	if err != nil || n != len(dst) {
		return false
	}
	copy(dst, buf[:n])
	var re [macChars]byte
	b64.Encode(re[:], dst)
	return bytes.Equal(re[:len(src)], src)
}

// MaxExplicitDevPlayer is the largest player a development token "player-<n>" names; players
// derived from other tokens are above it.
const MaxExplicitDevPlayer = 1<<62 - 1

// DevPlayer authenticates a token in development mode, without a secret: "player-<n>", n a
// canonical decimal (digits only, no leading zero) in [1, MaxExplicitDevPlayer], is player n;
// any other token is the player whose id is its 64-bit FNV-1a hash with bit 63 cleared and
// bit 62 set (in [2^62, math.MaxInt64]), the same every time. An empty token or one longer than
// wire.MaxTokenLength is ErrMalformed. Anyone can claim any player this way: use it only
// where that is acceptable (a gateway without a secret). It never panics.
func DevPlayer(token []byte) (wire.PlayerID, error) {
	if len(token) == 0 || len(token) > wire.MaxTokenLength {
		return 0, errDevLength
	}
	if n, ok := explicitDevPlayer(token); ok {
		return wire.PlayerID(n), nil
	}
	h := fnv.New64a()
	h.Write(token)
	return wire.PlayerID(h.Sum64()&^(1<<63) | 1<<62), nil
}

// explicitDevPlayer parses "player-<n>" with n canonical and in [1, MaxExplicitDevPlayer].
func explicitDevPlayer(token []byte) (uint64, bool) {
	const prefix = "player-"
	if !bytes.HasPrefix(token, []byte(prefix)) {
		return 0, false
	}
	digits := token[len(prefix):]
	if len(digits) == 0 || digits[0] == '0' {
		return 0, false
	}
	var n uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (MaxExplicitDevPlayer-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// LoadSecret reads a secret from the file at path: its bytes with surrounding whitespace
// (spaces, tabs, line breaks) trimmed. Fewer than MinSecretLen bytes left is ErrWeakSecret.
func LoadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: token secret: %w", err)
	}
	secret := bytes.TrimSpace(b)
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("%w: %s holds %d bytes (whitespace trimmed), need at least %d", ErrWeakSecret, path, len(secret), MinSecretLen)
	}
	return bytes.Clone(secret), nil
}
