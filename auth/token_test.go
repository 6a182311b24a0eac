package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/wire"
)

var testSecret = []byte("meridian-test-secret-0123456789abcdef") // 37 bytes

func mustSigner(t testing.TB, secret []byte) *Signer {
	t.Helper()
	s, err := NewSigner(secret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustMint(t testing.TB, s *Signer, p wire.PlayerID, exp time.Time) []byte {
	t.Helper()
	tok, err := s.Mint(p, exp)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// signRaw builds a token over any 16-byte payload, signed with secret: what a minter that
// does not check its values would produce.
func signRaw(secret []byte, player uint64, expires int64) []byte {
	var payload [16]byte
	binary.LittleEndian.PutUint64(payload[0:8], player)
	binary.LittleEndian.PutUint64(payload[8:16], uint64(expires))
	tok := append([]byte("mt1."), base64.RawURLEncoding.EncodeToString(payload[:])...)
	m := hmac.New(sha256.New, secret)
	m.Write(tok)
	tok = append(tok, '.')
	return append(tok, base64.RawURLEncoding.EncodeToString(m.Sum(nil))...)
}

var (
	t0  = time.Unix(1_700_000_000, 0)
	exp = t0.Add(24 * time.Hour)
)

func TestRoundTrip(t *testing.T) {
	s := mustSigner(t, testSecret)
	for _, p := range []wire.PlayerID{1, 2, 42, 1 << 32, 1<<62 - 1, 1 << 62, math.MaxInt64} {
		for _, e := range []time.Time{exp, time.Unix(math.MaxInt64, 0), time.Unix(1<<40, 0)} {
			tok := mustMint(t, s, p, e)
			if len(tok) != tokenLen || !bytes.HasPrefix(tok, []byte("mt1.")) || tok[26] != '.' {
				t.Fatalf("Mint(%d) = %q: not the layout", p, tok)
			}
			if !bytes.Equal(tok, signRaw(testSecret, uint64(p), e.Unix())) {
				t.Fatalf("Mint(%d) = %q, independent encoding %q", p, tok, signRaw(testSecret, uint64(p), e.Unix()))
			}
			got, err := s.Verify(tok, t0)
			if err != nil || got != p {
				t.Fatalf("Verify(Mint(%d)) = %d, %v", p, got, err)
			}
		}
	}
}

// TestGolden pins the format for implementers elsewhere (a login service in another language);
// the expected token was computed independently (Python's hmac, hashlib and base64).
func TestGolden(t *testing.T) {
	s := mustSigner(t, []byte("0123456789abcdef0123456789abcdef"))
	tok := mustMint(t, s, 42, time.Unix(1_700_000_000, 0))
	const want = "mt1.KgAAAAAAAAAA8VNlAAAAAA.Rmlyjnm8ML88GhNzBH6Fpb6UarXJA2Sdvkv2IV8SSag"
	if string(tok) != want {
		t.Fatalf("Mint = %q, want %q", tok, want)
	}
	// doc.go's example prefix.
	if !strings.HasPrefix(want, "mt1.KgAAAAAAAAAA8VNlAAAAAA.") {
		t.Fatal("doc.go's example is stale")
	}
}

func TestMintRejectsPlayer(t *testing.T) {
	s := mustSigner(t, testSecret)
	for _, p := range []wire.PlayerID{0, math.MaxInt64 + 1, math.MaxUint64} {
		if tok, err := s.Mint(p, exp); !errors.Is(err, ErrMalformed) || tok != nil {
			t.Errorf("Mint(%d) = %q, %v; want ErrMalformed", p, tok, err)
		}
	}
}

func TestNewSigner(t *testing.T) {
	for _, n := range []int{0, 1, MinSecretLen - 1} {
		if s, err := NewSigner(bytes.Repeat([]byte{'k'}, n)); !errors.Is(err, ErrWeakSecret) || s != nil {
			t.Errorf("NewSigner(%d bytes) = %v, %v; want ErrWeakSecret", n, s, err)
		}
	}
	secret := bytes.Repeat([]byte{'k'}, MinSecretLen)
	s := mustSigner(t, secret)
	tok := mustMint(t, s, 7, exp)
	secret[0] = 'x' // the Signer holds its own copy
	if p, err := s.Verify(tok, t0); err != nil || p != 7 {
		t.Fatalf("after the caller changed its secret: Verify = %d, %v", p, err)
	}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, v := range []any{s, *s} {
			if out := fmt.Sprintf(f, v); strings.Contains(out, "kkkk") || strings.Contains(out, "107") {
				t.Errorf("Sprintf(%q) shows the secret: %s", f, out)
			}
		}
	}
}

func TestUnmadeSigner(t *testing.T) {
	good := mustMint(t, mustSigner(t, testSecret), 1, exp)
	for _, s := range []*Signer{nil, {}, {secret: []byte("short")}} {
		if _, err := s.Mint(1, exp); !errors.Is(err, ErrWeakSecret) {
			t.Errorf("%v.Mint: %v, want ErrWeakSecret", s, err)
		}
		if _, err := s.Verify(good, t0); !errors.Is(err, ErrWeakSecret) {
			t.Errorf("%v.Verify: %v, want ErrWeakSecret", s, err)
		}
		// An empty secret's MAC is forgeable: it must not verify either.
		if _, err := s.Verify(signRaw(nil, 1, exp.Unix()), t0); err == nil {
			t.Errorf("%v.Verify accepted a token signed with an empty key", s)
		}
	}
}

func TestWrongSecret(t *testing.T) {
	a := mustSigner(t, testSecret)
	b := mustSigner(t, append(bytes.Clone(testSecret), '!'))
	tok := mustMint(t, a, 5, exp)
	if _, err := b.Verify(tok, t0); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("Verify with another secret: %v, want ErrBadSignature", err)
	}
}

// TestTampered changes each byte of a token in turn to every other byte value: each change
// must be refused, and changes within the payload or MAC to other base64url characters that
// keep the encoding canonical are ErrBadSignature.
func TestTampered(t *testing.T) {
	s := mustSigner(t, testSecret)
	tok := mustMint(t, s, 123456, exp)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range tok {
		for ci := range 256 {
			c := byte(ci)
			if byte(c) == tok[i] {
				continue
			}
			bad := bytes.Clone(tok)
			bad[i] = byte(c)
			p, err := s.Verify(bad, t0)
			switch {
			case err == nil:
				t.Fatalf("byte %d → %q: accepted as player %d", i, c, p)
			case !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature):
				t.Fatalf("byte %d → %q: %v", i, c, err)
			}
			inBody := i >= 4 && i != signedLen
			_, _, _, perr := parse(bad)
			if inBody && strings.IndexByte(alphabet, byte(c)) >= 0 && perr == nil && !errors.Is(err, ErrBadSignature) {
				t.Fatalf("byte %d → %q (canonical): %v, want ErrBadSignature", i, c, err)
			}
		}
	}
}

func TestTamperedPayload(t *testing.T) {
	s := mustSigner(t, testSecret)
	tok := mustMint(t, s, 1000, exp)
	// Another player's payload under this token's MAC, and a later expiry.
	for _, forged := range [][]byte{signRaw(testSecret, 1001, exp.Unix()), signRaw(testSecret, 1000, exp.Unix()+3600)} {
		bad := append(bytes.Clone(forged[:signedLen]), tok[signedLen:]...)
		if _, err := s.Verify(bad, t0); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%q: %v, want ErrBadSignature", bad, err)
		}
	}
	// A MAC of the right bytes with another key, and an all-zero MAC.
	for _, mac := range [][]byte{signRaw([]byte("other"), 1000, exp.Unix())[signedLen:], []byte("." + strings.Repeat("A", macChars))} {
		bad := append(bytes.Clone(tok[:signedLen]), mac...)
		if _, err := s.Verify(bad, t0); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%q: %v, want ErrBadSignature", bad, err)
		}
	}
}

func TestExpiry(t *testing.T) {
	s := mustSigner(t, testSecret)
	e := time.Unix(1_800_000_000, 0)
	tok := mustMint(t, s, 9, e)
	for _, c := range []struct {
		now time.Time
		ok  bool
	}{
		{e.Add(-time.Hour), true},
		{e.Add(-time.Second), true},
		{e.Add(-time.Nanosecond), true},
		{e, false},
		{e.Add(time.Nanosecond), false},
		{e.Add(time.Hour), false},
	} {
		p, err := s.Verify(tok, c.now)
		if c.ok && (err != nil || p != 9) {
			t.Errorf("now = expiry%+v: %d, %v; want player 9", c.now.Sub(e), p, err)
		}
		if !c.ok && !errors.Is(err, ErrExpired) {
			t.Errorf("now = expiry%+v: %d, %v; want ErrExpired", c.now.Sub(e), p, err)
		}
	}
	// Expiries are whole seconds: Mint truncates.
	if a, b := mustMint(t, s, 9, e.Add(999*time.Millisecond)), tok; !bytes.Equal(a, b) {
		t.Errorf("sub-second expiry not truncated: %q vs %q", a, b)
	}
	// Far past and far future expiries.
	if _, err := s.Verify(mustMint(t, s, 9, time.Unix(math.MinInt64, 0)), t0); !errors.Is(err, ErrExpired) {
		t.Errorf("MinInt64 expiry: %v", err)
	}
	if _, err := s.Verify(mustMint(t, s, 9, time.Unix(math.MaxInt64, 0)), time.Unix(math.MaxInt64-1, 0)); err != nil {
		t.Errorf("MaxInt64 expiry: %v", err)
	}
}

func TestSignedPlayerOutOfRange(t *testing.T) {
	s := mustSigner(t, testSecret)
	for _, p := range []uint64{0, math.MaxInt64 + 1, math.MaxUint64} {
		if _, err := s.Verify(signRaw(testSecret, p, exp.Unix()), t0); !errors.Is(err, ErrMalformed) {
			t.Errorf("signed player %d: %v, want ErrMalformed", p, err)
		}
	}
	// The MAC is checked first: an unsigned player 0 is a bad signature.
	bad := signRaw([]byte("not the secret"), 0, exp.Unix())
	if _, err := s.Verify(bad, t0); !errors.Is(err, ErrBadSignature) {
		t.Errorf("player 0 with a wrong MAC: %v, want ErrBadSignature", err)
	}
}

// TestNonCanonical: encodings that a lenient base64 decoder would accept as the same bytes.
func TestNonCanonical(t *testing.T) {
	s := mustSigner(t, testSecret)
	tok := mustMint(t, s, 77, exp)
	payload, mac := string(tok[4:signedLen]), string(tok[signedLen+1:])
	// Non-zero trailing bits: the payload's last character carries 2 data bits and 4 zero bits,
	// the MAC's 4 data bits and 2 zero bits. Set the padding bits.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	withLast := func(s string, bits int) string {
		v := strings.IndexByte(alphabet, s[len(s)-1])
		return s[:len(s)-1] + string(alphabet[v|bits])
	}
	std := base64.StdEncoding
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	cases := map[string]string{
		"payload trailing bits": "mt1." + withLast(payload, 0x1) + "." + mac,
		"payload trailing bit4": "mt1." + withLast(payload, 0x8) + "." + mac,
		"mac trailing bits":     "mt1." + payload + "." + withLast(mac, 0x1),
		"mac trailing bit2":     "mt1." + payload + "." + withLast(mac, 0x2),
		"padded mac":            "mt1." + payload + "." + mac + "=",
		"padded payload":        "mt1." + payload + "==." + mac,
		"padded, shorter mac":   "mt1." + payload + "." + mac[:macChars-1] + "=",
		"std alphabet payload":  "mt1." + std.EncodeToString(raw)[:22] + "." + mac,
		"line break in payload": "mt1." + payload[:10] + "\n" + payload[10:21] + "." + mac,
		"line break in mac":     "mt1." + payload + "." + mac[:20] + "\r" + mac[20:42],
		"upper-case prefix":     "MT1." + payload + "." + mac,
		"other version":         "mt2." + payload + "." + mac,
		"no prefix":             payload + "." + mac + "xxxx",
		"dot moved":             "mt1." + payload[:21] + "." + payload[21:] + mac,
		"space":                 "mt1." + payload + "." + mac[:42] + " ",
		"trailing newline":      "mt1." + payload + "." + mac + "\n",
		"trailing NUL":          "mt1." + payload + "." + mac + "\x00",
		"leading space":         " mt1." + payload + "." + mac[:42],
	}
	if !strings.ContainsAny(std.EncodeToString(raw), "+/") {
		delete(cases, "std alphabet payload") // the same as the url alphabet for these bytes
	}
	for name, bad := range cases {
		if _, err := s.Verify([]byte(bad), t0); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s (%q): %v, want ErrMalformed", name, bad, err)
		}
	}
}

func TestTruncated(t *testing.T) {
	s := mustSigner(t, testSecret)
	tok := mustMint(t, s, 77, exp)
	for i := range tok {
		if _, err := s.Verify(tok[:i], t0); !errors.Is(err, ErrMalformed) {
			t.Errorf("first %d bytes: %v, want ErrMalformed", i, err)
		}
		if _, err := s.Verify(tok[i+1:], t0); !errors.Is(err, ErrMalformed) {
			t.Errorf("without the first %d bytes: %v, want ErrMalformed", i+1, err)
		}
	}
	if _, err := s.Verify(append(bytes.Clone(tok), tok...), t0); !errors.Is(err, ErrMalformed) {
		t.Errorf("twice: %v, want ErrMalformed", err)
	}
	if _, err := s.Verify(nil, t0); !errors.Is(err, ErrMalformed) {
		t.Errorf("nil: %v, want ErrMalformed", err)
	}
}

func TestVerifyAllocs(t *testing.T) {
	s := mustSigner(t, testSecret)
	bad := bytes.Clone(mustMint(t, s, 77, exp))
	bad[30] ^= 1
	n := testing.AllocsPerRun(100, func() { _, _ = s.Verify(bad[:40], t0) })
	if n != 0 {
		t.Errorf("refusing a malformed token allocates %v times", n)
	}
}

// fnv1a64 is FNV-1a 64 written out, to check DevPlayer against.
func fnv1a64(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

func TestDevPlayerExplicit(t *testing.T) {
	for tok, want := range map[string]wire.PlayerID{
		"player-1":                   1,
		"player-9":                   9,
		"player-10":                  10,
		"player-1234567":             1234567,
		"player-4611686018427387903": 1<<62 - 1,
	} {
		if p, err := DevPlayer([]byte(tok)); err != nil || p != want {
			t.Errorf("DevPlayer(%q) = %d, %v; want %d", tok, p, err, want)
		}
	}
}

func TestDevPlayerDerived(t *testing.T) {
	for _, tok := range []string{
		"bot-0", "bot-1", "alice", "x", "player-0", "player-01", "player-007", "player-", "player-+1",
		"player--1", "player-1 ", " player-1", "player-1\n", "player-1x", "Player-1", "player-١",
		"player-4611686018427387904", "player-9223372036854775807", "player-18446744073709551615",
		"player-18446744073709551616", "player-99999999999999999999999", "\x00", strings.Repeat("z", wire.MaxTokenLength),
		"mt1.KgAAAAAAAAAA8VNlAAAAAA.Rmlyjnm8ML88GhNzBH6Fpb6UarXJA2Sdvkv2IV8SSag",
	} {
		p, err := DevPlayer([]byte(tok))
		if err != nil {
			t.Fatalf("DevPlayer(%q): %v", tok, err)
		}
		want := wire.PlayerID(fnv1a64([]byte(tok))&(1<<63-1) | 1<<62)
		if p != want || p>>62 != 1 {
			t.Errorf("DevPlayer(%q) = %#x, want %#x (bit 62 set, bit 63 clear)", tok, uint64(p), uint64(want))
		}
		if again, _ := DevPlayer([]byte(tok)); again != p {
			t.Errorf("DevPlayer(%q) not stable: %d then %d", tok, p, again)
		}
	}
	// Known answer: FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c.
	if p, _ := DevPlayer([]byte("a")); p != 0x6f63dc4c8601ec8c {
		t.Errorf(`DevPlayer("a") = %#x, want 0x6f63dc4c8601ec8c`, uint64(p))
	}
	// Different tokens, different players (for these).
	seen := map[wire.PlayerID]string{}
	for i := range 10000 {
		tok := "bot-" + strconv.Itoa(i)
		p, _ := DevPlayer([]byte(tok))
		if prev, dup := seen[p]; dup {
			t.Fatalf("%q and %q are both player %d", prev, tok, p)
		}
		seen[p] = tok
	}
}

func TestDevPlayerLength(t *testing.T) {
	for _, tok := range [][]byte{nil, {}, bytes.Repeat([]byte{'a'}, wire.MaxTokenLength+1), bytes.Repeat([]byte{'1'}, 1000)} {
		if p, err := DevPlayer(tok); !errors.Is(err, ErrMalformed) || p != 0 {
			t.Errorf("DevPlayer(%d bytes) = %d, %v; want ErrMalformed", len(tok), p, err)
		}
	}
	long := append([]byte("player-1"), bytes.Repeat([]byte{' '}, wire.MaxTokenLength-8)...)
	if _, err := DevPlayer(long); err != nil {
		t.Errorf("DevPlayer(%d bytes): %v", len(long), err)
	}
}

func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secret := "s3cr3t s3cr3t s3cr3t s3cr3t s3cr3t!" // inner spaces are kept
	got, err := LoadSecret(write("ok", "\n  \t"+secret+"\r\n\n"))
	if err != nil || string(got) != secret {
		t.Fatalf("LoadSecret = %q, %v; want %q", got, err, secret)
	}
	if got, err := LoadSecret(write("exact", strings.Repeat("k", MinSecretLen))); err != nil || len(got) != MinSecretLen {
		t.Fatalf("LoadSecret(%d bytes) = %q, %v", MinSecretLen, got, err)
	}
	for name, content := range map[string]string{
		"empty": "", "blank": " \n\t\n", "short": strings.Repeat("k", MinSecretLen-1) + "\n",
		"padded short": "   " + strings.Repeat("k", MinSecretLen-3) + "   ",
	} {
		if _, err := LoadSecret(write(name, content)); !errors.Is(err, ErrWeakSecret) {
			t.Errorf("%s: %v, want ErrWeakSecret", name, err)
		}
	}
	if _, err := LoadSecret(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrWeakSecret) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	// A loaded secret makes a Signer that agrees with one made from the same bytes.
	a := mustSigner(t, got)
	if _, err := a.Verify(mustMint(t, mustSigner(t, []byte(secret)), 3, exp), t0); err != nil {
		t.Fatal(err)
	}
}
