package mqwire

import (
	"bufio"
	"fmt"
	"io"
)

// Reader reads frames from a stream. Frames that fit in its buffer are
// returned without copying; larger ones are read into a scratch buffer that
// grows only as their bytes actually arrive, so a peer that announces a huge
// frame and then stalls costs no more memory than it has sent. The scratch
// buffer is kept for the next large frame up to MaxKeptScratch bytes, so a
// stream of 1 MiB messages is read without allocating.
type Reader struct {
	br      *bufio.Reader
	max     int
	discard int
	scratch []byte
}

// NewReader returns a Reader over r with a read buffer of bufSize bytes that
// rejects frames longer than maxFrame (the value of the length field).
func NewReader(r io.Reader, bufSize, maxFrame int) *Reader {
	if bufSize < 64 {
		bufSize = 64
	}
	return &Reader{br: bufio.NewReaderSize(r, bufSize), max: maxFrame}
}

// Buffered reports how many bytes can be read without blocking; a consumer of
// frames uses it to batch its responses.
func (r *Reader) Buffered() int { return r.br.Buffered() - r.discard }

// Next returns the next frame. The payload is valid until the following call.
// Errors wrap ErrFrameTooLarge, ErrMalformed or the stream's error (io.EOF at
// a frame boundary, io.ErrUnexpectedEOF inside a frame).
func (r *Reader) Next() (FrameType, []byte, error) {
	if r.discard > 0 {
		if _, err := r.br.Discard(r.discard); err != nil {
			return 0, nil, err
		}
		r.discard = 0
	}
	hdr, err := r.br.Peek(lengthFieldLen)
	if err != nil {
		if err == io.EOF && r.br.Buffered() > 0 {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	n := int(le.Uint32(hdr))
	if n == 0 {
		return 0, nil, fmt.Errorf("%w: zero-length frame", ErrMalformed)
	}
	if n > r.max {
		return 0, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, r.max)
	}
	total := lengthFieldLen + n
	if total <= r.br.Size() {
		buf, err := r.br.Peek(total)
		if err != nil {
			return 0, nil, unexpected(err)
		}
		r.discard = total
		return FrameType(buf[lengthFieldLen]), buf[lengthAndType:], nil
	}
	if _, err := r.br.Discard(lengthFieldLen); err != nil {
		return 0, nil, err
	}
	buf, err := r.readGrowing(n)
	if err != nil {
		return 0, nil, err
	}
	return FrameType(buf[0]), buf[1:], nil
}

// readGrowing reads n bytes into the scratch buffer, growing it at most to
// twice what has been received so far.
func (r *Reader) readGrowing(n int) ([]byte, error) {
	const step = 64 << 10
	buf := r.scratch[:0]
	for len(buf) < n {
		want := min(n, max(len(buf)*2, step))
		if cap(buf) >= n {
			want = n // the kept buffer holds it all: read it in one go
		}
		if cap(buf) < want {
			nb := make([]byte, len(buf), want)
			copy(nb, buf)
			buf = nb
		}
		m, err := io.ReadFull(r.br, buf[len(buf):want])
		buf = buf[:len(buf)+m]
		if err != nil {
			return nil, unexpected(err)
		}
	}
	if cap(buf) <= MaxKeptScratch {
		r.scratch = buf
	} else {
		r.scratch = nil // do not pin a large buffer to an idle connection
	}
	return buf, nil
}

// MaxKeptScratch is the largest scratch buffer a Reader keeps between frames:
// a frame carrying a 1 MiB message (the default maxMessageSize) with room for
// its header and queue name. Larger frames are read into a buffer that is
// dropped afterwards, so that an idle connection does not pin more.
const MaxKeptScratch = 1<<20 + 4<<10

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
