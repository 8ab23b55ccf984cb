// Package mqwire encodes and decodes the podipc message-queue wire protocol:
// the handshake and the length-prefixed binary frames described in
// docs/mq-protocol.md. It is shared by the broker and the client in pkg/mq.
//
// All integers are little-endian. Decoding never allocates more than the
// bytes a peer has actually sent, and every length is checked against the
// negotiated limits before it is used.
package mqwire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Magic opens both halves of the handshake.
const Magic = "PDMQ"

// Version1 is the only protocol version defined so far.
const Version1 uint16 = 1

const (
	// HelloSize is the size of the client's handshake message.
	HelloSize = 12
	// WelcomeSize is the size of the broker's handshake answer.
	WelcomeSize = 32
	// HeaderSize is the size of a frame header: a u32 length and a u8 type.
	HeaderSize = 5
	// MinFrameLimit is the smallest frame limit a peer may advertise.
	MinFrameLimit = 4096
	// MaxQueueName is the longest queue name the protocol carries.
	MaxQueueName = 255
	// MaxPriority is the highest message priority; 0 is the lowest.
	MaxPriority = 9
)

// FrameType identifies a frame. Client-to-broker types have the high bit
// clear, broker-to-client types have it set.
type FrameType uint8

// Frame types.
const (
	TypeSend    FrameType = 0x01
	TypeConsume FrameType = 0x02
	TypeCancel  FrameType = 0x03
	TypeAck     FrameType = 0x04
	TypeNack    FrameType = 0x05
	TypeCredit  FrameType = 0x06
	TypePing    FrameType = 0x07

	TypeSendOK         FrameType = 0x81
	TypeConsumeOK      FrameType = 0x82
	TypeCancelOK       FrameType = 0x83
	TypeDeliver        FrameType = 0x84
	TypeError          FrameType = 0x85
	TypeConsumerClosed FrameType = 0x86
	TypePong           FrameType = 0x87
	TypeGoAway         FrameType = 0x88
)

func (t FrameType) String() string {
	switch t {
	case TypeSend:
		return "SEND"
	case TypeConsume:
		return "CONSUME"
	case TypeCancel:
		return "CANCEL"
	case TypeAck:
		return "ACK"
	case TypeNack:
		return "NACK"
	case TypeCredit:
		return "CREDIT"
	case TypePing:
		return "PING"
	case TypeSendOK:
		return "SEND_OK"
	case TypeConsumeOK:
		return "CONSUME_OK"
	case TypeCancelOK:
		return "CANCEL_OK"
	case TypeDeliver:
		return "DELIVER"
	case TypeError:
		return "ERROR"
	case TypeConsumerClosed:
		return "CONSUMER_CLOSED"
	case TypePong:
		return "PONG"
	case TypeGoAway:
		return "GOAWAY"
	}
	return fmt.Sprintf("FrameType(0x%02x)", uint8(t))
}

// Code is an error or status code carried by ERROR, CONSUMER_CLOSED, GOAWAY
// frames and by the handshake answer.
type Code uint16

// Codes. Zero means success.
const (
	CodeOK               Code = 0
	CodeUnknownQueue     Code = 1
	CodeQueueFull        Code = 2
	CodeMessageTooLarge  Code = 3
	CodeTooManyPending   Code = 4
	CodeTimeout          Code = 5
	CodeBadRequest       Code = 6
	CodeShuttingDown     Code = 7
	CodeTooManyConsumers Code = 8
	CodeQueueDeleted     Code = 9
	CodeInternal         Code = 10
	CodeDuplicateID      Code = 11
	CodeVersion          Code = 12
	CodeTooManyConns     Code = 13
	CodeHandshakeTimeout Code = 14
	CodeWriteTimeout     Code = 15
)

func (c Code) String() string {
	switch c {
	case CodeOK:
		return "ok"
	case CodeUnknownQueue:
		return "unknown queue"
	case CodeQueueFull:
		return "queue full"
	case CodeMessageTooLarge:
		return "message too large"
	case CodeTooManyPending:
		return "too many pending sends"
	case CodeTimeout:
		return "timeout"
	case CodeBadRequest:
		return "bad request"
	case CodeShuttingDown:
		return "broker shutting down"
	case CodeTooManyConsumers:
		return "too many consumers"
	case CodeQueueDeleted:
		return "queue deleted"
	case CodeInternal:
		return "internal error"
	case CodeDuplicateID:
		return "duplicate consumer id"
	case CodeVersion:
		return "unsupported protocol version"
	case CodeTooManyConns:
		return "too many connections"
	case CodeHandshakeTimeout:
		return "handshake timeout"
	case CodeWriteTimeout:
		return "write timeout"
	}
	return fmt.Sprintf("code %d", uint16(c))
}

// Decoding errors. Every error returned by this package wraps one of them.
var (
	// ErrMalformed reports bytes that do not follow the protocol.
	ErrMalformed = errors.New("malformed frame")
	// ErrFrameTooLarge reports a frame whose declared length exceeds the limit.
	ErrFrameTooLarge = errors.New("frame too large")
)

var le = binary.LittleEndian

// Hello is the client's half of the handshake.
type Hello struct {
	MinVersion, MaxVersion uint16
	// MaxFrame is the largest frame the client accepts; 0 means no preference.
	MaxFrame uint32
}

// AppendHello encodes h.
func AppendHello(b []byte, h Hello) []byte {
	b = append(b, Magic...)
	b = le.AppendUint16(b, h.MinVersion)
	b = le.AppendUint16(b, h.MaxVersion)
	return le.AppendUint32(b, h.MaxFrame)
}

// ParseHello decodes a client handshake of exactly HelloSize bytes.
func ParseHello(p []byte) (Hello, error) {
	if len(p) != HelloSize || string(p[:4]) != Magic {
		return Hello{}, fmt.Errorf("%w: bad handshake magic", ErrMalformed)
	}
	h := Hello{MinVersion: le.Uint16(p[4:]), MaxVersion: le.Uint16(p[6:]), MaxFrame: le.Uint32(p[8:])}
	if h.MinVersion == 0 || h.MinVersion > h.MaxVersion {
		return Hello{}, fmt.Errorf("%w: bad version range %d..%d", ErrMalformed, h.MinVersion, h.MaxVersion)
	}
	return h, nil
}

// Welcome is the broker's half of the handshake: the chosen version or a
// refusal, and the limits the client must respect.
type Welcome struct {
	Version uint16
	Status  Code
	// MaxFrame bounds the length field of every frame, in both directions.
	MaxFrame uint32
	// MaxMessage bounds a message body.
	MaxMessage uint32
	// MaxPendingSends bounds the unconfirmed SENDs of a connection.
	MaxPendingSends uint32
	// MaxPendingBytes bounds the body bytes of unconfirmed SENDs; a single
	// SEND is always allowed when none is pending.
	MaxPendingBytes uint32
	// MaxPrefetch bounds the prefetch of one consumer.
	MaxPrefetch uint32
	// MaxConsumers bounds the consumers of one connection.
	MaxConsumers uint32
}

// AppendWelcome encodes w.
func AppendWelcome(b []byte, w Welcome) []byte {
	b = append(b, Magic...)
	b = le.AppendUint16(b, w.Version)
	b = le.AppendUint16(b, uint16(w.Status))
	for _, v := range [...]uint32{w.MaxFrame, w.MaxMessage, w.MaxPendingSends, w.MaxPendingBytes, w.MaxPrefetch, w.MaxConsumers} {
		b = le.AppendUint32(b, v)
	}
	return b
}

// ParseWelcome decodes a broker handshake answer of exactly WelcomeSize bytes.
// A refusal (Status != CodeOK) is returned without error.
func ParseWelcome(p []byte) (Welcome, error) {
	if len(p) != WelcomeSize || string(p[:4]) != Magic {
		return Welcome{}, fmt.Errorf("%w: bad handshake magic", ErrMalformed)
	}
	w := Welcome{
		Version:         le.Uint16(p[4:]),
		Status:          Code(le.Uint16(p[6:])),
		MaxFrame:        le.Uint32(p[8:]),
		MaxMessage:      le.Uint32(p[12:]),
		MaxPendingSends: le.Uint32(p[16:]),
		MaxPendingBytes: le.Uint32(p[20:]),
		MaxPrefetch:     le.Uint32(p[24:]),
		MaxConsumers:    le.Uint32(p[28:]),
	}
	if w.Status != CodeOK {
		return w, nil
	}
	if w.MaxFrame < MinFrameLimit || w.MaxMessage == 0 || w.MaxMessage > w.MaxFrame ||
		w.MaxPendingSends == 0 || w.MaxPrefetch == 0 || w.MaxConsumers == 0 {
		return Welcome{}, fmt.Errorf("%w: implausible limits in handshake", ErrMalformed)
	}
	return w, nil
}
