package wire

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func TestBitWriterMSBFirst(t *testing.T) {
	var w BitWriter
	w.WriteBits(0b1, 1)
	w.WriteBits(0b01, 2)
	w.WriteBits(0b11111, 5) // first byte: 1 01 11111
	w.WriteBits(0xABC, 12)  // 1010 1011 1100
	w.WriteBits(0, 0)
	if got := w.BitLen(); got != 20 {
		t.Fatalf("BitLen = %d, want 20", got)
	}
	got := w.Flush()
	want := []byte{0b10111111, 0xAB, 0xC0}
	if !bytes.Equal(got, want) {
		t.Fatalf("bytes = %08b, want %08b", got, want)
	}
}

func TestBitWriterAppendsToDst(t *testing.T) {
	var w BitWriter
	w.Reset([]byte{0xEE})
	w.WriteBits(0xFF, 4) // only the low 4 bits count
	w.WriteBits(0x1234_5678_9ABC_DEF0, 64)
	got := w.Flush()
	want := []byte{0xEE, 0xF1, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF, 0x00}
	if !bytes.Equal(got, want) {
		t.Fatalf("bytes = % x, want % x", got, want)
	}
	if w.BitLen() != 72 {
		t.Fatalf("BitLen = %d, want 72 after Flush", w.BitLen())
	}
}

type field struct {
	v uint64
	n int
}

func randomFields(rng *rand.Rand, count int) []field {
	fs := make([]field, count)
	for i := range fs {
		n := rng.IntN(65)
		if rng.IntN(4) == 0 {
			n = []int{0, 1, 7, 8, 9, 31, 32, 33, 56, 57, 63, 64}[rng.IntN(12)]
		}
		v := rng.Uint64()
		if n < 64 {
			v &= 1<<n - 1
		}
		fs[i] = field{v, n}
	}
	return fs
}

func TestBitsRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var w BitWriter
	var r BitReader
	for iter := 0; iter < 2000; iter++ {
		fs := randomFields(rng, rng.IntN(40))
		prefix := make([]byte, rng.IntN(3))
		w.Reset(prefix)
		total := 0
		for _, f := range fs {
			// Write garbage above the low n bits: it must be ignored.
			w.WriteBits(f.v|rng.Uint64()<<f.n, f.n) // x << 64 == 0
			total += f.n
		}
		if w.BitLen() != total {
			t.Fatalf("BitLen = %d, want %d", w.BitLen(), total)
		}
		buf := w.Flush()
		if len(buf) != len(prefix)+(total+7)/8 {
			t.Fatalf("len = %d, want %d", len(buf), len(prefix)+(total+7)/8)
		}
		r.Reset(buf[len(prefix):])
		for i, f := range fs {
			if got := r.ReadBits(f.n); got != f.v {
				t.Fatalf("iter %d field %d (%d bits): got %#x want %#x", iter, i, f.n, got, f.v)
			}
		}
		if r.Err() != nil {
			t.Fatal(r.Err())
		}
		if rem := r.Remaining(); rem != (8-total%8)%8 {
			t.Fatalf("Remaining = %d, want %d", rem, (8-total%8)%8)
		}
		if r.ReadBits(r.Remaining()) != 0 {
			t.Fatal("padding not zero")
		}
	}
}

func TestBitReaderPastEnd(t *testing.T) {
	var r BitReader
	r.Reset([]byte{0xFF, 0x80})
	if v := r.ReadBits(9); v != 0x1FF {
		t.Fatalf("got %#x", v)
	}
	if v := r.ReadBits(8); v != 0 || !errors.Is(r.Err(), ErrTruncated) {
		t.Fatalf("read past end: v=%#x err=%v", v, r.Err())
	}
	// Sticky: even a read that would fit returns 0.
	if r.ReadBit() || r.ReadBits(1) != 0 || r.Remaining() != 0 {
		t.Fatal("error not sticky")
	}
	r.Reset(nil)
	if r.ReadBit() || r.Err() == nil {
		t.Fatal("empty input: no error")
	}
	r.Reset([]byte{1, 2, 3, 4, 5, 6, 7})
	if r.ReadBits(64) != 0 || !errors.Is(r.Err(), ErrTruncated) {
		t.Fatal("64-bit read of 7 bytes did not fail")
	}
}

func TestBitReaderReadBitMatchesReadBits(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 37)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	var a, b BitReader
	a.Reset(buf)
	b.Reset(buf)
	for i := 0; i < len(buf)*8; i++ {
		bit := a.ReadBit()
		if v := b.ReadBits(1); (v == 1) != bit {
			t.Fatalf("bit %d differs", i)
		}
		if want := buf[i/8]>>(7-i%8)&1 == 1; bit != want {
			t.Fatalf("bit %d = %v, want %v", i, bit, want)
		}
	}
	if a.Err() != nil || a.ReadBit() || a.Err() == nil {
		t.Fatal("end of input not detected")
	}
}

var signedCases = []struct {
	v    int32
	bits int
}{
	{0, 1}, {1, 5}, {-1, 5}, {4, 5}, {-4, 5}, {5, 10}, {-5, 10}, {68, 10}, {-68, 10},
	{69, 17}, {-69, 17}, {4164, 17}, {-4164, 17}, {4165, 36}, {-4165, 36},
	{math.MaxInt32, 36}, {math.MinInt32, 36}, {math.MinInt32 + 1, 36},
}

func TestSignedCode(t *testing.T) {
	var w BitWriter
	var r BitReader
	for _, c := range signedCases {
		w.Reset(nil)
		w.WriteSignedCode(c.v)
		if w.BitLen() != c.bits {
			t.Errorf("WriteSignedCode(%d): %d bits, want %d", c.v, w.BitLen(), c.bits)
		}
		w.WriteBits(0b101, 3) // a sentinel after the code
		r.Reset(w.Flush())
		if got := r.ReadSignedCode(); got != c.v || r.Err() != nil {
			t.Errorf("ReadSignedCode = %d, %v; want %d", got, r.Err(), c.v)
		}
		if r.ReadBits(3) != 0b101 {
			t.Errorf("%d: code consumed the wrong number of bits", c.v)
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	w.Reset(nil)
	vals := make([]int32, 5000)
	for i := range vals {
		vals[i] = int32(rng.Uint32()) >> rng.IntN(32)
		w.WriteSignedCode(vals[i])
	}
	r.Reset(w.Flush())
	for i, v := range vals {
		if got := r.ReadSignedCode(); got != v {
			t.Fatalf("value %d: got %d want %d", i, got, v)
		}
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
}

func TestSignedCodeRejectsNonCanonical(t *testing.T) {
	for _, v := range []int32{0, 1, -1, 4164, -4164} {
		var w BitWriter
		w.WriteBits(0b1111, 4)
		w.WriteBits(uint64(uint32(v)), 32)
		var r BitReader
		r.Reset(w.Flush())
		r.ReadSignedCode()
		if !errors.Is(r.Err(), ErrNonCanonical) {
			t.Errorf("32-bit form of %d: err = %v, want ErrNonCanonical", v, r.Err())
		}
	}
}

func TestUnsignedCode(t *testing.T) {
	cases := []struct {
		v    uint32
		bits int
	}{{0, 1}, {1, 6}, {16, 6}, {17, 11}, {272, 11}, {273, 35}, {math.MaxUint32, 35}}
	for _, c := range cases {
		var w BitWriter
		w.WriteUnsignedCode(c.v)
		if w.BitLen() != c.bits {
			t.Errorf("WriteUnsignedCode(%d): %d bits, want %d", c.v, w.BitLen(), c.bits)
		}
		var r BitReader
		r.Reset(w.Flush())
		if got := r.ReadUnsignedCode(); got != c.v || r.Err() != nil {
			t.Errorf("ReadUnsignedCode = %d, %v; want %d", got, r.Err(), c.v)
		}
	}
	var w BitWriter
	w.WriteBits(0b111, 3)
	w.WriteBits(272, 32)
	var r BitReader
	r.Reset(w.Flush())
	r.ReadUnsignedCode()
	if !errors.Is(r.Err(), ErrNonCanonical) {
		t.Errorf("32-bit form of 272: err = %v, want ErrNonCanonical", r.Err())
	}
}

func TestBitsNoAllocs(t *testing.T) {
	buf := make([]byte, 0, 1024)
	var w BitWriter
	var r BitReader
	allocs := testing.AllocsPerRun(100, func() {
		w.Reset(buf[:0])
		for i := 0; i < 100; i++ {
			w.WriteBits(uint64(i), i%33)
			w.WriteSignedCode(int32(i*97 - 3000))
			w.WriteUnsignedCode(uint32(i))
		}
		r.Reset(w.Flush())
		for i := 0; i < 100; i++ {
			r.ReadBits(i % 33)
			r.ReadSignedCode()
			r.ReadUnsignedCode()
		}
		if r.Err() != nil {
			t.Fatal(r.Err())
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run, want 0", allocs)
	}
}

func BenchmarkBitWriter(b *testing.B) {
	buf := make([]byte, 0, 4096)
	var w BitWriter
	b.ReportAllocs()
	b.SetBytes(int64(1000*(1+5+10+17)) / 8)
	for b.Loop() {
		w.Reset(buf[:0])
		for i := 0; i < 1000; i++ {
			w.WriteBits(0, 1)
			w.WriteSignedCode(3)
			w.WriteSignedCode(-40)
			w.WriteSignedCode(1000)
		}
		buf = w.Flush()
	}
}

func BenchmarkBitReader(b *testing.B) {
	var w BitWriter
	for i := 0; i < 1000; i++ {
		w.WriteBits(0, 1)
		w.WriteSignedCode(3)
		w.WriteSignedCode(-40)
		w.WriteSignedCode(1000)
	}
	buf := w.Flush()
	var r BitReader
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		r.Reset(buf)
		for i := 0; i < 1000; i++ {
			r.ReadBit()
			r.ReadSignedCode()
			r.ReadSignedCode()
			r.ReadSignedCode()
		}
	}
}
