package shm

import (
	"encoding/binary"
	"hash/crc32"
)

// The byte layout of a channel file. docs/shm-layout.md is the normative
// description; every constant here appears there with the same value.
const (
	// Magic is the first 8 bytes of every channel file.
	Magic = "PODIPCSH"
	// LayoutVersion is the version of the layout this package reads and writes.
	LayoutVersion = 1

	lineSize  = 128 // hot words get a 128-byte line to defeat adjacent-line prefetch
	cacheLine = 64  // one CPU cache line
	slotAlign = cacheLine
	pageSize  = 4096

	// Header lines.
	offConfig   = 0x000 // static configuration, written once before the file is published
	offTail     = 0x080 // uint64: next position a producer claims
	offHead     = 0x100 // uint64: next position a consumer claims (Queue)
	offData     = 0x180 // uint32 dataSignal, uint32 dataWaiters
	offSpace    = 0x200 // uint32 spaceSignal, uint32 spaceWaiters
	offControl  = 0x280 // control words, see below
	offRetired  = 0x300 // counters folded in from peers that left
	headerBytes = 0x400 // peers start here

	// Config line fields.
	cfgMagic       = 0
	cfgVersion     = 8
	cfgHeaderBytes = 12
	cfgMode        = 16
	cfgOverflow    = 20
	cfgSlotSize    = 24
	cfgSlotStride  = 28
	cfgSlotCount   = 32
	cfgMaxPeers    = 36
	cfgPeersOff    = 40
	cfgSlotsOff    = 48
	cfgFileSize    = 56
	cfgCreated     = 64
	cfgChecksum    = 72 // CRC-32C (Castagnoli) of bytes [0, 72)
	cfgChecksummed = 72

	// Control line fields (offsets from offControl).
	ctlRedeliverGen     = 0  // uint64: bumped after a recovery marks slots REDELIVER
	ctlRedeliverScanned = 8  // uint64: highest generation a full scan found nothing for
	ctlPeerHighWater    = 16 // uint32: 1 + highest peer index ever registered
	ctlSubscriberEpoch  = 20 // uint32: bumped when a subscriber registers (Broadcast)
	ctlProducerLock     = 24 // lock byte (file offset offControl+24) of the single Broadcast producer

	// Retired counters (offsets from offRetired), each uint64.
	retSent        = 0
	retReceived    = 8
	retLost        = 16
	retRedelivered = 24
	retAbandoned   = 32
	retReaped      = 40
	retRepaired    = 48 // foreign slot words reset (docs/shm-layout.md §2.5)

	// Peer entries: maxPeers entries of peerBytes each from peersOffset.
	peerBytes       = 128
	peerState       = 0  // uint32: peerFree or peerActive
	peerRole        = 4  // uint32: Role
	peerPID         = 8  // uint32
	peerGeneration  = 12 // uint32: bumped by every registration of this index
	peerStarted     = 16 // int64: unix nanoseconds of registration
	peerCursor      = 24 // uint64: Broadcast subscriber's next position
	peerSent        = 32 // uint64 counters, written by the owner only
	peerReceived    = 40
	peerLost        = 48
	peerRedelivered = 56
	peerAbandoned   = 64

	peerFree   = 0
	peerActive = 1

	// Slot header: uint64 state word, uint32 length, uint32 reserved, payload.
	slotStateOff   = 0
	slotLenOff     = 8
	slotHeaderSize = 16

	// Limits.
	maxSlotSize  = 64 << 20
	maxSlotCount = 1 << 24
	maxPeerLimit = 4096
	maxFileSize  = 1 << 40
)

// Queue-mode slot state word: seq (48 bits) | state (4 bits) | owner (12 bits).
const (
	stFree      = 0
	stWriting   = 1
	stFull      = 2
	stReading   = 3
	stAbandoned = 4
	stRedeliver = 5

	seqShift   = 16
	stateShift = 12
	stateMask  = 0xF
	ownerMask  = 0xFFF
	seqBits    = 48
)

func packSlot(pos uint64, state, owner uint32) uint64 {
	return pos<<seqShift | uint64(state&stateMask)<<stateShift | uint64(owner&ownerMask)
}

func slotState(w uint64) uint32 { return uint32(w>>stateShift) & stateMask }
func slotOwner(w uint64) uint32 { return uint32(w) & ownerMask }

// seqDiff returns the signed distance from position pos to the 48-bit
// sequence stored in w, computed modulo 2^48 so that it survives wraparound.
func seqDiff(w, pos uint64) int64 {
	return int64((w>>seqShift-pos)<<(64-seqBits)) >> (64 - seqBits)
}

// Broadcast-mode slot stamps: 0 never written, (p+1)<<1|1 while position p
// is being written, (p+1)<<1 once it is committed.
func stampWriting(p uint64) uint64   { return (p+1)<<1 | 1 }
func stampCommitted(p uint64) uint64 { return (p + 1) << 1 }

// geometry is the derived, validated shape of a channel file.
type geometry struct {
	mode        Mode
	overflow    Overflow
	slotSize    uint32
	slotStride  uint32
	slotCount   uint32
	maxPeers    uint32
	peersOffset uint64
	slotsOffset uint64
	fileSize    uint64
	created     int64
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) / a * a }

// computeGeometry derives offsets and sizes from the user-visible options.
// The options must already be validated.
func computeGeometry(o Options) geometry {
	g := geometry{
		mode:       o.Mode,
		overflow:   o.Overflow,
		slotSize:   uint32(o.SlotSize),
		slotStride: uint32(alignUp(slotHeaderSize+uint64(o.SlotSize), slotAlign)),
		slotCount:  uint32(o.SlotCount),
		maxPeers:   uint32(o.MaxPeers),
	}
	g.peersOffset = headerBytes
	g.slotsOffset = alignUp(g.peersOffset+uint64(g.maxPeers)*peerBytes, pageSize)
	g.fileSize = g.slotsOffset + uint64(g.slotCount)*uint64(g.slotStride)
	return g
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeConfig writes the config line for g into b (at least lineSize bytes).
func encodeConfig(b []byte, g geometry) {
	le := binary.LittleEndian
	copy(b[cfgMagic:], Magic)
	le.PutUint32(b[cfgVersion:], LayoutVersion)
	le.PutUint32(b[cfgHeaderBytes:], headerBytes)
	le.PutUint32(b[cfgMode:], uint32(g.mode))
	le.PutUint32(b[cfgOverflow:], uint32(g.overflow))
	le.PutUint32(b[cfgSlotSize:], g.slotSize)
	le.PutUint32(b[cfgSlotStride:], g.slotStride)
	le.PutUint32(b[cfgSlotCount:], g.slotCount)
	le.PutUint32(b[cfgMaxPeers:], g.maxPeers)
	le.PutUint64(b[cfgPeersOff:], g.peersOffset)
	le.PutUint64(b[cfgSlotsOff:], g.slotsOffset)
	le.PutUint64(b[cfgFileSize:], g.fileSize)
	le.PutUint64(b[cfgCreated:], uint64(g.created))
	le.PutUint32(b[cfgChecksum:], crcOf(b[:cfgChecksummed]))
}

// decodeConfig validates the config line of a file of fileSize bytes and
// returns its geometry. Every failure is a *HeaderError.
func decodeConfig(b []byte, fileSize int64) (geometry, error) {
	le := binary.LittleEndian
	if fileSize < headerBytes || len(b) < lineSize {
		return geometry{}, headerErr(ErrTruncated, "size", "file is %d bytes, smaller than the %d-byte header", fileSize, headerBytes)
	}
	if string(b[cfgMagic:cfgMagic+8]) != Magic {
		return geometry{}, headerErr(ErrNotChannel, "magic", "got %q, want %q", b[cfgMagic:cfgMagic+8], Magic)
	}
	if v := le.Uint32(b[cfgVersion:]); v != LayoutVersion {
		return geometry{}, headerErr(ErrVersion, "version", "layout version %d, this library reads %d", v, LayoutVersion)
	}
	if got, want := le.Uint32(b[cfgChecksum:]), crcOf(b[:cfgChecksummed]); got != want {
		return geometry{}, headerErr(ErrCorrupt, "checksum", "header checksum %#08x, computed %#08x", got, want)
	}
	if hb := le.Uint32(b[cfgHeaderBytes:]); hb != headerBytes {
		return geometry{}, headerErr(ErrCorrupt, "headerBytes", "%d, want %d", hb, headerBytes)
	}
	o := Options{
		Mode:      Mode(le.Uint32(b[cfgMode:])),
		Overflow:  Overflow(le.Uint32(b[cfgOverflow:])),
		SlotSize:  int(le.Uint32(b[cfgSlotSize:])),
		SlotCount: int(le.Uint32(b[cfgSlotCount:])),
		MaxPeers:  int(le.Uint32(b[cfgMaxPeers:])),
	}
	if field, err := o.validate(); err != nil {
		return geometry{}, headerErr(ErrCorrupt, field, "%v", err)
	}
	want := computeGeometry(o)
	got := geometry{
		mode: o.Mode, overflow: o.Overflow, slotSize: uint32(o.SlotSize), slotCount: uint32(o.SlotCount), maxPeers: uint32(o.MaxPeers),
		slotStride:  le.Uint32(b[cfgSlotStride:]),
		peersOffset: le.Uint64(b[cfgPeersOff:]),
		slotsOffset: le.Uint64(b[cfgSlotsOff:]),
		fileSize:    le.Uint64(b[cfgFileSize:]),
		created:     int64(le.Uint64(b[cfgCreated:])),
	}
	want.created = got.created
	switch {
	case got.slotStride != want.slotStride:
		return geometry{}, headerErr(ErrCorrupt, "slotStride", "%d, want %d for slot size %d", got.slotStride, want.slotStride, o.SlotSize)
	case got.peersOffset != want.peersOffset:
		return geometry{}, headerErr(ErrCorrupt, "peersOffset", "%d, want %d", got.peersOffset, want.peersOffset)
	case got.slotsOffset != want.slotsOffset:
		return geometry{}, headerErr(ErrCorrupt, "slotsOffset", "%d, want %d", got.slotsOffset, want.slotsOffset)
	case got.fileSize != want.fileSize:
		return geometry{}, headerErr(ErrCorrupt, "fileSize", "header says %d bytes, geometry needs %d", got.fileSize, want.fileSize)
	case uint64(fileSize) < got.fileSize:
		return geometry{}, headerErr(ErrTruncated, "size", "file is %d bytes, header says %d", fileSize, got.fileSize)
	case uint64(fileSize) > got.fileSize:
		return geometry{}, headerErr(ErrCorrupt, "size", "file is %d bytes, header says %d", fileSize, got.fileSize)
	}
	return got, nil
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
