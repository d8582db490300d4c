// First-run setup of a tenant: creates or reuses the tenant, its admin and its
// devices, and issues fresh secrets (admin password unless given, gateway key,
// device tokens). Plaintext secrets exist only in the returned value.

import { isDeviceId } from "@kestrel/wire";
import type { Db } from "mongodb";
import { hashPassword, PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from "../auth/passwords.ts";
import { newSecret, secretHash } from "../auth/secrets.ts";
import { normalizeEmail, UserStore } from "../auth/user-store.ts";
import { DeviceStore } from "../devices/device-store.ts";
import { GatewayKeyStore } from "../gateway/gateway-key-store.ts";
import { MembershipStore } from "./membership-store.ts";
import { TenantStore } from "./tenant-store.ts";

export interface BootstrapOptions {
  tenantName: string;
  adminEmail: string;
  /** Omitted: a new random password is set and returned. */
  adminPassword?: string;
  deviceIds: string[];
}

export interface Credentials {
  tenantId: string;
  admin: { email: string; password: string };
  gatewayKey: string;
  devices: Array<{ deviceId: string; token: string }>;
}

export class BootstrapError extends Error {
  readonly code = "invalid_bootstrap";
}

const EMAIL = /^[^\s@]+@[^\s@]+$/;
const MAX_DEVICES = 10_000;
/** The name of the gateway key bootstrap (re)issues; issuing it again revokes the previous one. */
export const BOOTSTRAP_GATEWAY_KEY = "bootstrap";

function check(options: BootstrapOptions): void {
  const name = options.tenantName.trim();
  if (name.length === 0 || name.length > 100) throw new BootstrapError("tenantName must be 1..100 characters");
  if (!EMAIL.test(options.adminEmail) || options.adminEmail.length > 254) {
    throw new BootstrapError(`adminEmail "${options.adminEmail}" is not an email address`);
  }
  const password = options.adminPassword;
  if (password !== undefined && (password.length < PASSWORD_MIN_LENGTH || password.length > PASSWORD_MAX_LENGTH)) {
    throw new BootstrapError(`adminPassword must be ${PASSWORD_MIN_LENGTH}..${PASSWORD_MAX_LENGTH} characters`);
  }
  if (options.deviceIds.length > MAX_DEVICES) throw new BootstrapError(`at most ${MAX_DEVICES} devices`);
  for (const deviceId of options.deviceIds) {
    if (!isDeviceId(deviceId)) throw new BootstrapError(`"${deviceId}" is not a valid device id`);
  }
  if (new Set(options.deviceIds).size !== options.deviceIds.length) throw new BootstrapError("deviceIds repeat");
}

export async function bootstrap(db: Db, options: BootstrapOptions): Promise<Credentials> {
  check(options);
  const tenant = await new TenantStore(db).ensure(options.tenantName.trim());
  const email = normalizeEmail(options.adminEmail);
  const users = new UserStore(db);
  const memberships = new MembershipStore(db);
  const user = await users.findByEmail(email);
  // Users stored before memberships existed carry their one tenant's id.
  const legacyMember = (user as { tenantId?: string } | null)?.tenantId === tenant._id;
  // Resetting the password of another organization's user would hand over their other organizations.
  if (user && !legacyMember && !(await memberships.find(tenant._id, email))) {
    throw new BootstrapError(`${email} is already a user of another tenant`);
  }
  const password = options.adminPassword ?? newSecret();
  await users.setPassword(email, await hashPassword(password));
  await memberships.ensure(tenant._id, email, "admin");
  const gatewayKey = await new GatewayKeyStore(db).issue(tenant._id, BOOTSTRAP_GATEWAY_KEY);
  const deviceStore = new DeviceStore(db);
  const devices: Credentials["devices"] = [];
  for (const deviceId of options.deviceIds) {
    const token = newSecret();
    await deviceStore.upsertWithToken(tenant._id, deviceId, secretHash(token));
    devices.push({ deviceId, token });
  }
  return { tenantId: tenant._id, admin: { email, password }, gatewayKey, devices };
}
