// The cloud API alone in its own process, as deployed: the export benchmark reads this process's
// memory without the load generator's, the ingest benchmark gives it a core of its own. Started by
// startCloudProcess (processes.ts); prints `ready <port>` when listening; stops on SIGTERM.

import { buildApp } from "../src/app.ts";
import { loadConfig } from "../src/config.ts";
import { connectDb } from "../src/storage/connect.ts";

const uri = process.env.BENCH_MONGODB_URI as string;
const config = loadConfig({ PORT: "0", LOG_LEVEL: "silent", EXPORT_SCHEDULER: "off" });
const database = await connectDb(uri, process.env.BENCH_MONGODB_DB as string);
const app = await buildApp({ db: database.db, config });
await app.listen({ port: 0, host: "127.0.0.1" });
const address = app.server.address();
process.stdout.write(`ready ${typeof address === "object" && address ? address.port : 0}\n`);
process.on("SIGTERM", () => {
  app
    .close()
    .then(() => database.close())
    .then(() => process.exit(0));
});
