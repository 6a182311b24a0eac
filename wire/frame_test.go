package wire

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestAppendFrame(t *testing.T) {
	got, err := AppendFrame([]byte{0xAA}, MsgPing, []byte{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0xAA, 4, 0, 6, 1, 2, 3}; !bytes.Equal(got, want) {
		t.Fatalf("got % x, want % x", got, want)
	}
	big := make([]byte, MaxFrameSize-1)
	got, err = AppendFrame(nil, 200, big) // largest frame; unknown types are fine for framing
	if err != nil || len(got) != MaxFrameSize+2 || got[0] != 0xFF || got[1] != 0xFF || got[2] != 200 {
		t.Fatalf("largest frame: len %d err %v", len(got), err)
	}
	got, err = AppendFrame([]byte{9}, MsgPing, make([]byte, MaxFrameSize))
	if !errors.Is(err, ErrFrameTooLarge) || !bytes.Equal(got, []byte{9}) {
		t.Fatalf("oversized frame: % x, %v", got, err)
	}
}

func TestBeginEndFrame(t *testing.T) {
	buf, start := BeginFrame([]byte{7, 7}, MsgAck)
	buf = append(buf, 1, 2, 3, 4)
	buf, err := EndFrame(buf, start)
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{7, 7, 5, 0, byte(MsgAck), 1, 2, 3, 4}; !bytes.Equal(buf, want) {
		t.Fatalf("got % x, want % x", buf, want)
	}
	buf, start = BeginFrame(nil, MsgAck)
	if buf, err = EndFrame(buf, start); err != nil || !bytes.Equal(buf, []byte{1, 0, byte(MsgAck)}) {
		t.Fatalf("empty payload: % x %v", buf, err)
	}
	buf, start = BeginFrame([]byte{1}, MsgAck)
	buf = append(buf, make([]byte, MaxFrameSize)...)
	buf, err = EndFrame(buf, start)
	if !errors.Is(err, ErrFrameTooLarge) || !bytes.Equal(buf, []byte{1}) {
		t.Fatalf("oversized: len %d, %v", len(buf), err)
	}
	for _, bad := range []int{-1, 2, 100} {
		if _, err := EndFrame([]byte{1, 0, 3}, bad); err == nil {
			t.Errorf("EndFrame(start=%d) accepted", bad)
		}
	}
}

func TestSplitFrame(t *testing.T) {
	var stream []byte
	stream, _ = AppendFrame(stream, MsgPing, []byte{1, 2})
	stream, _ = AppendFrame(stream, 99, nil)
	stream, _ = AppendFrame(stream, MsgAck, []byte{3})
	var types []MsgType
	var payloads [][]byte
	for rest := stream; len(rest) > 0; {
		typ, p, r, err := SplitFrame(rest)
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, typ)
		payloads = append(payloads, p)
		rest = r
	}
	if len(types) != 3 || types[0] != MsgPing || types[1] != 99 || types[2] != MsgAck ||
		!bytes.Equal(payloads[0], []byte{1, 2}) || len(payloads[1]) != 0 || !bytes.Equal(payloads[2], []byte{3}) {
		t.Fatalf("types %v payloads %v", types, payloads)
	}
	for _, c := range []struct {
		in   []byte
		want error
	}{
		{nil, ErrTruncated}, {[]byte{1}, ErrTruncated}, {[]byte{0, 0, 5}, ErrFrameEmpty},
		{[]byte{1, 0}, ErrTruncated}, {[]byte{3, 0, 5, 1}, ErrTruncated},
	} {
		if _, _, rest, err := SplitFrame(c.in); !errors.Is(err, c.want) || !bytes.Equal(rest, c.in) {
			t.Errorf("SplitFrame(% x): err %v, want %v", c.in, err, c.want)
		}
	}
}

func TestSplitFramePayloadCapped(t *testing.T) {
	b := []byte{2, 0, 6, 0xAA, 3, 0, 6, 1, 2}
	_, p, _, _ := SplitFrame(b)
	if p = append(p, 0xFF); b[4] != 3 || len(p) != 2 { // must not overwrite the next frame
		t.Fatal("appending to a payload overwrote the next frame")
	}
}

func TestFrameReader(t *testing.T) {
	var stream []byte
	var want [][]byte
	for i := 0; i < 50; i++ {
		p := bytes.Repeat([]byte{byte(i)}, i*97%3000)
		stream, _ = AppendFrame(stream, MsgType(i), p)
		want = append(want, p)
	}
	big := bytes.Repeat([]byte{0xCD}, MaxFrameSize-1)
	stream, _ = AppendFrame(stream, MsgSnapshot, big)
	want = append(want, big)
	readers := map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"onebyte":  iotest.OneByteReader,
		"halfread": iotest.HalfReader,
		"dataerr":  iotest.DataErrReader,
	}
	for name, wrap := range readers {
		t.Run(name, func(t *testing.T) {
			fr := NewFrameReader(wrap(bytes.NewReader(stream)))
			for i, w := range want {
				typ, p, err := fr.Next()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if i < 50 && typ != MsgType(i) || !bytes.Equal(p, w) {
					t.Fatalf("frame %d: type %d, %d bytes; want %d bytes", i, typ, len(p), len(w))
				}
			}
			for range 2 {
				if _, _, err := fr.Next(); err != io.EOF {
					t.Fatalf("at the end: %v, want io.EOF", err)
				}
			}
			if cap(fr.buf) > frameReaderMaxBuf {
				t.Fatalf("buffer grew to %d", cap(fr.buf))
			}
		})
	}
}

func TestFrameReaderErrors(t *testing.T) {
	frame, _ := AppendFrame(nil, MsgPing, []byte{1, 2, 3})
	for _, c := range []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"half length", frame[:1], io.ErrUnexpectedEOF},
		{"no type", frame[:2], io.ErrUnexpectedEOF},
		{"half payload", frame[:5], io.ErrUnexpectedEOF},
		{"zero length", []byte{0, 0, 1}, ErrFrameEmpty},
	} {
		fr := NewFrameReader(iotest.OneByteReader(bytes.NewReader(c.in)))
		for range 2 { // errors are sticky
			if _, _, err := fr.Next(); !errors.Is(err, c.want) {
				t.Errorf("%s: %v, want %v", c.name, err, c.want)
			}
		}
	}
	boom := errors.New("boom")
	fr := NewFrameReader(io.MultiReader(bytes.NewReader(frame), iotest.ErrReader(boom)))
	if _, p, err := fr.Next(); err != nil || len(p) != 3 {
		t.Fatalf("frame before the error: %v", err)
	}
	if _, _, err := fr.Next(); err != boom {
		t.Fatalf("got %v, want the reader's error", err)
	}
	fr = NewFrameReader(zeroReader{})
	if _, _, err := fr.Next(); err != io.ErrNoProgress {
		t.Fatalf("reader returning 0, nil forever: %v", err)
	}
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

// A peer that announces the largest frame and sends a few bytes must not make the reader
// allocate for the announced size.
func TestFrameReaderDoesNotTrustLength(t *testing.T) {
	fr := NewFrameReader(bytes.NewReader([]byte{0xFF, 0xFF, 5, 1, 2, 3}))
	if _, _, err := fr.Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("got %v", err)
	}
	if cap(fr.buf) > frameReaderInitialBuf {
		t.Fatalf("buffer of %d bytes for 6 received", cap(fr.buf))
	}
}

func TestFrameReaderNoAllocsSteadyState(t *testing.T) {
	var stream []byte
	for i := 0; i < 100; i++ {
		stream, _ = AppendFrame(stream, MsgInput, make([]byte, 13))
	}
	rd := bytes.NewReader(stream)
	fr := NewFrameReader(rd)
	allocs := testing.AllocsPerRun(20, func() {
		rd.Reset(stream)
		fr.err, fr.readErr = nil, nil
		for i := 0; i < 100; i++ {
			if _, _, err := fr.Next(); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per 100 frames", allocs)
	}
}

func TestFrameReaderLimit(t *testing.T) {
	small := (&Ack{Tick: 9}).AppendFrame(nil)
	big, err := AppendFrame(nil, MsgInput, make([]byte, 600))
	if err != nil {
		t.Fatal(err)
	}
	fr := NewFrameReaderLimit(bytes.NewReader(append(append([]byte(nil), small...), big...)), MaxClientFrameSize)
	if typ, _, err := fr.Next(); err != nil || typ != MsgAck {
		t.Fatalf("first frame: %v %v", typ, err)
	}
	if _, _, err := fr.Next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("a 601-byte frame under a %d-byte limit: %v, want ErrFrameTooLarge", MaxClientFrameSize, err)
	}
	if _, _, err := fr.Next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("the error is not sticky: %v", err)
	}
}
