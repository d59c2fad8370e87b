// The header's one function is inline; SwiftPM builds a C target from at least one source file.
#include "prefetch.h"
