/*
 * The simulator's XS worker is the stock xsnap-worker, linked with our native modules and this
 * file: `-Wl,--wrap=fxCreateMachine` routes the worker's machine creation through here, so the
 * machine gets one global more, `kestrelNatives`, and no third-party file is changed.
 *
 * On a device xsc binds `native("name")` and `Native("destructor")` to C at build time; evaluated
 * code cannot (xsc alone parses them). kestrelNatives carries the same C functions by name, and the
 * simulator runtime (sim/xs/boot.ts) gives the firmware `native` and `Native` globals built on it, so
 * the firmware's JavaScript half of a native module runs unchanged against the same C.
 */

#include <malloc.h>
#include <string.h>

#include "xs.h"

extern void xs_wasm_instance_destructor(void *data);
extern void xs_wasm_instance(xsMachine *the);
extern void xs_wasm_instance_call(xsMachine *the);
extern void xs_wasm_instance_has_export(xsMachine *the);
extern void xs_wasm_instance_string(xsMachine *the);
extern void xs_wasm_instance_get_memory_bytes(xsMachine *the);
extern void xs_wasm_instance_get_fuel_used(xsMachine *the);
extern void xs_wasm_instance_close(xsMachine *the);
extern void xs_artifact_sha256(xsMachine *the);
extern void xs_artifact_verify_p256(xsMachine *the);

static const struct {
	const char *name;
	xsCallback callback;
} kestrelFunctions[] = {
	{ "xs_wasm_instance", xs_wasm_instance },
	{ "xs_wasm_instance_call", xs_wasm_instance_call },
	{ "xs_wasm_instance_has_export", xs_wasm_instance_has_export },
	{ "xs_wasm_instance_string", xs_wasm_instance_string },
	{ "xs_wasm_instance_get_memory_bytes", xs_wasm_instance_get_memory_bytes },
	{ "xs_wasm_instance_get_fuel_used", xs_wasm_instance_get_fuel_used },
	{ "xs_wasm_instance_close", xs_wasm_instance_close },
	{ "xs_artifact_sha256", xs_artifact_sha256 },
	{ "xs_artifact_verify_p256", xs_artifact_verify_p256 },
};

static const struct {
	const char *name;
	xsDestructor destructor;
} kestrelDestructors[] = {
	{ "xs_wasm_instance_destructor", xs_wasm_instance_destructor },
};

/*
 * hostObject(destructorName): a fresh host object whose destructor is the one named, what
 * `super()` of a class extending Native(destructorName) creates on a device. The destructor is set
 * per instance (xsnap refuses one on a prototype).
 */
static void kestrel_host_object(xsMachine *the)
{
	const char *name = xsToString(xsArg(0));
	for (size_t i = 0; i < sizeof(kestrelDestructors) / sizeof(kestrelDestructors[0]); i++) {
		if (!strcmp(name, kestrelDestructors[i].name)) {
			xsResult = xsNewHostObject(kestrelDestructors[i].destructor);
			return;
		}
	}
	xsSyntaxError("invalid Native %s", name);
}

/* Bytes the worker's C heap holds (XS chunks, wasm3 runtimes and modules): native memory meter. */
static void kestrel_malloc_bytes(xsMachine *the)
{
	struct mallinfo2 info = mallinfo2();
	xsResult = xsNumber((double)info.uordblks);
}

xsMachine *__real_fxCreateMachine(xsCreation *creation, xsStringValue name, void *context, xsIdentifier profileID);

xsMachine *__wrap_fxCreateMachine(xsCreation *creation, xsStringValue name, void *context, xsIdentifier profileID)
{
	xsMachine *machine = __real_fxCreateMachine(creation, name, context, profileID);
	if (!machine)
		return machine;
	xsBeginHost(machine);
	xsVars(2);
	xsVar(0) = xsNewObject();
	for (size_t i = 0; i < sizeof(kestrelFunctions) / sizeof(kestrelFunctions[0]); i++) {
		xsVar(1) = xsNewHostFunction(kestrelFunctions[i].callback, 0);
		xsDefine(xsVar(0), xsID(kestrelFunctions[i].name), xsVar(1), xsDontEnum);
	}
	xsVar(1) = xsNewHostFunction(kestrel_host_object, 1);
	xsDefine(xsVar(0), xsID("hostObject"), xsVar(1), xsDontEnum);
	xsVar(1) = xsNewHostFunction(kestrel_malloc_bytes, 0);
	xsDefine(xsVar(0), xsID("mallocBytes"), xsVar(1), xsDontEnum);
	xsDefine(xsGlobal, xsID("kestrelNatives"), xsVar(0), xsDontEnum);
	xsEndHost(machine);
	return machine;
}
