/*
 * kestrel/wasm-instance: one WebAssembly module in its own wasm3 runtime (its own linear memory and
 * value stack, so no module can reach another's memory). The same file is the native half on the
 * ESP32 (manifest platforms.esp32) and in the simulator's XS worker (firmware/sim/engine/worker).
 *
 * Limits: linear memory pages (a module asking for more at start is refused; memory.grow past the
 * limit returns -1), the wasm3 value stack in bytes (deeper recursion traps "stack overflow"), and
 * an execution budget per call, counted by m3_Yield below on every loop iteration and call (the
 * module is metered on load: wasm-meter.h). Imports are functions only, each linked by name to a
 * JavaScript function the caller passes in; any other import refuses the module.
 */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xsmc.h"

#include "m3_env.h"
#include "wasm3.h"
#include "wasm-meter.h"

/* Host functions take at most this many arguments (the plugin API needs three). */
#define WASM_MAX_ARGS 4
#define WASM_ERROR_LENGTH 160

static const char WASM_BUDGET_TRAP[] = "[trap] execution budget exhausted";
static const char WASM_NATIVE_STACK_TRAP[] = "[trap] native stack exhausted";

/*
 * wasm3 nests C calls for wasm calls, and its value-stack check does not bound the C stack: a deep
 * recursion could overflow the XS task's stack (10 to 15 KiB on the ESP32) before it traps. The C
 * stack a metered call may use below its entry, checked on every wasm call (frames on this 64-bit
 * host are about twice the Xtensa ones).
 */
#ifndef KESTREL_WASM_NATIVE_STACK_BYTES
#if defined(ESP32)
#define KESTREL_WASM_NATIVE_STACK_BYTES (4 * 1024)
#else
#define KESTREL_WASM_NATIVE_STACK_BYTES (8 * 1024)
#endif
#endif

typedef struct WasmInstanceRecord WasmInstanceRecord, *WasmInstance;

typedef struct {
	WasmInstance instance;
	uint16_t index;
} WasmImportLink;

struct WasmInstanceRecord {
	xsMachine *the;
	IM3Environment environment;
	IM3Runtime runtime;
	/* The metered module: wasm3 keeps pointers into it for the module's lifetime. */
	uint8_t *wasm;
	/* The import functions of the call in progress (an argument slot of that call), else NULL. */
	xsSlot *functions;
	int32_t fuelUsed;
	uint16_t importCount;
	char error[WASM_ERROR_LENGTH];
	WasmImportLink links[];
};

/* The budget of the call in progress; one call runs at a time (XS is single-threaded). */
static int32_t gWasmFuel;
static bool gWasmMetered;
/* Where the C stack stood when the metered call began (stacks grow down on both targets). */
static uintptr_t gWasmStackBase;

/* wasm3 calls this on every function call; the meter puts a call at every loop header. */
M3Result m3_Yield(void)
{
	if (!gWasmMetered)
		return m3Err_none;
	if (gWasmStackBase - (uintptr_t)__builtin_frame_address(0) > KESTREL_WASM_NATIVE_STACK_BYTES)
		return WASM_NATIVE_STACK_TRAP;
	if (gWasmFuel <= 0)
		return WASM_BUDGET_TRAP;
	gWasmFuel--;
	return m3Err_none;
}

void xs_wasm_instance_destructor(void *data)
{
	WasmInstance wi = data;
	if (!wi)
		return;
	if (wi->runtime)
		m3_FreeRuntime(wi->runtime); /* frees the modules loaded into it */
	if (wi->environment)
		m3_FreeEnvironment(wi->environment);
	free(wi->wasm);
	free(wi);
}

static WasmInstance wasm_instance(xsMachine *the)
{
	WasmInstance wi = xsmcGetHostDataValidate(xsThis, xs_wasm_instance_destructor);
	if (!wi)
		xsUnknownError("wasm instance closed");
	return wi;
}

/* Runs with the budget armed; the import functions stay reachable for the thunks meanwhile. */
static M3Result wasm_metered(WasmInstance wi, xsSlot *functions, int32_t fuel, IM3Function function, uint32_t argc, const void **argv)
{
	wi->functions = functions;
	wi->error[0] = 0;
	gWasmFuel = fuel;
	gWasmStackBase = (uintptr_t)__builtin_frame_address(0);
	gWasmMetered = true;
	M3Result result = function ? m3_Call(function, argc, argv) : m3_RunStart(wi->runtime->modules);
	gWasmMetered = false;
	wi->functions = NULL;
	wi->fuelUsed = fuel - gWasmFuel;
	return (result && wi->error[0]) ? wi->error : result;
}

static m3ApiRawFunction(wasm_import_thunk)
{
	WasmImportLink *link = (WasmImportLink *)_ctx->userdata;
	WasmInstance wi = link->instance;
	xsMachine *the = wi->the;
	IM3FuncType type = _ctx->function->funcType;
	uint16_t rets = type->numRets, argc = type->numArgs;
	M3Result trap = m3Err_none;
	(void)runtime;
	(void)_mem;
	if (!wi->functions)
		return "[trap] host function called outside a call";
	xsTry {
		xsSlot argv[WASM_MAX_ARGS], function, result;
		xsmcGetIndex(function, *wi->functions, link->index);
		for (uint16_t i = 0; i < argc; i++) {
			uint64_t *slot = &_sp[rets + i];
			switch (type->types[rets + i]) {
			case c_m3Type_i32: argv[i] = xsInteger(*(int32_t *)slot); break;
			case c_m3Type_i64: argv[i] = xsNumber((double)*(int64_t *)slot); break;
			case c_m3Type_f32: argv[i] = xsNumber(*(float *)slot); break;
			default: argv[i] = xsNumber(*(double *)slot); break;
			}
		}
		switch (argc) {
		case 0: result = xsCallFunction0(function, xsUndefined); break;
		case 1: result = xsCallFunction1(function, xsUndefined, argv[0]); break;
		case 2: result = xsCallFunction2(function, xsUndefined, argv[0], argv[1]); break;
		case 3: result = xsCallFunction3(function, xsUndefined, argv[0], argv[1], argv[2]); break;
		default: result = xsCallFunction4(function, xsUndefined, argv[0], argv[1], argv[2], argv[3]); break;
		}
		if (rets) {
			switch (type->types[0]) {
			case c_m3Type_i32: *(int32_t *)_sp = xsmcToInteger(result); break;
			case c_m3Type_i64: *(int64_t *)_sp = (int64_t)xsmcToNumber(result); break;
			case c_m3Type_f32: *(float *)_sp = (float)xsmcToNumber(result); break;
			default: *(double *)_sp = xsmcToNumber(result); break;
			}
		}
	}
	xsCatch {
		snprintf(wi->error, sizeof(wi->error), "[trap] host function %s.%s threw: %s", _ctx->function->import.moduleUtf8,
			_ctx->function->import.fieldUtf8, xsmcToString(xsException));
		trap = wi->error;
	}
	return trap;
}

static const char *wasm_signature(xsMachine *the, xsSlot *list, uint16_t index, char *name, size_t nameLength)
{
	xsmcGetIndex(xsResult, *list, index);
	snprintf(name, nameLength, "%s", xsmcToString(xsResult));
	return name;
}

/* Links every function import to the host function of the same "module.field" name. */
static const char *wasm_link(xsMachine *the, WasmInstance wi, IM3Module module)
{
	char key[96], signature[32];
	for (uint32_t i = 0; i < module->numFuncImports; i++) {
		IM3Function f = &module->functions[i];
		snprintf(key, sizeof(key), "%s.%s", f->import.moduleUtf8, f->import.fieldUtf8);
		uint16_t j = 0;
		for (; j < wi->importCount; j++) {
			xsmcGetIndex(xsResult, xsArg(3), j);
			if (!strcmp(xsmcToString(xsResult), key))
				break;
		}
		if (j == wi->importCount) {
			snprintf(wi->error, sizeof(wi->error), "unknown import %s", key);
			return wi->error;
		}
		if (f->funcType->numArgs > WASM_MAX_ARGS || f->funcType->numRets > 1) {
			snprintf(wi->error, sizeof(wi->error), "import %s has too many arguments or results", key);
			return wi->error;
		}
		wasm_signature(the, &xsArg(4), j, signature, sizeof(signature));
		wi->links[j] = (WasmImportLink){ wi, j };
		M3Result result = m3_LinkRawFunctionEx(module, f->import.moduleUtf8, f->import.fieldUtf8, signature, wasm_import_thunk, &wi->links[j]);
		if (result) {
			snprintf(wi->error, sizeof(wi->error), "import %s does not match the host's %s: %s", key, signature, result);
			return wi->error;
		}
	}
	return NULL;
}

/*
 * new WasmInstance(bytes, memoryPages, stackBytes, importNames, importSignatures, importFunctions, fuel):
 * meters, parses and loads the module, links its imports and runs its start function within fuel.
 */
void xs_wasm_instance(xsMachine *the)
{
	void *bytes;
	xsUnsignedValue length;
	xsmcVars(1);
	xsmcGetBufferReadable(xsArg(0), &bytes, &length);
	int32_t memoryPages = xsmcToInteger(xsArg(1));
	int32_t stackBytes = xsmcToInteger(xsArg(2));
	int32_t fuel = xsmcToInteger(xsArg(6));
	xsmcGet(xsVar(0), xsArg(3), xsID("length"));
	int32_t importCount = xsmcToInteger(xsVar(0));
	if (memoryPages < 0 || stackBytes < 1024 || importCount < 0 || importCount > 64 || fuel < 0)
		xsRangeError("invalid wasm instance limits");

	WasmInstance wi = calloc(1, sizeof(WasmInstanceRecord) + importCount * sizeof(WasmImportLink));
	if (!wi)
		xsUnknownError("no memory for a wasm instance");
	wi->the = the;
	wi->importCount = (uint16_t)importCount;
	size_t meteredLength;
	const char *error = wasm_meter(bytes, length, &wi->wasm, &meteredLength);
	IM3Module module = NULL;
	if (!error) {
		wi->environment = m3_NewEnvironment();
		wi->runtime = wi->environment ? m3_NewRuntime(wi->environment, stackBytes, wi) : NULL;
		error = wi->runtime ? m3_ParseModule(wi->environment, &module, wi->wasm, (uint32_t)meteredLength) : "no memory for a wasm runtime";
	}
	if (!error && module->memoryInfo.initPages > (uint32_t)memoryPages) {
		snprintf(wi->error, sizeof(wi->error), "module needs %u memory pages, the limit is %d", (unsigned)module->memoryInfo.initPages, (int)memoryPages);
		error = wi->error;
	}
	if (!error) {
		/* memory.grow past the limit fails inside the module (returns -1) instead of growing. */
		if (!module->memoryInfo.maxPages || module->memoryInfo.maxPages > (uint32_t)memoryPages)
			module->memoryInfo.maxPages = memoryPages;
		error = m3_LoadModule(wi->runtime, module);
		if (error)
			m3_FreeModule(module);
	}
	if (!error)
		error = wasm_link(the, wi, module);
	if (!error)
		error = wasm_metered(wi, &xsArg(5), fuel, NULL, 0, NULL);
	if (error) {
		char message[WASM_ERROR_LENGTH];
		snprintf(message, sizeof(message), "%s", error);
		xs_wasm_instance_destructor(wi);
		xsUnknownError("%s", message);
	}
	xsmcSetHostData(xsThis, wi);
}

/* instance.call(importFunctions, name, fuel, ...args): the export's result, or undefined. */
void xs_wasm_instance_call(xsMachine *the)
{
	WasmInstance wi = wasm_instance(the);
	const char *name = xsmcToString(xsArg(1));
	IM3Function function;
	int argc = xsmcArgc - 3;
	union {
		int32_t i32;
		int64_t i64;
		float f32;
		double f64;
	} values[WASM_MAX_ARGS];
	const void *argv[WASM_MAX_ARGS];
	if (wi->functions)
		xsUnknownError("wasm instance busy");
	if (m3_FindFunction(&function, wi->runtime, name))
		xsUnknownError("no export %s", name);
	int32_t fuel = xsmcToInteger(xsArg(2));
	if (argc != (int)m3_GetArgCount(function) || argc > WASM_MAX_ARGS)
		xsRangeError("export %s takes %u arguments", name, (unsigned)m3_GetArgCount(function));
	for (int i = 0; i < argc; i++) {
		switch (m3_GetArgType(function, i)) {
		case c_m3Type_i32: values[i].i32 = xsmcToInteger(xsArg(3 + i)); break;
		case c_m3Type_i64: values[i].i64 = (int64_t)xsmcToNumber(xsArg(3 + i)); break;
		case c_m3Type_f32: values[i].f32 = (float)xsmcToNumber(xsArg(3 + i)); break;
		default: values[i].f64 = xsmcToNumber(xsArg(3 + i)); break;
		}
		argv[i] = &values[i];
	}
	const char *error = wasm_metered(wi, &xsArg(0), fuel, function, argc, argv);
	if (error)
		xsUnknownError("%s", error);
	if (m3_GetRetCount(function) == 0)
		return;
	const void *retv[1] = { &values[0] };
	m3_GetResults(function, 1, retv);
	switch (m3_GetRetType(function, 0)) {
	case c_m3Type_i32: xsmcSetInteger(xsResult, values[0].i32); break;
	case c_m3Type_i64: xsmcSetNumber(xsResult, (double)values[0].i64); break;
	case c_m3Type_f32: xsmcSetNumber(xsResult, values[0].f32); break;
	default: xsmcSetNumber(xsResult, values[0].f64); break;
	}
}

void xs_wasm_instance_has_export(xsMachine *the)
{
	WasmInstance wi = wasm_instance(the);
	IM3Function function;
	xsmcSetBoolean(xsResult, m3_FindFunction(&function, wi->runtime, xsmcToString(xsArg(0))) == m3Err_none);
}

/* The UTF-8 text at (offset, length) in linear memory; invalid bytes read as U+FFFD's stand-in '?'. */
void xs_wasm_instance_string(xsMachine *the)
{
	WasmInstance wi = wasm_instance(the);
	uint32_t size = 0;
	uint8_t *memory = m3_GetMemory(wi->runtime, &size, 0);
	uint32_t offset = (uint32_t)xsmcToInteger(xsArg(0));
	uint32_t length = (uint32_t)xsmcToInteger(xsArg(1));
	if (!memory || offset > size || length > size - offset || length > 1024)
		xsRangeError("string outside linear memory");
	char *text = malloc(length + 1);
	if (!text)
		xsUnknownError("no memory");
	for (uint32_t i = 0; i < length;) {
		uint8_t c = memory[offset + i];
		uint32_t extra = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 4;
		bool valid = extra < 4 && i + extra < length;
		for (uint32_t k = 1; valid && k <= extra; k++)
			valid = (memory[offset + i + k] & 0xc0) == 0x80;
		if (valid && c != 0) {
			memcpy(text + i, memory + offset + i, extra + 1);
			i += extra + 1;
		}
		else
			text[i++] = '?';
	}
	text[length] = 0;
	xsmcSetString(xsResult, text);
	free(text);
}

void xs_wasm_instance_get_memory_bytes(xsMachine *the)
{
	WasmInstance wi = wasm_instance(the);
	uint32_t size = 0;
	m3_GetMemory(wi->runtime, &size, 0);
	xsmcSetNumber(xsResult, size);
}

void xs_wasm_instance_get_fuel_used(xsMachine *the)
{
	xsmcSetInteger(xsResult, wasm_instance(the)->fuelUsed);
}

void xs_wasm_instance_close(xsMachine *the)
{
	WasmInstance wi = xsmcGetHostDataValidate(xsThis, xs_wasm_instance_destructor);
	if (wi && wi->functions)
		xsUnknownError("wasm instance busy");
	xs_wasm_instance_destructor(wi);
	xsmcSetHostData(xsThis, NULL);
}
