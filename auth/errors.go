package auth

import "errors"

// Sentinel errors. Every error this package returns is, or wraps (with fmt.Errorf("%w: ...")),
// one of these (or, from LoadSecret, an error of package os), so callers classify failures
// with errors.Is. None of them carries the bytes of a token or of a secret.
var (
	// ErrMalformed: a token that is not exactly in the format (wrong prefix, length, separator,
	// non-canonical base64, trailing bytes), a signed token naming player 0 or a player above
	// math.MaxInt64, a development token that is empty or longer than wire.MaxTokenLength, or
	// a player outside [1, math.MaxInt64] given to Mint.
	ErrMalformed = errors.New("auth: malformed token")
	// ErrBadSignature: a well-formed token whose MAC is not the one this Signer's secret gives
	// (tampered, or minted with another secret).
	ErrBadSignature = errors.New("auth: bad token signature")
	// ErrExpired: a genuine token whose expiry is not after the time it was checked at.
	ErrExpired = errors.New("auth: token expired")
	// ErrWeakSecret: a secret shorter than MinSecretLen bytes (after trimming, for
	// LoadSecret), or a Signer not made by NewSigner.
	ErrWeakSecret = errors.New("auth: secret too short")
)
