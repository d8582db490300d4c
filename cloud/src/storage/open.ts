// Opens the database the configuration names: MONGODB_URI unchanged when set,
// else the embedded FerretDB under DATA_DIR/ferretdb, started for this process.

import { join } from "node:path";
import type { Logger } from "pino";
import type { CloudConfig } from "../config.ts";
import { connectDb, type Database } from "./connect.ts";
import { startEmbeddedFerretDb } from "./embedded-ferretdb.ts";

export async function openDatabase(config: CloudConfig, logger: Logger): Promise<Database> {
  if (config.mongoUri) return connectDb(config.mongoUri, config.mongoDb);
  const dataDir = join(config.dataDir, "ferretdb");
  const backend = config.embeddedBackend;
  const ferret = await startEmbeddedFerretDb({ dataDir, backend, logger: logger.child({ component: "ferretdb" }) });
  logger.info({ dataDir, backend }, "embedded FerretDB started (MONGODB_URI not set)");
  try {
    const database = await connectDb(ferret.uri, config.mongoDb);
    return {
      ...database,
      close: async () => {
        await database.close();
        await ferret.stop();
      },
    };
  } catch (error) {
    await ferret.stop();
    throw error;
  }
}
