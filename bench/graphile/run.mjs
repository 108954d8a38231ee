// graphile-worker, tuned as its performance guide says (a local queue of 500, batched
// completion), draining N no-op jobs at concurrency C: the peer socialsync's throughput is
// measured beside (bench/src/graphile.rs installs it and runs this).
//   node run.mjs <connection string> <jobs> <concurrency>
// Prints one JSON line: {"jobs": N, "seconds": S} — from the runner's start to the moment the
// queue table is empty, i.e. every completion committed (graphile-worker deletes a completed job).
import { Logger, makeWorkerUtils, run } from "graphile-worker";
import pg from "pg";

const [connectionString, jobsArg, concurrencyArg] = process.argv.slice(2);
const jobs = Number(jobsArg);
const concurrency = Number(concurrencyArg);
// Silent: its log lines would be the benchmark's output.
const logger = new Logger(() => () => {});
const preset = {
  worker: {
    connectionString,
    concurrentJobs: concurrency,
    maxPoolSize: 10,
    pollInterval: 1000,
    localQueue: { size: 500 },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
  },
};

const utils = await makeWorkerUtils({ connectionString, logger });
await utils.migrate();
for (let i = 0; i < jobs; i += 1000) {
  const batch = [];
  for (let j = i; j < Math.min(jobs, i + 1000); j++) batch.push({ identifier: "noop", payload: { i: j } });
  await utils.addJobs(batch);
}
await utils.release();

const client = new pg.Client({ connectionString });
await client.connect();
const left = async () => (await client.query("SELECT EXISTS (SELECT 1 FROM graphile_worker._private_jobs) AS any")).rows[0].any;

let handled = 0;
let allHandled;
const handledAll = new Promise((resolve) => (allHandled = resolve));
const started = process.hrtime.bigint();
const runner = await run({
  preset,
  noHandleSignals: true,
  logger,
  taskList: {
    noop: async () => {
      if (++handled === jobs) allHandled();
    },
  },
});
await handledAll;
// Completions are batched: the last are committed a moment after their handlers returned.
while (await left()) await new Promise((r) => setTimeout(r, 2));
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
await runner.stop();
await client.end();
console.log(JSON.stringify({ jobs, seconds }));
