// The DHT22 (AM2302) frame decoder: from the level durations captured after the start signal to a
// reading, with the checks that keep a bad frame from becoming a value. No imports, no allocation.

export interface Dht22Sample {
  /** °C, resolution 0.1 */
  temperature: number;
  /** %RH, resolution 0.1 */
  humidity: number;
}

/** A captured low at least this long is the host's own start signal. */
const START_LOW_US = 500;
const RESPONSE_MIN_US = 40;
const RESPONSE_MAX_US = 120;
const BIT_LOW_MAX_US = 100;
const BIT_HIGH_MAX_US = 100;
/** "0" holds the line high 26-28 µs, "1" 70 µs: the midpoint tells them apart. */
const ONE_THRESHOLD_US = 48;

/**
 * Decodes a captured frame into result. Throws for no response, a frame cut short (timeout), pulse
 * widths outside the datasheet's, or a checksum mismatch: never returns a value from a bad frame.
 */
export function decodeDht22(
  durations: Uint16Array,
  count: number,
  phase: number,
  bytes: Uint8Array,
  result: Dht22Sample,
): Dht22Sample {
  let i = 0;
  let level = phase;
  // Skip what precedes the sensor's response: the host's start pulse if captured, then the release.
  for (let j = 0; j < count; j++) {
    if ((phase ^ (j & 1)) === 0 && (durations[j] as number) >= START_LOW_US) {
      i = j + 1;
      level = phase ^ (i & 1);
      break;
    }
  }
  while (i < count && level === 1) {
    i++;
    level ^= 1;
  }
  if (count - i < 2) throw new Error("dht22: no response (timeout)");
  const responseLow = durations[i] as number;
  const responseHigh = durations[i + 1] as number;
  if (
    responseLow < RESPONSE_MIN_US ||
    responseLow > RESPONSE_MAX_US ||
    responseHigh < RESPONSE_MIN_US ||
    responseHigh > RESPONSE_MAX_US
  )
    throw new Error(`dht22: bad response (${responseLow} µs low, ${responseHigh} µs high)`);
  i += 2;
  bytes.fill(0);
  for (let bit = 0; bit < 40; bit++, i += 2) {
    if (i + 1 >= count) throw new Error(`dht22: timeout after ${bit} of 40 bits`);
    const low = durations[i] as number;
    const high = durations[i + 1] as number;
    if (low > BIT_LOW_MAX_US || high === 0 || high > BIT_HIGH_MAX_US)
      throw new Error(`dht22: bad timing in bit ${bit} (${low} µs low, ${high} µs high)`);
    if (high > ONE_THRESHOLD_US) bytes[bit >> 3] = (bytes[bit >> 3] as number) | (0x80 >> (bit & 7));
  }
  const sum = ((bytes[0] as number) + (bytes[1] as number) + (bytes[2] as number) + (bytes[3] as number)) & 0xff;
  if (sum !== bytes[4])
    throw new Error(
      `dht22: checksum mismatch (sum 0x${sum.toString(16)}, sent 0x${(bytes[4] as number).toString(16)})`,
    );
  const humidity = (((bytes[0] as number) << 8) | (bytes[1] as number)) / 10;
  const magnitude = ((((bytes[2] as number) & 0x7f) << 8) | (bytes[3] as number)) / 10;
  const temperature = (bytes[2] as number) & 0x80 ? -magnitude : magnitude;
  // The sensor's range is 0..100 %RH and -40..80 °C; anything else is a misread, not weather.
  if (humidity > 100 || temperature < -40 || temperature > 80)
    throw new Error(`dht22: reading out of range (${temperature} °C, ${humidity} %RH)`);
  result.temperature = temperature;
  result.humidity = humidity;
  return result;
}
