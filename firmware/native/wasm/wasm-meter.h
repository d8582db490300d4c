/*
 * Execution budget for wasm3, which has no fuel counter of its own: before a module is parsed, every
 * loop header and every 32 instructions of straight-line code get a call to an added empty function.
 * wasm3 calls m3_Yield() on every function call (op Call and CallIndirect), so every loop iteration,
 * every call and every 32 instructions pass through m3_Yield, which the binding defines to spend one
 * unit of the call's budget and trap when none is left.
 */

#ifndef KESTREL_WASM_METER_H
#define KESTREL_WASM_METER_H

#include <stddef.h>
#include <stdint.h>

/*
 * Writes a metered copy of the module into *out (malloc'd, the caller frees it). Returns NULL on
 * success, else a message naming what was refused: a malformed module, an instruction the meter
 * cannot walk (SIMD, exceptions, tail calls), or an import that is not a function.
 */
const char *wasm_meter(const uint8_t *wasm, size_t length, uint8_t **out, size_t *outLength);

#endif
