// Which devices a rule watches: all of the organization's, one, or those with a tag or in a group.

import type { DeviceDoc } from "../devices/device-store.ts";
import type { RuleDoc } from "./rule-store.ts";

export function ruleMatches(
  rule: Pick<RuleDoc, "scope">,
  deviceId: string,
  labels: Pick<DeviceDoc, "tags" | "groups"> | undefined,
): boolean {
  const scope = rule.scope;
  switch (scope.type) {
    case "all":
      return true;
    case "device":
      return scope.deviceId === deviceId;
    case "tag":
      return labels?.tags.includes(scope.tag.toLowerCase()) ?? false;
    case "group":
      return labels?.groups.includes(scope.group.toLowerCase()) ?? false;
  }
}
