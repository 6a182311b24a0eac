package wire

import "encoding/binary"

// Bit packing. Snapshots are bit streams: bits are packed MSB-first, so the first bit written is
// the most significant bit of the first byte, and a value of n bits is written most significant
// bit first. A stream ends with zero bits up to the next byte boundary.
//
// Both BitWriter and BitReader keep a 64-bit accumulator so that a field costs a shift and an
// OR, and memory is touched eight bytes at a time.

// BitWriter appends bits to a byte slice. The zero value is ready to use and writes into a nil
// slice; Reset makes it append to a given slice instead. It never allocates except when append
// grows the destination.
type BitWriter struct {
	buf   []byte
	start int    // len(buf) at Reset
	acc   uint64 // pending bits in the low n bits; bits above them are stale and never written
	n     uint   // pending bits, 0..63
}

// Reset discards pending bits and makes w append to dst.
func (w *BitWriter) Reset(dst []byte) {
	w.buf = dst
	w.start = len(dst)
	w.acc = 0
	w.n = 0
}

// lowMask[n] has the low n bits set.
var lowMask = func() (m [65]uint64) {
	for n := range m {
		m[n] = 1<<n - 1 // 1<<64 == 0 in Go, so m[64] is all ones
	}
	return m
}()

// WriteBits writes the low n bits of v, most significant first. Bits of v above the low n are
// ignored. n must be in 0..64; it panics otherwise, like an index out of range, because that is
// a bug in the caller and never a property of the input.
func (w *BitWriter) WriteBits(v uint64, n int) {
	v &= lowMask[uint(n)] // also the range check
	s := uint(n)
	if w.n+s < 64 {
		w.acc = w.acc<<s | v
		w.n += s
		return
	}
	// Complete the accumulator's 64 bits with the top bits of v, append them, keep the rest.
	free := 64 - w.n // 1..64
	rem := s - free  // 0..63
	w.buf = binary.BigEndian.AppendUint64(w.buf, w.acc<<free|v>>rem)
	w.acc = v // the low rem bits are pending; the bits above them are stale
	w.n = rem
}

// WriteBit writes one bit.
func (w *BitWriter) WriteBit(b bool) {
	var v uint64
	if b {
		v = 1
	}
	w.WriteBits(v, 1)
}

// BitLen returns the number of bits written since the last Reset.
func (w *BitWriter) BitLen() int {
	return (len(w.buf)-w.start)*8 + int(w.n)
}

// Flush pads the stream with zero bits to a byte boundary, appends every pending byte and
// returns the destination slice. Writing may continue after Flush, from the byte boundary.
func (w *BitWriter) Flush() []byte {
	for w.n >= 8 {
		w.n -= 8
		w.buf = append(w.buf, byte(w.acc>>w.n))
	}
	if w.n > 0 {
		w.buf = append(w.buf, byte(w.acc<<(8-w.n)))
		w.n = 0
	}
	return w.buf
}

// BitReader reads bits from a byte slice, MSB-first. Reading past the end, or a non-canonical
// prefix code, sets a sticky error (see Err): from then on every read returns zero. It never
// panics and never allocates.
type BitReader struct {
	buf []byte
	pos int    // next byte of buf to load into acc
	acc uint64 // next bits, left-aligned; bits below the n valid ones are 0 or the following stream bits
	n   uint   // valid bits in acc
	err error
}

// Reset makes r read b from its first bit and clears the error.
func (r *BitReader) Reset(b []byte) {
	*r = BitReader{buf: b}
}

// refill loads whole bytes into the accumulator until it holds at least 57 valid bits or the
// input is exhausted.
func (r *BitReader) refill() {
	if r.pos+8 <= len(r.buf) {
		// Load eight bytes and keep as many whole ones as fit. The partial byte that also
		// lands in acc is reloaded next time with the same bits, so OR-ing it twice is harmless.
		r.acc |= binary.BigEndian.Uint64(r.buf[r.pos:]) >> r.n
		k := (64 - r.n) >> 3
		r.pos += int(k)
		r.n += k << 3
		return
	}
	for r.n <= 56 && r.pos < len(r.buf) {
		r.acc |= uint64(r.buf[r.pos]) << (56 - r.n)
		r.pos++
		r.n += 8
	}
}

// fail records err unless an error is already recorded and drains the reader, so that every
// later read fails and returns zero.
func (r *BitReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.pos = len(r.buf)
	r.acc = 0
	r.n = 0
}

// ReadBits reads n bits, most significant first, and returns them in the low bits of the
// result. n must be in 0..64 (it panics otherwise, a bug in the caller). If fewer than n bits
// remain it returns 0 and sets the error ErrTruncated.
func (r *BitReader) ReadBits(n int) uint64 {
	s := uint(n)
	if s > 56 {
		if s > 64 {
			panic("wire: BitReader.ReadBits: n out of range")
		}
		hi := r.ReadBits(n - 32)
		lo := r.ReadBits(32)
		if r.err != nil {
			return 0
		}
		return hi<<32 | lo
	}
	if r.n < s {
		r.refill()
		if r.n < s {
			r.fail(ErrTruncated)
			return 0
		}
	}
	v := r.acc >> (64 - s) // s == 0 gives 0
	r.acc <<= s
	r.n -= s
	return v
}

// ReadBit reads one bit; past the end it returns false and sets ErrTruncated.
func (r *BitReader) ReadBit() bool {
	if r.n == 0 {
		r.refill()
		if r.n == 0 {
			r.fail(ErrTruncated)
			return false
		}
	}
	b := r.acc >> 63
	r.acc <<= 1
	r.n--
	return b != 0
}

// Remaining returns the number of unread bits.
func (r *BitReader) Remaining() int {
	return (len(r.buf)-r.pos)*8 + int(r.n)
}

// Err returns the first error met, or nil.
func (r *BitReader) Err() error { return r.err }

// The signed prefix code, for small differences (snapshot deltas and velocities). A value v
// (an int32) is written as the first of these that can hold it:
//
//	0                                          v == 0               1 bit
//	10   s  m:2    |v| = m + 1                 |v| in 1..4          5 bits
//	110  s  m:6    |v| = m + 5                 |v| in 5..68        10 bits
//	1110 s  m:12   |v| = m + 69                |v| in 69..4164     17 bits
//	1111 v:32      v as 32-bit two's complement, |v| > 4164       36 bits
//
// where s is the sign (1 = negative). Differences of int32 fields are taken with 32-bit
// wrap-around (two's complement) arithmetic and applied the same way, so every difference fits.
// Only the shortest form is canonical; ReadSignedCode rejects the others.
const (
	signedMax1 = 4
	signedMax2 = 68
	signedMax3 = 4164
)

// WriteSignedCode writes v with the signed prefix code.
func (w *BitWriter) WriteSignedCode(v int32) {
	if v == 0 {
		w.WriteBits(0, 1)
		return
	}
	var sign uint64
	a := uint32(v)
	if v < 0 {
		sign = 1
		a = -a // also right for math.MinInt32: the magnitude 1<<31
	}
	switch {
	case a <= signedMax1:
		w.WriteBits(0b10<<3|sign<<2|uint64(a-1), 5)
	case a <= signedMax2:
		w.WriteBits(0b110<<7|sign<<6|uint64(a-(signedMax1+1)), 10)
	case a <= signedMax3:
		w.WriteBits(0b1110<<13|sign<<12|uint64(a-(signedMax2+1)), 17)
	default:
		w.WriteBits(0b1111<<32|uint64(uint32(v)), 36)
	}
}

// ReadSignedCode reads a value written by WriteSignedCode. A non-canonical (longer than
// necessary) form sets ErrNonCanonical.
func (r *BitReader) ReadSignedCode() int32 {
	if !r.ReadBit() {
		return 0
	}
	var width int
	var offset uint64
	switch {
	case !r.ReadBit():
		width, offset = 2, 1
	case !r.ReadBit():
		width, offset = 6, signedMax1+1
	case !r.ReadBit():
		width, offset = 12, signedMax2+1
	default:
		v := int32(uint32(r.ReadBits(32)))
		if a := abs64(int64(v)); a <= signedMax3 && r.err == nil {
			r.fail(ErrNonCanonical)
			return 0
		}
		return v
	}
	m := r.ReadBits(width + 1)
	mag := int32(m&(1<<width-1) + offset)
	if m>>width != 0 {
		return -mag
	}
	return mag
}

// The unsigned prefix code, for tick differences. A value v (a uint32) is written as the
// first of these that can hold it:
//
//	0                               v == 0              1 bit
//	10  m:4    v = m + 1            v in 1..16          6 bits
//	110 m:8    v = m + 17           v in 17..272       11 bits
//	111 v:32   v                    v > 272            35 bits
//
// Only the shortest form is canonical; ReadUnsignedCode rejects the others.
const (
	unsignedMax1 = 16
	unsignedMax2 = 272
)

// WriteUnsignedCode writes v with the unsigned prefix code.
func (w *BitWriter) WriteUnsignedCode(v uint32) {
	switch {
	case v == 0:
		w.WriteBits(0, 1)
	case v <= unsignedMax1:
		w.WriteBits(0b10<<4|uint64(v-1), 6)
	case v <= unsignedMax2:
		w.WriteBits(0b110<<8|uint64(v-(unsignedMax1+1)), 11)
	default:
		w.WriteBits(0b111<<32|uint64(v), 35)
	}
}

// ReadUnsignedCode reads a value written by WriteUnsignedCode. A non-canonical form sets
// ErrNonCanonical.
func (r *BitReader) ReadUnsignedCode() uint32 {
	switch {
	case !r.ReadBit():
		return 0
	case !r.ReadBit():
		return uint32(r.ReadBits(4)) + 1
	case !r.ReadBit():
		return uint32(r.ReadBits(8)) + unsignedMax1 + 1
	}
	v := uint32(r.ReadBits(32))
	if v <= unsignedMax2 && r.err == nil {
		r.fail(ErrNonCanonical)
		return 0
	}
	return v
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}
