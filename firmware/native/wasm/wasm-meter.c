/*
 * The module rewrite behind the execution budget (see wasm-meter.h). Only the type, function and
 * code sections change: one `[] -> []` type and one empty function are appended (so no existing
 * index moves), and `call <meter>` follows every `loop` header and every METER_SPAN instructions of
 * straight-line code. A call with no parameters or results leaves the operand stack as it was, so
 * it is valid between any two instructions; branches name labels, not byte offsets, so inserting
 * instructions keeps every branch target. Each unit of budget then covers at most METER_SPAN
 * instructions (plus what one bulk memory instruction or host call does), which bounds a call's
 * time. The import section is read to find the meter's index and to refuse non-function imports.
 */

#include "wasm-meter.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	/* Instructions between two meter calls at most, outside loops' headers. */
	METER_SPAN = 32,
	SECTION_TYPE = 1,
	SECTION_IMPORT = 2,
	SECTION_FUNCTION = 3,
	SECTION_CODE = 10,
	SECTION_COUNT = 13,
	OP_LOOP = 0x03,
	OP_CALL = 0x10,
	OP_END = 0x0b,
	FUNC_TYPE = 0x60,
	IMPORT_FUNCTION = 0,
};

typedef struct {
	const uint8_t *p;
	const uint8_t *end;
	const char *error;
} Reader;

typedef struct {
	uint8_t *data;
	size_t length;
	size_t capacity;
	bool failed;
} Writer;

static const char MALFORMED[] = "malformed WebAssembly module";

static void fail(Reader *r, const char *error)
{
	if (!r->error)
		r->error = error;
	r->p = r->end;
}

static uint8_t read_byte(Reader *r)
{
	if (r->p >= r->end) {
		fail(r, MALFORMED);
		return 0;
	}
	return *r->p++;
}

static uint32_t read_u32(Reader *r)
{
	uint32_t value = 0;
	for (int shift = 0; shift < 35; shift += 7) {
		uint8_t byte = read_byte(r);
		value |= (uint32_t)(byte & 0x7f) << shift;
		if (!(byte & 0x80))
			return value;
	}
	fail(r, MALFORMED);
	return 0;
}

/* Any LEB128 of at most maxBytes bytes, signed or not: only its length matters here. */
static void skip_leb(Reader *r, int maxBytes)
{
	for (int i = 0; i < maxBytes; i++)
		if (!(read_byte(r) & 0x80))
			return;
	fail(r, MALFORMED);
}

static void skip(Reader *r, size_t count)
{
	if ((size_t)(r->end - r->p) < count)
		fail(r, MALFORMED);
	else
		r->p += count;
}

static void write_bytes(Writer *w, const uint8_t *bytes, size_t count)
{
	if (w->failed)
		return;
	if (w->length + count > w->capacity) {
		size_t capacity = (w->capacity + count) * 2;
		uint8_t *data = realloc(w->data, capacity);
		if (!data) {
			w->failed = true;
			return;
		}
		w->data = data;
		w->capacity = capacity;
	}
	memcpy(w->data + w->length, bytes, count);
	w->length += count;
}

static void write_byte(Writer *w, uint8_t byte)
{
	write_bytes(w, &byte, 1);
}

static void write_u32(Writer *w, uint32_t value)
{
	do {
		uint8_t byte = value & 0x7f;
		value >>= 7;
		write_byte(w, value ? byte | 0x80 : byte);
	} while (value);
}

/* Copies one instruction's immediates; refuses opcodes the meter does not know how to step over. */
static void skip_immediates(Reader *r, uint8_t op)
{
	static char unsupported[48];
	if (op >= 0x45 && op <= 0xc4)
		return; /* numeric, comparison, conversion and sign-extension: no immediates */
	switch (op) {
	case 0x00: case 0x01: case 0x05: case OP_END: case 0x0f: case 0x1a: case 0x1b: case 0xd1:
		return;
	case 0x02: case OP_LOOP: case 0x04:
		skip_leb(r, 5); /* block type: 0x40, a value type, or a type index (s33) */
		return;
	case 0x0c: case 0x0d: case OP_CALL:
	case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0x25: case 0x26: case 0xd2:
		read_u32(r);
		return;
	case 0x0e: {
		uint32_t targets = read_u32(r);
		for (uint32_t i = 0; i <= targets && !r->error; i++)
			read_u32(r);
		return;
	}
	case 0x11:
		read_u32(r);
		read_u32(r);
		return;
	case 0x1c:
		skip(r, read_u32(r));
		return;
	case 0x3f: case 0x40: case 0xd0:
		skip(r, 1);
		return;
	case 0x41:
		skip_leb(r, 5);
		return;
	case 0x42:
		skip_leb(r, 10);
		return;
	case 0x43:
		skip(r, 4);
		return;
	case 0x44:
		skip(r, 8);
		return;
	case 0xfc: {
		uint32_t sub = read_u32(r);
		if (sub <= 7)
			return; /* saturating truncations */
		switch (sub) {
		case 8: read_u32(r); skip(r, 1); return;  /* memory.init */
		case 9: case 13: case 15: case 16: case 17: read_u32(r); return;
		case 10: skip(r, 2); return;              /* memory.copy */
		case 11: skip(r, 1); return;              /* memory.fill */
		case 12: case 14: read_u32(r); read_u32(r); return;
		}
		snprintf(unsupported, sizeof(unsupported), "unsupported instruction 0xfc %u", (unsigned)sub);
		fail(r, unsupported);
		return;
	}
	default:
		if (op >= 0x28 && op <= 0x3e) { /* loads and stores: alignment and offset */
			read_u32(r);
			read_u32(r);
			return;
		}
		snprintf(unsupported, sizeof(unsupported), "unsupported instruction 0x%02x", op);
		fail(r, unsupported);
	}
}

/* Copies one function body, with `call meter` after every loop header and every METER_SPAN instructions. */
static void meter_body(Reader *r, Writer *out, uint32_t meter)
{
	uint32_t size = read_u32(r);
	if ((size_t)(r->end - r->p) < size) {
		fail(r, MALFORMED);
		return;
	}
	Reader body = { r->p, r->p + size, NULL };
	r->p += size;
	Writer copy = { 0 };
	const uint8_t *start = body.p;
	uint32_t groups = read_u32(&body);
	for (uint32_t i = 0; i < groups && !body.error; i++) {
		read_u32(&body);
		skip(&body, 1);
	}
	write_bytes(&copy, start, body.p - start);
	int since = 0;
	while (body.p < body.end && !body.error) {
		start = body.p;
		uint8_t op = read_byte(&body);
		skip_immediates(&body, op);
		write_bytes(&copy, start, body.p - start);
		/* Never after the body's last instruction (its final end). */
		if ((op == OP_LOOP || ++since >= METER_SPAN) && body.p < body.end) {
			write_byte(&copy, OP_CALL);
			write_u32(&copy, meter);
			since = 0;
		}
	}
	if (body.error)
		fail(r, body.error);
	else if (copy.failed)
		fail(r, "out of memory metering the module");
	write_u32(out, (uint32_t)copy.length);
	write_bytes(out, copy.data, copy.length);
	free(copy.data);
}

/* Counts the function imports; every import must be a function of the host. */
static uint32_t function_imports(Reader *r)
{
	static char refused[96];
	uint32_t count = read_u32(r), functions = 0;
	for (uint32_t i = 0; i < count && !r->error; i++) {
		uint32_t moduleLength = read_u32(r);
		const uint8_t *module = r->p;
		skip(r, moduleLength);
		uint32_t fieldLength = read_u32(r);
		const uint8_t *field = r->p;
		skip(r, fieldLength);
		uint8_t kind = read_byte(r);
		if (r->error)
			break;
		if (kind != IMPORT_FUNCTION) {
			snprintf(refused, sizeof(refused), "import %.*s.%.*s is not a function", (int)(moduleLength > 32 ? 32 : moduleLength),
				(const char *)module, (int)(fieldLength > 32 ? 32 : fieldLength), (const char *)field);
			fail(r, refused);
			break;
		}
		read_u32(r);
		functions++;
	}
	return functions;
}

/* The index of the first `[] -> []` type, or count when there is none. */
static uint32_t empty_type(Reader *r, uint32_t *count)
{
	*count = read_u32(r);
	uint32_t found = *count;
	for (uint32_t i = 0; i < *count && !r->error; i++) {
		if (read_byte(r) != FUNC_TYPE) {
			fail(r, MALFORMED);
			break;
		}
		uint32_t params = read_u32(r);
		skip(r, params);
		uint32_t results = read_u32(r);
		skip(r, results);
		if (params == 0 && results == 0 && found == *count)
			found = i;
	}
	return found;
}

/* A section's entries (after its count) followed by extra bytes, under a count one higher. */
static void write_grown_section(Writer *out, uint8_t id, Reader entries, uint32_t count, const uint8_t *extra, size_t extraLength)
{
	Writer content = { 0 };
	write_u32(&content, count + 1);
	write_bytes(&content, entries.p, entries.end - entries.p);
	write_bytes(&content, extra, extraLength);
	write_byte(out, id);
	write_u32(out, (uint32_t)content.length);
	write_bytes(out, content.data, content.length);
	out->failed |= content.failed;
	free(content.data);
}

const char *wasm_meter(const uint8_t *wasm, size_t length, uint8_t **out, size_t *outLength)
{
	static const uint8_t HEADER[8] = { 0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00 };
	static const uint8_t EMPTY_TYPE[3] = { FUNC_TYPE, 0x00, 0x00 };
	static const uint8_t EMPTY_BODY[3] = { 0x02, 0x00, OP_END }; /* size 2: no locals, end */
	Reader sections[SECTION_COUNT] = { { 0 } };
	Reader r = { wasm, wasm + length, NULL };
	*out = NULL;
	*outLength = 0;
	if (length < sizeof(HEADER) || memcmp(wasm, HEADER, sizeof(HEADER)))
		return "not a WebAssembly 1.0 module";
	r.p += sizeof(HEADER);
	while (r.p < r.end && !r.error) {
		uint8_t id = read_byte(&r);
		uint32_t size = read_u32(&r);
		if (r.error || (size_t)(r.end - r.p) < size)
			return MALFORMED;
		if (id < SECTION_COUNT && id != 0) {
			if (sections[id].p)
				return MALFORMED;
			sections[id] = (Reader){ r.p, r.p + size, NULL };
		}
		r.p += size;
	}
	uint32_t imported = 0, types = 0, functions = 0, meterType = 0;
	if (sections[SECTION_IMPORT].p) {
		Reader imports = sections[SECTION_IMPORT];
		imported = function_imports(&imports);
		if (imports.error)
			return imports.error;
	}
	Reader functionEntries = sections[SECTION_FUNCTION];
	if (functionEntries.p)
		functions = read_u32(&functionEntries);
	Reader typeEntries = sections[SECTION_TYPE];
	if (typeEntries.p) {
		Reader scan = typeEntries;
		meterType = empty_type(&scan, &types);
		if (scan.error)
			return scan.error;
		read_u32(&typeEntries);
	}
	Reader code = sections[SECTION_CODE];
	if (functions == 0 || !typeEntries.p || !code.p || functionEntries.error) {
		/* Nothing runs without a function body, so there is nothing to meter: parse it as it is. */
		if (functions != 0 || code.p)
			return MALFORMED;
		*out = malloc(length);
		if (!*out)
			return "out of memory metering the module";
		memcpy(*out, wasm, length);
		*outLength = length;
		return NULL;
	}
	uint32_t meter = imported + functions;
	Writer w = { 0 };
	write_bytes(&w, HEADER, sizeof(HEADER));
	r = (Reader){ wasm + sizeof(HEADER), wasm + length, NULL };
	while (r.p < r.end && !r.error && !w.failed) {
		const uint8_t *start = r.p;
		uint8_t id = read_byte(&r);
		uint32_t size = read_u32(&r);
		const uint8_t *content = r.p;
		r.p += size;
		if (id == SECTION_TYPE && meterType == types) {
			write_grown_section(&w, id, typeEntries, types, EMPTY_TYPE, sizeof(EMPTY_TYPE));
		}
		else if (id == SECTION_FUNCTION) {
			Writer index = { 0 };
			write_u32(&index, meterType);
			write_grown_section(&w, id, functionEntries, functions, index.data, index.length);
			w.failed |= index.failed;
			free(index.data);
		}
		else if (id == SECTION_CODE) {
			Reader bodies = { content, content + size, NULL };
			if (read_u32(&bodies) != functions) {
				free(w.data);
				return MALFORMED;
			}
			Writer rewritten = { 0 };
			for (uint32_t i = 0; i < functions && !bodies.error; i++)
				meter_body(&bodies, &rewritten, meter);
			if (bodies.error || bodies.p != bodies.end) {
				free(rewritten.data);
				free(w.data);
				return bodies.error ? bodies.error : MALFORMED;
			}
			write_grown_section(&w, id, (Reader){ rewritten.data, rewritten.data + rewritten.length, NULL }, functions,
				EMPTY_BODY, sizeof(EMPTY_BODY));
			w.failed |= rewritten.failed;
			free(rewritten.data);
		}
		else
			write_bytes(&w, start, r.p - start);
	}
	if (w.failed) {
		free(w.data);
		return "out of memory metering the module";
	}
	*out = w.data;
	*outLength = w.length;
	return NULL;
}
