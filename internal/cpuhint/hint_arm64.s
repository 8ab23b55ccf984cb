#include "textflag.h"

// func Relax()
TEXT ·Relax(SB), NOSPLIT|NOFRAME, $0-0
	YIELD
	RET

// func PrefetchWrite(addr unsafe.Pointer)
TEXT ·PrefetchWrite(SB), NOSPLIT, $0-8
	MOVD addr+0(FP), R0
	PRFM (R0), PSTL1KEEP
	RET
