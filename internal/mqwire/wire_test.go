package mqwire

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"testing"
)

func TestFramesRoundTrip(t *testing.T) {
	var b []byte
	b = AppendSend(b, 7, 9, 1500, 250, "orders", []byte("hello"))
	b = AppendConsume(b, 8, 3, 64, "orders")
	b = AppendCancel(b, 9, 3)
	b = AppendAck(b, 3, 11, 12)
	ackStart := len(b)
	b = AppendAck(b, 4, 1)
	b = AppendTag(b, ackStart, 2)
	b = AppendNack(b, 3, true, 13)
	creditStart := len(b)
	b = AppendCredit(b, 5, 2)
	AddCredit(b, creditStart, 3)
	b = AppendPing(b, TypePing, 42)
	b = AppendSendOK(b, 7, 1001)
	b = AppendConsumeOK(b, 8, ModeAtMostOnce, 64)
	b = AppendCancelOK(b, 9)
	b = AppendDeliver(b, Deliver{Consumer: 3, Tag: 99, ID: 1001, EnqueuedAt: -5, Deliveries: 2, Priority: 4, Body: []byte("x")})
	b = AppendError(b, TypeError, 7, CodeQueueFull, "full")
	b = AppendError(b, TypeConsumerClosed, 3, CodeQueueDeleted, "gone")
	b = AppendGoAway(b, CodeShuttingDown, "bye")

	r := NewReader(bytes.NewReader(b), 64, 1<<16)
	next := func(want FrameType) []byte {
		t.Helper()
		typ, p, err := r.Next()
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if typ != want {
			t.Fatalf("type %v, want %v", typ, want)
		}
		return p
	}
	if s, err := ParseSend(next(TypeSend)); err != nil || s.Req != 7 || s.Priority != 9 || s.TTLMillis != 1500 ||
		s.TimeoutMillis != 250 || string(s.Queue) != "orders" || string(s.Body) != "hello" {
		t.Fatalf("send %+v %v", s, err)
	}
	if c, err := ParseConsume(next(TypeConsume)); err != nil || c.Req != 8 || c.Consumer != 3 || c.Prefetch != 64 || string(c.Queue) != "orders" {
		t.Fatalf("consume %+v %v", c, err)
	}
	if c, err := ParseCancel(next(TypeCancel)); err != nil || c != (Cancel{9, 3}) {
		t.Fatalf("cancel %+v %v", c, err)
	}
	if a, err := ParseAck(next(TypeAck)); err != nil || a.Consumer != 3 || a.Len() != 2 || a.Tag(0) != 11 || a.Tag(1) != 12 {
		t.Fatalf("ack %+v %v", a, err)
	}
	if a, err := ParseAck(next(TypeAck)); err != nil || a.Consumer != 4 || a.Len() != 2 || a.Tag(0) != 1 || a.Tag(1) != 2 {
		t.Fatalf("coalesced ack %+v %v", a, err)
	}
	if a, err := ParseNack(next(TypeNack)); err != nil || !a.Requeue || a.Len() != 1 || a.Tag(0) != 13 {
		t.Fatalf("nack %+v %v", a, err)
	}
	if c, err := ParseCredit(next(TypeCredit)); err != nil || c != (Credit{5, 5}) {
		t.Fatalf("credit %+v %v", c, err)
	}
	if tok, err := ParsePing(next(TypePing)); err != nil || tok != 42 {
		t.Fatalf("ping %d %v", tok, err)
	}
	if s, err := ParseSendOK(next(TypeSendOK)); err != nil || s != (SendOK{7, 1001}) {
		t.Fatalf("send ok %+v %v", s, err)
	}
	if c, err := ParseConsumeOK(next(TypeConsumeOK)); err != nil || c != (ConsumeOK{8, ModeAtMostOnce, 64}) {
		t.Fatalf("consume ok %+v %v", c, err)
	}
	if req, err := ParseCancelOK(next(TypeCancelOK)); err != nil || req != 9 {
		t.Fatalf("cancel ok %d %v", req, err)
	}
	if d, err := ParseDeliver(next(TypeDeliver)); err != nil || d.Tag != 99 || d.ID != 1001 || d.EnqueuedAt != -5 ||
		d.Deliveries != 2 || d.Priority != 4 || string(d.Body) != "x" {
		t.Fatalf("deliver %+v %v", d, err)
	}
	if e, err := ParseError(next(TypeError)); err != nil || e != (Error{7, CodeQueueFull, "full"}) {
		t.Fatalf("error %+v %v", e, err)
	}
	if e, err := ParseError(next(TypeConsumerClosed)); err != nil || e != (Error{3, CodeQueueDeleted, "gone"}) {
		t.Fatalf("closed %+v %v", e, err)
	}
	if e, err := ParseGoAway(next(TypeGoAway)); err != nil || e != (Error{0, CodeShuttingDown, "bye"}) {
		t.Fatalf("goaway %+v %v", e, err)
	}
	if _, _, err := r.Next(); err != io.EOF {
		t.Fatalf("end: %v, want EOF", err)
	}
}

func TestHandshakeRoundTrip(t *testing.T) {
	h := Hello{MinVersion: 1, MaxVersion: 3, MaxFrame: 1 << 20}
	got, err := ParseHello(AppendHello(nil, h))
	if err != nil || got != h {
		t.Fatalf("hello %+v %v", got, err)
	}
	w := Welcome{Version: 1, MaxFrame: 1 << 20, MaxMessage: 1 << 19, MaxPendingSends: 10, MaxPendingBytes: 100, MaxPrefetch: 5, MaxConsumers: 6}
	enc := AppendWelcome(nil, w)
	if len(enc) != WelcomeSize {
		t.Fatalf("welcome size %d", len(enc))
	}
	if got, err := ParseWelcome(enc); err != nil || got != w {
		t.Fatalf("welcome %+v %v", got, err)
	}
	if _, err := ParseHello([]byte("XXXX\x01\x00\x01\x00\x00\x00\x00\x00")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("bad magic: %v", err)
	}
	if _, err := ParseHello(AppendHello(nil, Hello{MinVersion: 3, MaxVersion: 1})); !errors.Is(err, ErrMalformed) {
		t.Fatalf("inverted versions: %v", err)
	}
	if _, err := ParseWelcome(AppendWelcome(nil, Welcome{Version: 1, MaxFrame: 10})); !errors.Is(err, ErrMalformed) {
		t.Fatalf("implausible limits: %v", err)
	}
}

// trickle hands out one byte per Read.
type trickle struct {
	data []byte
}

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:1], t.data)
	t.data = t.data[n:]
	return n, nil
}

func TestReaderLimits(t *testing.T) {
	huge := []byte{0xff, 0xff, 0xff, 0x7f, byte(TypeSend)}
	r := NewReader(bytes.NewReader(huge), 64, 1<<20)
	if _, _, err := r.Next(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("huge length: %v", err)
	}
	r = NewReader(bytes.NewReader([]byte{0, 0, 0, 0}), 64, 1<<20)
	if _, _, err := r.Next(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("zero length: %v", err)
	}

	// A frame announced at 16 MiB that carries only 10 bytes must fail without
	// reserving the announced size.
	announced := append(le.AppendUint32(nil, 16<<20), make([]byte, 10)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r = NewReader(&trickle{data: announced}, 64, 16<<20)
	if _, _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: %v", err)
	}
	runtime.ReadMemStats(&after)
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 1<<20 {
		t.Fatalf("allocated %d bytes for a frame that sent 10", grown)
	}

	// Large frames beyond the buffer are still read correctly.
	body := bytes.Repeat([]byte("ab"), 200<<10)
	r = NewReader(&slowReader{data: AppendSend(nil, 1, 0, 0, 0, "q", body)}, 4096, 1<<20)
	typ, p, err := r.Next()
	if err != nil || typ != TypeSend {
		t.Fatalf("large frame: %v %v", typ, err)
	}
	if s, err := ParseSend(p); err != nil || !bytes.Equal(s.Body, body) {
		t.Fatalf("large frame body mismatch: %v", err)
	}
}

type slowReader struct{ data []byte }

func (s *slowReader) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 1000)], s.data)
	s.data = s.data[n:]
	return n, nil
}

func TestParseRejectsMalformed(t *testing.T) {
	cases := map[string]error{}
	_, cases["send short"] = ParseSend(make([]byte, 3))
	_, cases["send prio"] = ParseSend(AppendSend(nil, 1, 10, 0, 0, "q", nil)[HeaderSize:])
	_, cases["send empty queue"] = ParseSend(AppendSend(nil, 1, 0, 0, 0, "", nil)[HeaderSize:])
	_, cases["consume prefetch 0"] = ParseConsume(AppendConsume(nil, 1, 1, 0, "q")[HeaderSize:])
	_, cases["ack no tags"] = ParseAck(AppendAck(nil, 1)[HeaderSize:])
	_, cases["ack ragged"] = ParseAck(append(AppendAck(nil, 1, 5)[HeaderSize:], 1))
	_, cases["nack bad bool"] = ParseNack(append(le.AppendUint32(nil, 1), append([]byte{2}, make([]byte, 8)...)...))
	_, cases["credit 0"] = ParseCredit(AppendCredit(nil, 1, 0)[HeaderSize:])
	_, cases["deliver zero deliveries"] = ParseDeliver(AppendDeliver(nil, Deliver{Consumer: 1})[HeaderSize:])
	_, cases["error code 0"] = ParseError(AppendError(nil, TypeError, 1, CodeOK, "")[HeaderSize:])
	for name, err := range cases {
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}

// repeat serves the same bytes over and over, without allocating.
type repeat struct {
	data []byte
	off  int
}

func (r *repeat) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.off:])
	r.off = (r.off + n) % len(r.data)
	return n, nil
}

// TestReaderReusesLargeFrameBuffer holds that a stream of frames carrying
// 1 MiB messages, larger than the read buffer, is read without allocating
// once the first has been read: the scratch buffer is reused.
func TestReaderReusesLargeFrameBuffer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"send", AppendSend(nil, 1, 0, 0, 0, string(bytes.Repeat([]byte("q"), MaxQueueName)), make([]byte, 1<<20))},
		{"deliver", AppendDeliver(nil, Deliver{Consumer: 1, Tag: 2, ID: 3, Deliveries: 1, Body: make([]byte, 1<<20)})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(&repeat{data: tc.frame}, 64<<10, 2<<20)
			next := func() {
				typ, p, err := r.Next()
				if err != nil || len(p) != len(tc.frame)-HeaderSize || typ != FrameType(tc.frame[4]) {
					t.Fatalf("Next: %v %d bytes %v", typ, len(p), err)
				}
			}
			next()
			if allocs := testing.AllocsPerRun(20, next); allocs != 0 {
				t.Fatalf("%v allocations per 1 MiB frame, want 0 (the scratch buffer is not reused)", allocs)
			}
		})
	}
}

// A frame encoded up to its body and followed by the body is the frame
// encoded whole: the writers send large bodies from where they lie.
func TestHeaderEncodersLeaveRoomForTheBody(t *testing.T) {
	body := bytes.Repeat([]byte{0xa5}, 5000)
	d := Deliver{Consumer: 3, Tag: 99, ID: 1001, EnqueuedAt: 17, Deliveries: 1, Priority: 2, Body: body}
	cases := map[string]struct{ whole, head []byte }{
		"send": {
			AppendSend(nil, 7, 9, 1500, 250, "orders", body),
			AppendSendHeader(nil, 7, 9, 1500, 250, "orders", len(body)),
		},
		"deliver": {AppendDeliver(nil, d), AppendDeliverHeader(nil, d)},
	}
	for name, c := range cases {
		if got := append(c.head, body...); !bytes.Equal(got, c.whole) {
			t.Errorf("%s: header+body differs from the whole frame", name)
		}
		if len(c.head) != len(c.whole)-len(body) {
			t.Errorf("%s: header is %d bytes, want %d", name, len(c.head), len(c.whole)-len(body))
		}
	}
}
