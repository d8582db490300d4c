/*
 * kestrel/pulse-capture on the ESP32: the native half of src/pulse-capture-esp32.ts.
 *
 * A DHT22 answers the host's start signal with ~84 levels of 26..80 us each; timing them from JS (or
 * from a GPIO interrupt with XS running) misses edges, so the RMT receiver records them in hardware
 * and this module only converts its symbols into the level durations the TS decoder expects.
 *
 * ESP-IDF 5.x RMT RX driver (driver/rmt_rx.h). One RMT RX channel per open capture, released by
 * close() or the destructor, so other RMT users keep the remaining channels.
 */

#include <stdlib.h>
#include <string.h>

#include "xsmc.h"

#include "driver/gpio.h"
#include "driver/rmt_rx.h"
#include "esp_rom_sys.h"
#include "esp_timer.h"
#include "soc/soc_caps.h"

/* 1 MHz: one RMT tick is one microsecond, the unit the decoder works in. */
#define PULSE_RESOLUTION_HZ 1000000
/* Shorter levels are noise on the wire (a DHT22 level lasts at least ~20 us); the RMT glitch
   filter counts in source-clock cycles and tops out near 3 us at 80 MHz, so stay well under. */
#define PULSE_MIN_NS 1000
/* The receive ends once a level outlasts the host's start pulse by this much: after its last bit
   the sensor releases the line, which then stays high. */
#define PULSE_IDLE_MARGIN_US 500
/* The start pulse has to fit one RMT symbol half (15-bit tick count at 1 MHz) and the idle
   threshold; the datasheet asks for >= 1 ms, the driver uses 2. */
#define PULSE_MAX_START_MS 20
/* A frame lasts under 5.5 ms after the release; give up well after that if the RMT never reports
   (it always should, since the idle threshold ends every receive). */
#define PULSE_FRAME_TIMEOUT_US 10000
/* One memory block per channel in non-DMA mode: 64 symbols on the ESP32, 48 on the S3/C3; a DHT22
   frame (start pulse, release, response, 40 bits, end) is about 43 symbols, so one block holds it. */
#define PULSE_SYMBOLS SOC_RMT_MEM_WORDS_PER_CHANNEL

typedef struct {
	rmt_channel_handle_t channel;
	int pin;
	int phase;
	/* Written by the RMT ISR callback, read by capture() while it waits. */
	volatile int done;
	volatile size_t received;
	rmt_symbol_word_t symbols[PULSE_SYMBOLS];
} PulseCaptureRecord, *PulseCapture;

void xs_pulse_capture_destructor(void *data);

static bool pulse_capture_on_recv_done(rmt_channel_handle_t channel, const rmt_rx_done_event_data_t *event, void *context)
{
	PulseCapture pc = context;
	(void)channel;
	pc->received = event->num_symbols;
	pc->done = 1;
	/* No task was woken: capture() polls the flag. */
	return false;
}

static void pulse_capture_release(PulseCapture pc)
{
	if (pc->channel) {
		rmt_disable(pc->channel);
		rmt_del_channel(pc->channel);
		pc->channel = NULL;
	}
	/* Leave the line released (input, pulled up) so the sensor sees no start signal. */
	gpio_reset_pin((gpio_num_t)pc->pin);
}

void xs_pulse_capture_destructor(void *data)
{
	PulseCapture pc = data;
	if (!pc)
		return;
	pulse_capture_release(pc);
	free(pc);
}

void xs_pulse_capture(xsMachine *the)
{
	int pin = xsmcToInteger(xsArg(0));
	if (!GPIO_IS_VALID_OUTPUT_GPIO(pin))
		xsRangeError("invalid pin");

	/* calloc, not a host chunk: the RMT ISR writes into this record, so it must not move. */
	PulseCapture pc = calloc(1, sizeof(PulseCaptureRecord));
	if (!pc)
		xsUnknownError("no memory");
	pc->pin = pin;

	rmt_rx_channel_config_t config;
	memset(&config, 0, sizeof(config));
	config.gpio_num = (gpio_num_t)pin;
	config.clk_src = RMT_CLK_SRC_DEFAULT;
	config.resolution_hz = PULSE_RESOLUTION_HZ;
	config.mem_block_symbols = PULSE_SYMBOLS;
	if (ESP_OK != rmt_new_rx_channel(&config, &pc->channel)) {
		free(pc);
		xsUnknownError("no free RMT RX channel");
	}

	rmt_rx_event_callbacks_t callbacks = { .on_recv_done = pulse_capture_on_recv_done };
	if ((ESP_OK != rmt_rx_register_event_callbacks(pc->channel, &callbacks, pc)) || (ESP_OK != rmt_enable(pc->channel))) {
		pulse_capture_release(pc);
		free(pc);
		xsUnknownError("RMT RX setup failed");
	}

	/* The RMT RX channel only routes the pin's input; the host also drives it for the start signal,
	   open drain so the sensor can pull it low afterwards. Idle high through the pull-up (the board
	   should add 4.7-10 kOhm; the internal ~45 kOhm alone is marginal on long wires). */
	gpio_set_pull_mode((gpio_num_t)pin, GPIO_PULLUP_ONLY);
	gpio_set_level((gpio_num_t)pin, 1);
	gpio_set_direction((gpio_num_t)pin, GPIO_MODE_INPUT_OUTPUT_OD);

	xsmcSetHostData(xsThis, pc);
}

void xs_pulse_capture_close(xsMachine *the)
{
	PulseCapture pc = xsmcGetHostDataValidate(xsThis, xs_pulse_capture_destructor);
	if (!pc)
		return;
	xsmcSetHostData(xsThis, NULL);
	xs_pulse_capture_destructor(pc);
}

void xs_pulse_capture_get_phase(xsMachine *the)
{
	PulseCapture pc = xsmcGetHostDataValidate(xsThis, xs_pulse_capture_destructor);
	xsmcSetInteger(xsResult, pc ? pc->phase : 0);
}

void xs_pulse_capture_capture(xsMachine *the)
{
	PulseCapture pc = xsmcGetHostDataValidate(xsThis, xs_pulse_capture_destructor);
	if (!pc)
		xsUnknownError("pulse capture closed");
	int startMs = xsmcToInteger(xsArg(0));
	if ((startMs < 1) || (startMs > PULSE_MAX_START_MS))
		xsRangeError("invalid start duration");
	void *data;
	xsUnsignedValue size;
	xsmcGetBufferWritable(xsArg(1), &data, &size);
	uint16_t *target = data;
	size_t capacity = size / sizeof(uint16_t);

	rmt_receive_config_t receive;
	memset(&receive, 0, sizeof(receive));
	receive.signal_range_min_ns = PULSE_MIN_NS;
	receive.signal_range_max_ns = ((uint32_t)startMs * 1000 + PULSE_IDLE_MARGIN_US) * 1000;

	pc->done = 0;
	pc->received = 0;
	pc->phase = 0;
	/* Receive before pulling low, so the frame starts with the host's own start pulse: the decoder
	   recognizes it (a low of >= 500 us) and aligns on the sensor's response after it. */
	if (ESP_OK != rmt_receive(pc->channel, pc->symbols, sizeof(pc->symbols), &receive))
		xsUnknownError("RMT receive failed");
	gpio_set_level((gpio_num_t)pc->pin, 0);
	esp_rom_delay_us((uint32_t)startMs * 1000);
	gpio_set_level((gpio_num_t)pc->pin, 1);

	/* Busy wait: the whole read takes under startMs + 6 ms, too short to be worth a task switch. */
	int64_t deadline = esp_timer_get_time() + PULSE_FRAME_TIMEOUT_US;
	while (!pc->done && (esp_timer_get_time() < deadline))
		esp_rom_delay_us(50);
	if (!pc->done) {
		/* Abort the pending receive so the next capture starts clean; nothing was captured. */
		rmt_disable(pc->channel);
		rmt_enable(pc->channel);
		xsmcSetInteger(xsResult, 0);
		return;
	}

	/* Each RMT symbol holds two levels with their durations; a zero duration marks the end. The
	   levels alternate, so the first level is the phase the decoder needs. */
	size_t count = 0, received = pc->received;
	for (size_t i = 0; (i < received) && (count < capacity); i++) {
		rmt_symbol_word_t symbol = pc->symbols[i];
		if (0 == i)
			pc->phase = symbol.level0;
		if (0 == symbol.duration0)
			break;
		target[count++] = symbol.duration0;
		if ((0 == symbol.duration1) || (count >= capacity))
			break;
		target[count++] = symbol.duration1;
	}
	xsmcSetInteger(xsResult, (xsIntegerValue)count);
}
