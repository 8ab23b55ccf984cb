#include "textflag.h"

// func Relax()
TEXT ·Relax(SB), NOSPLIT|NOFRAME, $0-0
	PAUSE
	RET

// func PrefetchWrite(addr unsafe.Pointer)
TEXT ·PrefetchWrite(SB), NOSPLIT, $0-8
	MOVQ addr+0(FP), AX
	// PREFETCHW (AX): the Go assembler has no mnemonic for it. CPUs
	// without it (old Intel parts) execute it as a NOP.
	BYTE $0x0F; BYTE $0x0D; BYTE $0x08
	RET
