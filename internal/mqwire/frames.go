package mqwire

import "fmt"

// Delivery modes carried by CONSUME_OK.
const (
	ModeAtLeastOnce uint8 = 1
	ModeAtMostOnce  uint8 = 2
)

// Fixed payload sizes (after the type byte).
const (
	sendFixed      = 14
	consumeFixed   = 13
	cancelSize     = 8
	ackFixed       = 4
	nackFixed      = 5
	creditSize     = 8
	pingSize       = 8
	sendOKSize     = 12
	consumeOKSize  = 9
	cancelOKSize   = 4
	deliverFixed   = 33
	errorFixed     = 6
	closedFixed    = 6
	goAwayFixed    = 2
	maxErrorText   = 1024
	tagSize        = 8
	lengthAndType  = HeaderSize
	lengthFieldLen = 4
)

// DeliverOverhead is the size of a DELIVER frame without its body; a broker
// advertises MaxFrame >= MaxMessage + DeliverOverhead.
const DeliverOverhead = HeaderSize + deliverFixed

// SendOverhead is the size of a SEND frame without its queue name and body.
const SendOverhead = HeaderSize + sendFixed

// Begin starts a frame of type t at the end of b and returns the extended
// buffer and the frame's offset, to be passed to End.
func Begin(b []byte, t FrameType) ([]byte, int) {
	start := len(b)
	return append(b, 0, 0, 0, 0, byte(t)), start
}

// End patches the length of the frame begun at start.
func End(b []byte, start int) []byte { return endBefore(b, start, 0) }

// endBefore patches the length of the frame begun at start, whose last
// rest bytes the caller writes after b.
func endBefore(b []byte, start, rest int) []byte {
	le.PutUint32(b[start:], uint32(len(b)-start-lengthFieldLen+rest))
	return b
}

// Send is a decoded SEND frame. Queue and Body alias the frame buffer.
type Send struct {
	Req       uint32
	Priority  uint8
	TTLMillis uint32
	// TimeoutMillis bounds how long a blocked send may wait for space; 0 means
	// until the connection closes.
	TimeoutMillis uint32
	Queue         []byte
	Body          []byte
}

// AppendSend encodes a SEND frame.
func AppendSend(b []byte, req uint32, priority uint8, ttlMillis, timeoutMillis uint32, queue string, body []byte) []byte {
	b, s := beginSend(b, req, priority, ttlMillis, timeoutMillis, queue)
	b = append(b, body...)
	return End(b, s)
}

// AppendSendHeader encodes a SEND frame but for its body of bodyLen bytes,
// which the caller writes right after it.
func AppendSendHeader(b []byte, req uint32, priority uint8, ttlMillis, timeoutMillis uint32, queue string, bodyLen int) []byte {
	b, s := beginSend(b, req, priority, ttlMillis, timeoutMillis, queue)
	return endBefore(b, s, bodyLen)
}

func beginSend(b []byte, req uint32, priority uint8, ttlMillis, timeoutMillis uint32, queue string) ([]byte, int) {
	b, s := Begin(b, TypeSend)
	b = le.AppendUint32(b, req)
	b = append(b, priority, uint8(len(queue)))
	b = le.AppendUint32(b, ttlMillis)
	b = le.AppendUint32(b, timeoutMillis)
	b = append(b, queue...)
	return b, s
}

// ParseSend decodes a SEND payload.
func ParseSend(p []byte) (Send, error) {
	if len(p) < sendFixed {
		return Send{}, short(TypeSend)
	}
	qlen := int(p[5])
	if qlen == 0 || len(p) < sendFixed+qlen {
		return Send{}, fmt.Errorf("%w: SEND queue name length %d", ErrMalformed, qlen)
	}
	s := Send{
		Req:           le.Uint32(p),
		Priority:      p[4],
		TTLMillis:     le.Uint32(p[6:]),
		TimeoutMillis: le.Uint32(p[10:]),
		Queue:         p[sendFixed : sendFixed+qlen],
		Body:          p[sendFixed+qlen:],
	}
	if s.Priority > MaxPriority {
		return Send{}, fmt.Errorf("%w: SEND priority %d > %d", ErrMalformed, s.Priority, MaxPriority)
	}
	return s, nil
}

// Consume is a decoded CONSUME frame.
type Consume struct {
	Req      uint32
	Consumer uint32
	Prefetch uint32
	Queue    []byte
}

// AppendConsume encodes a CONSUME frame.
func AppendConsume(b []byte, req, consumer, prefetch uint32, queue string) []byte {
	b, s := Begin(b, TypeConsume)
	b = le.AppendUint32(b, req)
	b = le.AppendUint32(b, consumer)
	b = le.AppendUint32(b, prefetch)
	b = append(b, uint8(len(queue)))
	b = append(b, queue...)
	return End(b, s)
}

// ParseConsume decodes a CONSUME payload.
func ParseConsume(p []byte) (Consume, error) {
	if len(p) < consumeFixed {
		return Consume{}, short(TypeConsume)
	}
	qlen := int(p[12])
	if qlen == 0 || len(p) != consumeFixed+qlen {
		return Consume{}, fmt.Errorf("%w: CONSUME queue name length %d", ErrMalformed, qlen)
	}
	c := Consume{Req: le.Uint32(p), Consumer: le.Uint32(p[4:]), Prefetch: le.Uint32(p[8:]), Queue: p[consumeFixed:]}
	if c.Prefetch == 0 {
		return Consume{}, fmt.Errorf("%w: CONSUME prefetch 0", ErrMalformed)
	}
	return c, nil
}

// Cancel is a decoded CANCEL frame.
type Cancel struct{ Req, Consumer uint32 }

// AppendCancel encodes a CANCEL frame.
func AppendCancel(b []byte, req, consumer uint32) []byte {
	b, s := Begin(b, TypeCancel)
	b = le.AppendUint32(b, req)
	b = le.AppendUint32(b, consumer)
	return End(b, s)
}

// ParseCancel decodes a CANCEL payload.
func ParseCancel(p []byte) (Cancel, error) {
	if len(p) != cancelSize {
		return Cancel{}, short(TypeCancel)
	}
	return Cancel{Req: le.Uint32(p), Consumer: le.Uint32(p[4:])}, nil
}

// Settle is a decoded ACK or NACK frame: one or more delivery tags of one
// consumer.
type Settle struct {
	Consumer uint32
	// Requeue is set for a NACK that asks for redelivery.
	Requeue bool
	tags    []byte
}

// Len returns the number of delivery tags.
func (s Settle) Len() int { return len(s.tags) / tagSize }

// Tag returns the i-th delivery tag.
func (s Settle) Tag(i int) uint64 { return le.Uint64(s.tags[i*tagSize:]) }

// AppendAck encodes an ACK frame carrying tags.
func AppendAck(b []byte, consumer uint32, tags ...uint64) []byte {
	b, s := Begin(b, TypeAck)
	b = le.AppendUint32(b, consumer)
	for _, t := range tags {
		b = le.AppendUint64(b, t)
	}
	return End(b, s)
}

// AppendNack encodes a NACK frame carrying tags.
func AppendNack(b []byte, consumer uint32, requeue bool, tags ...uint64) []byte {
	b, s := Begin(b, TypeNack)
	b = le.AppendUint32(b, consumer)
	b = append(b, boolByte(requeue))
	for _, t := range tags {
		b = le.AppendUint64(b, t)
	}
	return End(b, s)
}

// AppendTag adds one delivery tag to the ACK or NACK frame begun at start,
// which must be the last frame in b. It lets a writer coalesce settlements.
func AppendTag(b []byte, start int, tag uint64) []byte {
	return End(le.AppendUint64(b, tag), start)
}

// ParseAck decodes an ACK payload.
func ParseAck(p []byte) (Settle, error) {
	if len(p) < ackFixed+tagSize || (len(p)-ackFixed)%tagSize != 0 {
		return Settle{}, short(TypeAck)
	}
	return Settle{Consumer: le.Uint32(p), tags: p[ackFixed:]}, nil
}

// ParseNack decodes a NACK payload.
func ParseNack(p []byte) (Settle, error) {
	if len(p) < nackFixed+tagSize || (len(p)-nackFixed)%tagSize != 0 || p[4] > 1 {
		return Settle{}, short(TypeNack)
	}
	return Settle{Consumer: le.Uint32(p), Requeue: p[4] == 1, tags: p[nackFixed:]}, nil
}

// Credit is a decoded CREDIT frame.
type Credit struct{ Consumer, N uint32 }

// AppendCredit encodes a CREDIT frame.
func AppendCredit(b []byte, consumer, n uint32) []byte {
	b, s := Begin(b, TypeCredit)
	b = le.AppendUint32(b, consumer)
	b = le.AppendUint32(b, n)
	return End(b, s)
}

// AddCredit increments the count of the CREDIT frame begun at start.
func AddCredit(b []byte, start int, n uint32) {
	off := start + lengthAndType + 4
	le.PutUint32(b[off:], le.Uint32(b[off:])+n)
}

// ParseCredit decodes a CREDIT payload.
func ParseCredit(p []byte) (Credit, error) {
	if len(p) != creditSize {
		return Credit{}, short(TypeCredit)
	}
	c := Credit{Consumer: le.Uint32(p), N: le.Uint32(p[4:])}
	if c.N == 0 {
		return Credit{}, fmt.Errorf("%w: CREDIT of 0", ErrMalformed)
	}
	return c, nil
}

// AppendPing encodes a PING (or, with TypePong, a PONG) frame.
func AppendPing(b []byte, t FrameType, token uint64) []byte {
	b, s := Begin(b, t)
	b = le.AppendUint64(b, token)
	return End(b, s)
}

// ParsePing decodes a PING or PONG payload.
func ParsePing(p []byte) (uint64, error) {
	if len(p) != pingSize {
		return 0, short(TypePing)
	}
	return le.Uint64(p), nil
}

// SendOK is a decoded SEND_OK frame.
type SendOK struct {
	Req uint32
	ID  uint64
}

// AppendSendOK encodes a SEND_OK frame.
func AppendSendOK(b []byte, req uint32, id uint64) []byte {
	b, s := Begin(b, TypeSendOK)
	b = le.AppendUint32(b, req)
	b = le.AppendUint64(b, id)
	return End(b, s)
}

// ParseSendOK decodes a SEND_OK payload.
func ParseSendOK(p []byte) (SendOK, error) {
	if len(p) != sendOKSize {
		return SendOK{}, short(TypeSendOK)
	}
	return SendOK{Req: le.Uint32(p), ID: le.Uint64(p[4:])}, nil
}

// ConsumeOK is a decoded CONSUME_OK frame.
type ConsumeOK struct {
	Req      uint32
	Mode     uint8
	Prefetch uint32
}

// AppendConsumeOK encodes a CONSUME_OK frame.
func AppendConsumeOK(b []byte, req uint32, mode uint8, prefetch uint32) []byte {
	b, s := Begin(b, TypeConsumeOK)
	b = le.AppendUint32(b, req)
	b = append(b, mode)
	b = le.AppendUint32(b, prefetch)
	return End(b, s)
}

// ParseConsumeOK decodes a CONSUME_OK payload.
func ParseConsumeOK(p []byte) (ConsumeOK, error) {
	if len(p) != consumeOKSize {
		return ConsumeOK{}, short(TypeConsumeOK)
	}
	c := ConsumeOK{Req: le.Uint32(p), Mode: p[4], Prefetch: le.Uint32(p[5:])}
	if (c.Mode != ModeAtLeastOnce && c.Mode != ModeAtMostOnce) || c.Prefetch == 0 {
		return ConsumeOK{}, fmt.Errorf("%w: CONSUME_OK mode %d prefetch %d", ErrMalformed, c.Mode, c.Prefetch)
	}
	return c, nil
}

// AppendCancelOK encodes a CANCEL_OK frame.
func AppendCancelOK(b []byte, req uint32) []byte {
	b, s := Begin(b, TypeCancelOK)
	b = le.AppendUint32(b, req)
	return End(b, s)
}

// ParseCancelOK decodes a CANCEL_OK payload and returns its request id.
func ParseCancelOK(p []byte) (uint32, error) {
	if len(p) != cancelOKSize {
		return 0, short(TypeCancelOK)
	}
	return le.Uint32(p), nil
}

// Deliver is a decoded DELIVER frame. Body aliases the frame buffer.
type Deliver struct {
	Consumer   uint32
	Tag        uint64
	ID         uint64
	EnqueuedAt int64 // Unix nanoseconds
	Deliveries uint32
	Priority   uint8
	Body       []byte
}

// AppendDeliver encodes a DELIVER frame.
func AppendDeliver(b []byte, d Deliver) []byte {
	b, s := beginDeliver(b, d)
	b = append(b, d.Body...)
	return End(b, s)
}

// AppendDeliverHeader encodes a DELIVER frame but for its body, d.Body,
// which the caller writes right after it.
func AppendDeliverHeader(b []byte, d Deliver) []byte {
	b, s := beginDeliver(b, d)
	return endBefore(b, s, len(d.Body))
}

func beginDeliver(b []byte, d Deliver) ([]byte, int) {
	b, s := Begin(b, TypeDeliver)
	b = le.AppendUint32(b, d.Consumer)
	b = le.AppendUint64(b, d.Tag)
	b = le.AppendUint64(b, d.ID)
	b = le.AppendUint64(b, uint64(d.EnqueuedAt))
	b = le.AppendUint32(b, d.Deliveries)
	b = append(b, d.Priority)
	return b, s
}

// ParseDeliver decodes a DELIVER payload.
func ParseDeliver(p []byte) (Deliver, error) {
	if len(p) < deliverFixed {
		return Deliver{}, short(TypeDeliver)
	}
	d := Deliver{
		Consumer:   le.Uint32(p),
		Tag:        le.Uint64(p[4:]),
		ID:         le.Uint64(p[12:]),
		EnqueuedAt: int64(le.Uint64(p[20:])),
		Deliveries: le.Uint32(p[28:]),
		Priority:   p[32],
		Body:       p[deliverFixed:],
	}
	if d.Deliveries == 0 || d.Priority > MaxPriority {
		return Deliver{}, fmt.Errorf("%w: DELIVER deliveries %d priority %d", ErrMalformed, d.Deliveries, d.Priority)
	}
	return d, nil
}

// Error is a decoded ERROR, CONSUMER_CLOSED or GOAWAY frame. For ERROR, ID is
// the request id (0 for the connection); for CONSUMER_CLOSED, the consumer id.
type Error struct {
	ID   uint32
	Code Code
	Text string
}

// AppendError encodes an ERROR (t == TypeError) or CONSUMER_CLOSED frame.
func AppendError(b []byte, t FrameType, id uint32, code Code, text string) []byte {
	b, s := Begin(b, t)
	b = le.AppendUint32(b, id)
	b = le.AppendUint16(b, uint16(code))
	b = append(b, truncate(text)...)
	return End(b, s)
}

// ParseError decodes an ERROR or CONSUMER_CLOSED payload.
func ParseError(p []byte) (Error, error) {
	if len(p) < errorFixed || len(p) > errorFixed+maxErrorText {
		return Error{}, short(TypeError)
	}
	e := Error{ID: le.Uint32(p), Code: Code(le.Uint16(p[4:])), Text: string(p[errorFixed:])}
	if e.Code == CodeOK {
		return Error{}, fmt.Errorf("%w: error frame with code 0", ErrMalformed)
	}
	return e, nil
}

// AppendGoAway encodes a GOAWAY frame.
func AppendGoAway(b []byte, code Code, text string) []byte {
	b, s := Begin(b, TypeGoAway)
	b = le.AppendUint16(b, uint16(code))
	b = append(b, truncate(text)...)
	return End(b, s)
}

// ParseGoAway decodes a GOAWAY payload.
func ParseGoAway(p []byte) (Error, error) {
	if len(p) < goAwayFixed || len(p) > goAwayFixed+maxErrorText {
		return Error{}, short(TypeGoAway)
	}
	return Error{Code: Code(le.Uint16(p)), Text: string(p[goAwayFixed:])}, nil
}

func truncate(s string) string {
	if len(s) > maxErrorText {
		return s[:maxErrorText]
	}
	return s
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

func short(t FrameType) error {
	return fmt.Errorf("%w: bad %s payload size", ErrMalformed, t)
}
