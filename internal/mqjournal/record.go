// Package mqjournal is the append-only journal that makes a podipc message
// queue survive a broker crash: one file per queue on the pod's tmpfs holding
// checksummed ENQUEUE, DELIVERED and REMOVE records, replayed on start (a torn tail
// record is cut off) and rewritten from the live messages when it is mostly
// dead. The format is described in docs/mq-protocol.md.
package mqjournal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Record types.
const (
	RecordEnqueue uint8 = 1
	RecordRemove  uint8 = 2
	// RecordDelivered carries a message's delivery count (format version 2).
	RecordDelivered uint8 = 3
)

const (
	// fileMagic and fileVersion open every journal file. Version 1 files
	// (no DELIVERED records) are read too, and rewritten as version 2.
	fileMagic     = "PDMQJRNL"
	fileVersion   = 2
	fileVersionV1 = 1
	headerSize    = 16
	// recordHeader is a u32 length of type+payload and a u32 CRC-32C of them.
	recordHeader = 8
	enqueueFixed = 1 + 8 + 8 + 8 + 1
	removeSize   = 1 + 8
	// deliveredSize is a DELIVERED record's type, id and u32 count.
	deliveredSize = 1 + 8 + 4
)

// DeliveredSize is the encoded size of a DELIVERED record.
const DeliveredSize = recordHeader + deliveredSize

// RecordOverhead is the size of an ENQUEUE record without its body.
const RecordOverhead = recordHeader + enqueueFixed

var (
	// ErrTruncated reports a record cut short by the end of the data.
	ErrTruncated = errors.New("truncated journal record")
	// ErrCorrupt reports a record whose length, checksum or type is wrong.
	ErrCorrupt = errors.New("corrupt journal record")
)

var (
	le         = binary.LittleEndian
	castagnoli = crc32.MakeTable(crc32.Castagnoli)
)

// Message is the journaled form of a queued message.
type Message struct {
	ID         uint64
	Priority   uint8
	EnqueuedAt int64 // Unix nanoseconds
	ExpiresAt  int64 // Unix nanoseconds; 0 means never
	// Deliveries is how often the message was delivered (DELIVERED records).
	Deliveries uint32
	Body       []byte
}

// Record is one decoded journal record. For RecordRemove only Message.ID is
// set; for RecordDelivered, Message.ID and Message.Deliveries.
type Record struct {
	Type    uint8
	Message Message
}

// AppendEnqueue encodes an ENQUEUE record for m.
func AppendEnqueue(b []byte, m Message) []byte {
	start := len(b)
	b = append(b, make([]byte, recordHeader)...)
	b = append(b, RecordEnqueue)
	b = le.AppendUint64(b, m.ID)
	b = le.AppendUint64(b, uint64(m.EnqueuedAt))
	b = le.AppendUint64(b, uint64(m.ExpiresAt))
	b = append(b, m.Priority)
	b = append(b, m.Body...)
	return seal(b, start)
}

// AppendRemove encodes a REMOVE record for the message id.
func AppendRemove(b []byte, id uint64) []byte {
	start := len(b)
	b = append(b, make([]byte, recordHeader)...)
	b = append(b, RecordRemove)
	b = le.AppendUint64(b, id)
	return seal(b, start)
}

// AppendDelivered encodes a DELIVERED record: the message id has been
// delivered deliveries times.
func AppendDelivered(b []byte, id uint64, deliveries uint32) []byte {
	start := len(b)
	b = append(b, make([]byte, recordHeader)...)
	b = append(b, RecordDelivered)
	b = le.AppendUint64(b, id)
	b = le.AppendUint32(b, deliveries)
	return seal(b, start)
}

func seal(b []byte, start int) []byte {
	body := b[start+recordHeader:]
	le.PutUint32(b[start:], uint32(len(body)))
	le.PutUint32(b[start+4:], crc32.Checksum(body, castagnoli))
	return b
}

// DecodeRecord decodes the record at the start of b, rejecting any whose
// length exceeds maxRecord before looking further. It returns the record and
// its encoded size. Body aliases b. Errors wrap ErrTruncated or ErrCorrupt.
func DecodeRecord(b []byte, maxRecord int) (Record, int, error) {
	if len(b) < recordHeader {
		return Record{}, 0, ErrTruncated
	}
	n := int(le.Uint32(b))
	if n < removeSize || n > maxRecord {
		return Record{}, 0, fmt.Errorf("%w: length %d", ErrCorrupt, n)
	}
	if len(b) < recordHeader+n {
		return Record{}, 0, ErrTruncated
	}
	body := b[recordHeader : recordHeader+n]
	if crc32.Checksum(body, castagnoli) != le.Uint32(b[4:]) {
		return Record{}, 0, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	r := Record{Type: body[0]}
	switch r.Type {
	case RecordEnqueue:
		if n < enqueueFixed {
			return Record{}, 0, fmt.Errorf("%w: short ENQUEUE", ErrCorrupt)
		}
		r.Message = Message{
			ID:         le.Uint64(body[1:]),
			EnqueuedAt: int64(le.Uint64(body[9:])),
			ExpiresAt:  int64(le.Uint64(body[17:])),
			Priority:   body[25],
			Body:       body[enqueueFixed:],
		}
	case RecordRemove:
		if n != removeSize {
			return Record{}, 0, fmt.Errorf("%w: bad REMOVE length", ErrCorrupt)
		}
		r.Message.ID = le.Uint64(body[1:])
	case RecordDelivered:
		if n != deliveredSize {
			return Record{}, 0, fmt.Errorf("%w: bad DELIVERED length", ErrCorrupt)
		}
		r.Message.ID = le.Uint64(body[1:])
		r.Message.Deliveries = le.Uint32(body[9:])
	default:
		return Record{}, 0, fmt.Errorf("%w: unknown type %d", ErrCorrupt, r.Type)
	}
	return r, recordHeader + n, nil
}

// EnqueueSize is the encoded size of an ENQUEUE record with a body of n bytes.
func EnqueueSize(n int) int { return RecordOverhead + n }

func appendHeader(b []byte) []byte { return appendVersionHeader(b, fileVersion) }

func appendVersionHeader(b []byte, version uint32) []byte {
	b = append(b, fileMagic...)
	b = le.AppendUint32(b, version)
	return le.AppendUint32(b, 0)
}

// headerVersion returns the format version of a journal that starts with
// data: 0 if data is a torn header (a prefix of a valid one), an error if it
// is no journal of a version this package reads.
func headerVersion(data []byte) (uint32, error) {
	for _, v := range [...]uint32{fileVersion, fileVersionV1} {
		h := appendVersionHeader(nil, v)
		switch {
		case len(data) < headerSize && bytes.HasPrefix(h, data):
			return 0, nil
		case len(data) >= headerSize && bytes.Equal(data[:headerSize], h):
			return v, nil
		}
	}
	if len(data) < headerSize {
		return 0, fmt.Errorf("%w: not a journal (bad header)", ErrCorrupt)
	}
	return 0, fmt.Errorf("%w: not a journal or unsupported version", ErrCorrupt)
}
