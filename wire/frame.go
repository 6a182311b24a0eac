package wire

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Framing. A session is a byte stream of frames:
//
//	length:uint16 little-endian | type:uint8 | payload
//
// length counts the type byte and the payload, so it is 1..MaxFrameSize; 0 is an error. Framing
// knows nothing about message types: an unknown type is a valid frame, which the message
// decoders then reject.

// FrameHeaderSize is the bytes in front of a payload: the length prefix and the type byte.
const FrameHeaderSize = 3

// AppendFrame appends a frame holding payload to dst. If the frame would be too large it
// returns dst unchanged and ErrFrameTooLarge.
func AppendFrame(dst []byte, t MsgType, payload []byte) ([]byte, error) {
	if len(payload)+1 > MaxFrameSize {
		return dst, fmt.Errorf("%w: %d-byte payload", ErrFrameTooLarge, len(payload))
	}
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(payload)+1))
	dst = append(dst, byte(t))
	return append(dst, payload...), nil
}

// BeginFrame appends a frame header with a placeholder length to dst and returns the extended
// slice and the offset of the frame in it. The caller appends the payload to buf and then calls
// EndFrame(buf, start) to fill in the length, so that payloads are written in place.
func BeginFrame(dst []byte, t MsgType) (buf []byte, start int) {
	start = len(dst)
	return append(dst, 0, 0, byte(t)), start
}

// EndFrame fills in the length of the frame that BeginFrame started at offset start, which
// extends to the end of buf, and returns buf. If the frame is too large, or start does not
// point at a frame header in buf, it returns buf[:start] (buf unchanged for a bad start) and an
// error.
func EndFrame(buf []byte, start int) ([]byte, error) {
	if start < 0 || start > len(buf)-FrameHeaderSize {
		return buf, fmt.Errorf("%w: no frame header at offset %d of %d bytes", ErrTruncated, start, len(buf))
	}
	n := len(buf) - start - 2 // type byte + payload
	if n > MaxFrameSize {
		return buf[:start], fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	binary.LittleEndian.PutUint16(buf[start:], uint16(n))
	return buf, nil
}

// SplitFrame parses the first frame of b: its type, its payload (aliasing b) and the bytes after
// it. It returns ErrTruncated if b does not hold a whole frame and ErrFrameEmpty for a zero
// length. An empty b gives ErrTruncated; callers loop while len(rest) > 0.
func SplitFrame(b []byte) (t MsgType, payload, rest []byte, err error) {
	if len(b) < 2 {
		return 0, nil, b, fmt.Errorf("%w: %d bytes, want a 2-byte frame length", ErrTruncated, len(b))
	}
	n := int(binary.LittleEndian.Uint16(b))
	if n == 0 {
		return 0, nil, b, ErrFrameEmpty
	}
	if len(b)-2 < n {
		return 0, nil, b, fmt.Errorf("%w: frame of %d bytes, %d present", ErrTruncated, n, len(b)-2)
	}
	return MsgType(b[2]), b[3 : 2+n : 2+n], b[2+n:], nil
}

// FrameReader reads frames from a byte stream such as a KCP session. It reads ahead into its
// own buffer, so the underlying reader needs no buffering. The buffer starts small and grows
// (to MaxFrameSize+2 bytes at most) only as bytes actually arrive, never because of a length
// prefix: a peer that announces a large frame and sends nothing costs nothing.
//
// A FrameReader is not safe for concurrent use.
type FrameReader struct {
	r          io.Reader
	buf        []byte // buf[start:end] is read but not yet returned
	start, end int
	err        error // sticky: the error Next returned, or the reader's pending error
	readErr    error // an error the reader returned along with data, reported once the data is used
	limit      int   // largest frame length accepted (type byte included)
}

const (
	frameReaderInitialBuf = 2048
	frameReaderMaxBuf     = MaxFrameSize + 2
	maxEmptyReads         = 100
)

// NewFrameReader returns a FrameReader reading from r that accepts frames up to MaxFrameSize.
func NewFrameReader(r io.Reader) *FrameReader {
	return &FrameReader{r: r, limit: MaxFrameSize}
}

// MaxClientFrameSize is the largest frame a client sends (a hello with the longest token is
// 2+1+255 bytes after the type byte); a server reads client streams with this limit so that a
// client cannot make it buffer a 64 KiB frame.
const MaxClientFrameSize = 512

// NewFrameReaderLimit returns a FrameReader that rejects, with ErrFrameTooLarge, any frame
// whose length prefix exceeds limit (1..MaxFrameSize), before reading its payload.
func NewFrameReaderLimit(r io.Reader, limit int) *FrameReader {
	return &FrameReader{r: r, limit: max(1, min(limit, MaxFrameSize))}
}

// Next returns the next frame's type and payload. The payload aliases the reader's buffer and
// is valid until the next call to Next. At the end of the stream Next returns io.EOF if the
// stream ended on a frame boundary and io.ErrUnexpectedEOF if it ended inside a frame. Framing
// errors (ErrFrameEmpty) and read errors are sticky: the stream cannot be resynchronised.
func (f *FrameReader) Next() (MsgType, []byte, error) {
	if f.err != nil {
		return 0, nil, f.err
	}
	if err := f.fill(2); err != nil {
		return 0, nil, f.setErr(err)
	}
	n := int(binary.LittleEndian.Uint16(f.buf[f.start:]))
	if n == 0 {
		return 0, nil, f.setErr(ErrFrameEmpty)
	}
	if n > f.limit {
		return 0, nil, f.setErr(fmt.Errorf("%w: %d bytes announced, limit %d", ErrFrameTooLarge, n, f.limit))
	}
	if err := f.fill(2 + n); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, f.setErr(err)
	}
	frame := f.buf[f.start : f.start+2+n : f.start+2+n]
	f.start += 2 + n
	return MsgType(frame[2]), frame[3:], nil
}

func (f *FrameReader) setErr(err error) error {
	f.err = err
	return err
}

// fill makes at least want bytes available in buf[start:end]. It returns io.EOF if the stream
// ends before that with no byte of the frame read, io.ErrUnexpectedEOF if it ends within the
// frame, or the reader's error.
func (f *FrameReader) fill(want int) error {
	if f.end-f.start >= want {
		return nil
	}
	// The previous payload is no longer valid: move what is left to the front.
	if f.start > 0 {
		f.end = copy(f.buf, f.buf[f.start:f.end])
		f.start = 0
	}
	empty := 0
	for f.end < want {
		if f.readErr != nil {
			err := f.readErr
			if err == io.EOF && f.end > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		if f.end == len(f.buf) {
			f.grow()
		}
		n, err := f.r.Read(f.buf[f.end:])
		if n < 0 || n > len(f.buf)-f.end {
			return fmt.Errorf("wire: FrameReader: invalid count %d from Read", n)
		}
		f.end += n
		if err != nil {
			f.readErr = err
		} else if n == 0 {
			if empty++; empty >= maxEmptyReads {
				return io.ErrNoProgress
			}
		}
	}
	return nil
}

// grow doubles buf, which is full of received bytes, up to frameReaderMaxBuf. So the memory
// held is at most twice what the peer actually sent (or frameReaderInitialBuf), whatever the
// length prefixes claim.
func (f *FrameReader) grow() {
	size := min(max(2*len(f.buf), frameReaderInitialBuf), frameReaderMaxBuf)
	nb := make([]byte, size)
	copy(nb, f.buf[:f.end])
	f.buf = nb
}
