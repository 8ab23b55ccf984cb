package mqwire

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the frame reader and to the parser of
// every frame type: nothing may panic, every failure must be a typed error,
// and a frame that parses must re-encode to the same bytes.
func FuzzReader(f *testing.F) {
	f.Add(AppendSend(nil, 1, 3, 10, 20, "q", []byte("body")))
	f.Add(AppendConsume(nil, 1, 2, 3, "queue"))
	f.Add(AppendAck(nil, 1, 2, 3))
	f.Add(AppendNack(nil, 1, true, 2))
	f.Add(AppendCredit(nil, 1, 2))
	f.Add(AppendDeliver(nil, Deliver{Consumer: 1, Tag: 2, ID: 3, Deliveries: 1, Body: []byte("b")}))
	f.Add(AppendError(nil, TypeError, 1, CodeQueueFull, "x"))
	f.Add(AppendGoAway(nil, CodeShuttingDown, "x"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Add(AppendHello(nil, Hello{MinVersion: 1, MaxVersion: 1}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) >= HelloSize {
			_, _ = ParseHello(data[:HelloSize])
		}
		if len(data) >= WelcomeSize {
			_, _ = ParseWelcome(data[:WelcomeSize])
		}
		r := NewReader(bytes.NewReader(data), 128, 4096)
		for {
			typ, p, err := r.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) &&
					!errors.Is(err, ErrMalformed) && !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("untyped error %v", err)
				}
				return
			}
			checkPayload(t, typ, p)
		}
	})
}

func checkPayload(t *testing.T, typ FrameType, p []byte) {
	var re []byte
	var err error
	switch typ {
	case TypeSend:
		var s Send
		if s, err = ParseSend(p); err == nil {
			re = AppendSend(nil, s.Req, s.Priority, s.TTLMillis, s.TimeoutMillis, string(s.Queue), s.Body)
		}
	case TypeConsume:
		var c Consume
		if c, err = ParseConsume(p); err == nil {
			re = AppendConsume(nil, c.Req, c.Consumer, c.Prefetch, string(c.Queue))
		}
	case TypeAck, TypeNack:
		var s Settle
		if typ == TypeAck {
			s, err = ParseAck(p)
		} else {
			s, err = ParseNack(p)
		}
		if err == nil {
			tags := make([]uint64, s.Len())
			for i := range tags {
				tags[i] = s.Tag(i)
			}
			if typ == TypeAck {
				re = AppendAck(nil, s.Consumer, tags...)
			} else {
				re = AppendNack(nil, s.Consumer, s.Requeue, tags...)
			}
		}
	case TypeDeliver:
		var d Deliver
		if d, err = ParseDeliver(p); err == nil {
			re = AppendDeliver(nil, d)
		}
	case TypeError, TypeConsumerClosed:
		var e Error
		if e, err = ParseError(p); err == nil {
			re = AppendError(nil, typ, e.ID, e.Code, e.Text)
		}
	default:
		_, _ = ParseCancel(p)
		_, _ = ParseCredit(p)
		_, _ = ParsePing(p)
		_, _ = ParseSendOK(p)
		_, _ = ParseConsumeOK(p)
		_, _ = ParseCancelOK(p)
		_, _ = ParseGoAway(p)
		return
	}
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("%v: untyped error %v", typ, err)
		}
		return
	}
	if !bytes.Equal(re[HeaderSize:], p) {
		t.Fatalf("%v: re-encoding differs:\n got %x\nwant %x", typ, re[HeaderSize:], p)
	}
}
