#include "textflag.h"

// DMB ISHLD
TEXT ·LoadLoad(SB), NOSPLIT|NOFRAME, $0-0
	DMB	$0x9
	RET

// DMB ISHST
TEXT ·StoreStore(SB), NOSPLIT|NOFRAME, $0-0
	DMB	$0xa
	RET
