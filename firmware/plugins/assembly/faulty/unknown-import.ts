// Faulty on purpose (tests): imports a function the host API does not offer, so it must be refused.

// The SDK is imported for its abort handler, which keeps the module's other imports within the host API.
import "../sdk/kestrel";

@external("env", "system")
declare function system(command: i32): i32;

export function init(): i32 {
  return system(0);
}

export function on_sample(): void {}
