// The alert conditions as state machines, one behaviour per test: fire, hold, clear with
// hysteresis, flapping suppressed, rate of change; and the checks on a level's consistency.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  initialState,
  type LevelCondition,
  levelProblem,
  type RateCondition,
  type RuleState,
  stepLevel,
  stepRate,
  type Transition,
} from "../src/alerts/conditions.ts";

/** Feeds [seconds, value] pairs; answers the transitions (with their times) and the final state. */
function run(condition: LevelCondition, values: Array<[number, number]>) {
  let state: RuleState = initialState();
  const transitions: Array<[number, Transition]> = [];
  for (const [s, value] of values) {
    const step = stepLevel(condition, state, value, s * 1000);
    if (step.transition) transitions.push([s, step.transition]);
    state = step.state;
  }
  return { transitions, state };
}

const hot: LevelCondition = { op: "above", high: 30, clearHigh: 28, forSeconds: 0 };

describe("alert conditions", () => {
  test("a threshold fires on the first value past the line, not on one at it", () => {
    assert.deepEqual(
      run(hot, [
        [1, 29],
        [2, 30],
        [3, 30.5],
      ]).transitions,
      [[3, "fired"]],
    );
    assert.deepEqual(
      run({ op: "below", low: 5, forSeconds: 0 }, [
        [1, 6],
        [2, 4.9],
      ]).transitions,
      [[2, "fired"]],
    );
    const band: LevelCondition = { op: "outside", low: 10, high: 20, forSeconds: 0 };
    assert.deepEqual(
      run(band, [
        [1, 15],
        [2, 21],
        [3, 15],
        [4, 9],
      ]).transitions,
      [
        [2, "fired"],
        [3, "resolved"],
        [4, "fired"],
      ],
    );
  });

  test("held: fires only once the value stayed past the line for forSeconds", () => {
    const held = { ...hot, forSeconds: 10 };
    const { transitions, state } = run(held, [
      [0, 31],
      [5, 32],
      [9, 31],
    ]);
    assert.deepEqual(transitions, []);
    assert.equal(state.status, "pending");
    assert.deepEqual(
      run(held, [
        [0, 31],
        [5, 32],
        [10, 31],
      ]).transitions,
      [[10, "fired"]],
    );
    // One value back under the line ends the hold; the next crossing starts it anew.
    assert.deepEqual(
      run(held, [
        [0, 31],
        [6, 29],
        [8, 31],
        [15, 31],
        [18, 31],
      ]).transitions,
      [[18, "fired"]],
    );
  });

  test("clears only back at or under the clear level (hysteresis)", () => {
    const { transitions, state } = run(hot, [
      [1, 31],
      [2, 29],
      [3, 28.5],
      [4, 28],
      [5, 27],
    ]);
    assert.deepEqual(transitions, [
      [1, "fired"],
      [4, "resolved"],
    ]);
    assert.equal(state.status, "ok");
    assert.equal(state.episode, 1);
    // Without a clear level the line itself clears it.
    assert.deepEqual(
      run({ op: "above", high: 30, forSeconds: 0 }, [
        [1, 31],
        [2, 30],
      ]).transitions,
      [
        [1, "fired"],
        [2, "resolved"],
      ],
    );
  });

  test("a value hovering at the line fires once and does not flap", () => {
    const hovering: Array<[number, number]> = Array.from({ length: 60 }, (_, i) => [i, i % 2 === 0 ? 29.9 : 30.1]);
    const { transitions, state } = run(hot, hovering);
    assert.deepEqual(transitions, [[1, "fired"]]);
    assert.equal(state.status, "firing");
    // With a hold longer than any excursion, the hovering never fires at all.
    assert.deepEqual(run({ ...hot, forSeconds: 5 }, hovering).transitions, []);
  });

  test("rate of change fires on a fast rise over the window and clears as it slows", () => {
    const rising: RateCondition = { perMinute: 6, direction: "rise", windowSeconds: 60 };
    let state = initialState();
    const fired: Array<[number, Transition, number | null]> = [];
    // Flat, then +1 every 5 s (12 per minute), then flat again.
    const values = [
      ...Array.from({ length: 12 }, (_, i) => [i * 5, 20]),
      ...Array.from({ length: 12 }, (_, i) => [60 + i * 5, 21 + i]),
      ...Array.from({ length: 30 }, (_, i) => [120 + i * 5, 32]),
    ] as Array<[number, number]>;
    for (const [s, value] of values) {
      const step = stepRate(rising, state, value, s * 1000);
      if (step.transition) fired.push([s, step.transition, step.rate]);
      state = step.state;
    }
    assert.equal(fired.length, 2, JSON.stringify(fired));
    assert.equal(fired[0]?.[1], "fired");
    assert.ok((fired[0]?.[0] ?? 0) > 60 && (fired[0]?.[0] ?? 0) < 120);
    assert.equal(fired[1]?.[1], "resolved");
    assert.ok((fired[1]?.[0] ?? 0) > 120);
    assert.ok((state.points ?? []).length <= 10, "the window is thinned to slots of an eighth, and the newest");
    // A fall does not fire a rise rule; an either rule sees it.
    const falling = [
      [0, 30],
      [30, 20],
    ] as Array<[number, number]>;
    const feed = (condition: RateCondition) =>
      falling.reduce(
        (acc, [s, v]) => {
          const step = stepRate(condition, acc.state, v, s * 1000);
          return { state: step.state, fired: acc.fired || step.transition === "fired" };
        },
        { state: initialState(), fired: false },
      ).fired;
    assert.equal(feed(rising), false);
    assert.equal(feed({ ...rising, direction: "either" }), true);
  });

  test("inconsistent levels are named", () => {
    assert.equal(levelProblem(hot), undefined);
    assert.match(levelProblem({ op: "above", forSeconds: 0 }) ?? "", /needs high/);
    assert.match(levelProblem({ op: "above", high: 1, low: 0, forSeconds: 0 }) ?? "", /takes no low/);
    assert.match(levelProblem({ op: "above", high: 30, clearHigh: 31, forSeconds: 0 }) ?? "", /clearHigh/);
    assert.match(levelProblem({ op: "below", low: 5, clearLow: 4, forSeconds: 0 }) ?? "", /clearLow/);
    assert.match(levelProblem({ op: "outside", low: 5, high: 5, forSeconds: 0 }) ?? "", /low must be below high/);
  });
});
