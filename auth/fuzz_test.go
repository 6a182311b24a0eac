package auth

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meridian-mmo/meridian/wire"
)

// Fuzz targets. Their seed corpora live in testdata/fuzz/<FuzzName>/ (so plain `go test` runs
// them as regression tests); regenerate them with
//
//	go test ./auth -run TestFuzzCorpus -args -regen-corpus
//
// and fuzz with e.g. go test ./auth -run='^$' -fuzz=FuzzVerify -fuzztime=20s.

var regenCorpus = flag.Bool("regen-corpus", false, "rewrite the fuzz seed corpora in testdata/fuzz")

// fuzzSecret signs the seeds of FuzzVerify, so that its corpus holds genuine tokens.
var fuzzSecret = []byte("meridian-fuzz-secret-0123456789ab")

// FuzzVerify verifies token at Unix time now with the fuzz secret. Verify must not panic and
// must fail with one of the sentinel errors (ErrMalformed whenever the layout does not parse);
// a token it accepts must be exactly what Mint gives for its player and expiry, unexpired at
// now, and refused under another secret.
func FuzzVerify(f *testing.F) {
	s := mustSigner(f, fuzzSecret)
	other := mustSigner(f, append(bytes.Clone(fuzzSecret), 'x'))
	f.Fuzz(func(t *testing.T, token []byte, now int64) {
		p, err := s.Verify(token, time.Unix(now, 0))
		_, exp, _, perr := parse(token)
		if perr != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("layout does not parse (%v) but Verify says %v", perr, err)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrExpired) {
				t.Fatalf("Verify: %v, not a sentinel", err)
			}
			if bytes.Contains([]byte(err.Error()), token) && len(token) > 8 {
				t.Fatalf("error %q quotes the token", err)
			}
			return
		}
		if p == 0 || uint64(p) > math.MaxInt64 {
			t.Fatalf("accepted player %d", p)
		}
		if now >= exp {
			t.Fatalf("accepted at %d a token expiring at %d", now, exp)
		}
		again, err := s.Mint(p, time.Unix(exp, 0))
		if err != nil || !bytes.Equal(again, token) {
			t.Fatalf("Verify(%q) = %d (expires %d), but Mint gives %q, %v", token, p, exp, again, err)
		}
		if q, err := other.Verify(token, time.Unix(now, 0)); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("another secret's Verify: %d, %v", q, err)
		}
	})
}

// FuzzDevPlayer: DevPlayer must not panic; it fails exactly on an empty or over-long token;
// otherwise it is stable, in [1, MaxInt64], an explicit id (below 2^62) only for the canonical
// "player-<n>", and a derived id (bit 62 set) otherwise.
func FuzzDevPlayer(f *testing.F) {
	f.Fuzz(func(t *testing.T, token []byte) {
		p, err := DevPlayer(token)
		if len(token) == 0 || len(token) > wire.MaxTokenLength {
			if !errors.Is(err, ErrMalformed) || p != 0 {
				t.Fatalf("DevPlayer(%d bytes) = %d, %v; want ErrMalformed", len(token), p, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("DevPlayer(%q): %v", token, err)
		}
		if q, _ := DevPlayer(bytes.Clone(token)); q != p {
			t.Fatalf("DevPlayer(%q) not stable: %d then %d", token, p, q)
		}
		if p == 0 || uint64(p) > math.MaxInt64 {
			t.Fatalf("DevPlayer(%q) = %d, out of range", token, p)
		}
		if p < 1<<62 {
			if want := "player-" + strconv.FormatUint(uint64(p), 10); string(token) != want {
				t.Fatalf("DevPlayer(%q) = explicit %d, but the token is not %q", token, p, want)
			}
			return
		}
		if want := wire.PlayerID(fnv1a64(token)&(1<<63-1) | 1<<62); p != want {
			t.Fatalf("DevPlayer(%q) = %#x, want derived %#x", token, uint64(p), uint64(want))
		}
		// A token the canonical form of an explicit id would have been explicit.
		if rest, ok := strings.CutPrefix(string(token), "player-"); ok {
			if n, err := strconv.ParseUint(rest, 10, 64); err == nil && n >= 1 && n < 1<<62 && strconv.FormatUint(n, 10) == rest {
				t.Fatalf("DevPlayer(%q) derived, want explicit %d", token, n)
			}
		}
	})
}

type corpusEntry struct {
	name string
	vals []any
}

func marshalSeed(vals ...any) []byte {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, v := range vals {
		switch v := v.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case int64:
			fmt.Fprintf(&b, "int64(%d)\n", v)
		default:
			panic(fmt.Sprintf("unsupported seed type %T", v))
		}
	}
	return []byte(b.String())
}

func verifySeeds(t *testing.T) []corpusEntry {
	s := mustSigner(t, fuzzSecret)
	now := int64(1_700_000_000)
	exp := time.Unix(now+24*3600, 0)
	good := mustMint(t, s, 42, exp)
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 0x01; return b }
	var seeds []corpusEntry
	add := func(name string, token []byte, now int64) {
		seeds = append(seeds, corpusEntry{name, []any{token, now}})
	}
	add("valid", good, now)
	add("valid-max-player", mustMint(t, s, math.MaxInt64, exp), now)
	add("valid-far-future", mustMint(t, s, 1, time.Unix(math.MaxInt64, 0)), math.MaxInt64-1)
	add("valid-negative-now", mustMint(t, s, 7, time.Unix(0, 0)), -1)
	add("expired-boundary", good, exp.Unix())
	add("expired", mustMint(t, s, 42, time.Unix(now-1, 0)), now)
	add("signed-player-zero", signRaw(fuzzSecret, 0, exp.Unix()), now)
	add("signed-player-too-big", signRaw(fuzzSecret, math.MaxInt64+1, exp.Unix()), now)
	add("other-secret", signRaw([]byte("another secret, 32 bytes or more"), 42, exp.Unix()), now)
	add("tampered-payload", flip(6), now)
	add("tampered-mac", flip(40), now)
	add("tampered-prefix", flip(1), now)
	add("tampered-dot", flip(signedLen), now)
	add("trailing-bits-payload", append(append(bytes.Clone(good[:signedLen-1]), 'B'), good[signedLen:]...), now)
	add("trailing-bits-mac", append(bytes.Clone(good[:tokenLen-1]), good[tokenLen-1]|1), now)
	add("padded", append(bytes.Clone(good), '='), now)
	add("truncated", good[:tokenLen-1], now)
	add("prefix-only", []byte("mt1."), now)
	add("dev-token", []byte("player-42"), now)
	add("empty", nil, now)
	return seeds
}

func devSeeds() []corpusEntry {
	var seeds []corpusEntry
	for name, tok := range map[string]string{
		"explicit-1":         "player-1",
		"explicit-max":       "player-4611686018427387903",
		"explicit-overflow":  "player-4611686018427387904",
		"uint64-overflow":    "player-18446744073709551616",
		"leading-zero":       "player-042",
		"zero":               "player-0",
		"sign":               "player-+1",
		"bare-prefix":        "player-",
		"bot":                "bot-17",
		"signed-token":       "mt1.KgAAAAAAAAAA8VNlAAAAAA.Rmlyjnm8ML88GhNzBH6Fpb6UarXJA2Sdvkv2IV8SSag",
		"binary":             "\x00\xff\xfe player-1",
		"max-length":         strings.Repeat("p", wire.MaxTokenLength),
		"over-length":        strings.Repeat("p", wire.MaxTokenLength+1),
		"empty":              "",
		"explicit-trailing":  "player-12 ",
		"explicit-non-ascii": "player-١٢",
	} {
		seeds = append(seeds, corpusEntry{name, []any{[]byte(tok)}})
	}
	return seeds
}

// TestFuzzCorpus checks that the committed seed corpora are what the seed generators produce
// (or, with -regen-corpus, rewrites them).
func TestFuzzCorpus(t *testing.T) {
	for fuzzer, seeds := range map[string][]corpusEntry{
		"FuzzVerify":    verifySeeds(t),
		"FuzzDevPlayer": devSeeds(),
	} {
		dir := filepath.Join("testdata", "fuzz", fuzzer)
		if *regenCorpus {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range seeds {
			want := marshalSeed(s.vals...)
			path := filepath.Join(dir, s.name)
			if *regenCorpus {
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: missing or stale (%v); run with -args -regen-corpus", path, err)
			}
		}
	}
}
