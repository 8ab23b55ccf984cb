package harness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Every benchmark message carries stamps that let the receiver prove it got
// the message it expected, whole: a header {seq uint64, size uint32, flags
// uint32} at the start and seq again in the last 8 bytes (little endian).
// The bytes between are a fixed pattern; receivers checksum it on a sample of
// messages. The C ring uses the same stamps (bench/cring/ring.c).
const (
	headerLen  = 16
	trailerLen = 8

	// MinSize is the smallest message the stamps fit in.
	MinSize = headerLen + trailerLen

	// flagLast marks the final message of a run: the peer stops after it.
	flagLast uint32 = 1
)

// ErrCorrupt reports a message whose stamps or payload are not those sent.
var ErrCorrupt = errors.New("corrupt message")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// newMessage returns a size-byte buffer holding the payload pattern.
func newMessage(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i*131 + 7)
	}
	return b
}

// payloadSum is the checksum of the pattern part of a size-byte message.
func payloadSum(size int) uint32 {
	return crc32.Checksum(newMessage(size)[headerLen:size-trailerLen], castagnoli)
}

// stamp writes the header and trailer of message seq into msg.
func stamp(msg []byte, seq uint64, flags uint32) {
	binary.LittleEndian.PutUint64(msg[0:8], seq)
	binary.LittleEndian.PutUint32(msg[8:12], uint32(len(msg)))
	binary.LittleEndian.PutUint32(msg[12:16], flags)
	binary.LittleEndian.PutUint64(msg[len(msg)-trailerLen:], seq)
}

// flags returns the flags of a stamped message.
func flags(msg []byte) uint32 {
	return binary.LittleEndian.Uint32(msg[12:16])
}

// checkStamps verifies that msg is message seq of size bytes. It is cheap
// enough for every message of a timed loop and does not allocate unless the
// message is corrupt.
func checkStamps(msg []byte, seq uint64, size int) error {
	if len(msg) != size {
		return fmt.Errorf("%w: message %d has %d bytes, want %d", ErrCorrupt, seq, len(msg), size)
	}
	head := binary.LittleEndian.Uint64(msg[0:8])
	n := binary.LittleEndian.Uint32(msg[8:12])
	tail := binary.LittleEndian.Uint64(msg[size-trailerLen:])
	if head != seq || tail != seq || n != uint32(size) {
		return fmt.Errorf("%w: want message %d of %d bytes, got header seq %d size %d, trailer seq %d",
			ErrCorrupt, seq, size, head, n, tail)
	}
	return nil
}

// checkPayload verifies the pattern bytes of msg against sum (from payloadSum).
func checkPayload(msg []byte, seq uint64, sum uint32) error {
	if got := crc32.Checksum(msg[headerLen:len(msg)-trailerLen], castagnoli); got != sum {
		return fmt.Errorf("%w: message %d payload checksum %08x, want %08x", ErrCorrupt, seq, got, sum)
	}
	return nil
}
