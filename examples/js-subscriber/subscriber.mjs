// A pgjet subscriber in JavaScript: plain JetStream plus a Confluent schema-registry client.
//
// It creates (or binds) a durable pull consumer with subject filters, decodes each event's
// payload (Confluent wire format) through pgjet's registry HTTP API, dedupes by
// (ce-subject, ce-streamversion), prints one JSON line per event and acknowledges it. Events
// are handled one at a time, in stream order: one that cannot be decoded is retried in
// place, never skipped.
//
// Environment:
//   NATS_URL      NATS server(s), comma-separated      default nats://127.0.0.1:4222
//   REGISTRY_URL  pgjet schema registry base URL       default http://127.0.0.1:8080
//   STREAM        JetStream stream of the events       default PGJET_EVENTS
//   GROUP         durable consumer name                default js-subscriber
//   FILTERS       subject filters, comma-separated     default pgjet.events.>
//                 e.g. pgjet.events.order.>  (a category)
//                      pgjet.events.*.pgjet:demo:order:OrderPlaced.*  (a type)
//                      pgjet.events.order.*.order-123  (a stream)
//   COUNT         exit after this many events          default 0: run until SIGINT
//   DECODE_ATTEMPTS
//                 tries to decode an event before      default 8 (about 20s)
//                 stopping with exit code 1
import { connect } from "@nats-io/transport-node";
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { SchemaRegistry } from "@kafkajs/confluent-schema-registry";

const env = (name, def) => process.env[name] || def;
const natsURL = env("NATS_URL", "nats://127.0.0.1:4222");
const registryURL = env("REGISTRY_URL", "http://127.0.0.1:8080");
const stream = env("STREAM", "PGJET_EVENTS");
const group = env("GROUP", "js-subscriber");
const filters = env("FILTERS", "pgjet.events.>").split(",").map((s) => s.trim()).filter(Boolean);
const count = Number(env("COUNT", "0"));
const decodeAttempts = Number(env("DECODE_ATTEMPTS", "8"));

const registry = new SchemaRegistry({ host: registryURL });
const nc = await connect({ servers: natsURL.split(","), name: group });
const jsm = await jetstreamManager(nc);

// Create the durable consumer, or bind it if it already exists.
try {
  await jsm.consumers.info(stream, group);
} catch {
  await jsm.consumers.add(stream, {
    durable_name: group,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ...(filters.length === 1 ? { filter_subject: filters[0] } : { filter_subjects: filters }),
  });
}

const consumer = await jetstream(nc).consumers.get(stream, group);
const messages = await consumer.consume({ max_messages: 100, idle_heartbeat: 5_000 });
process.once("SIGINT", () => messages.stop());
process.once("SIGTERM", () => messages.stop());

// decode decodes m's payload (Confluent wire format: byte 0, the 4-byte schema id, Avro)
// with the writer's schema from the registry. It retries in place rather than nak: a
// nak'ed event comes back after the later events of its stream, which the version check
// below would then take it for a duplicate of and drop. After DECODE_ATTEMPTS it gives
// up and the subscriber stops without acknowledging, so JetStream delivers the event
// again to the next run.
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function decode(m) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await registry.decode(Buffer.from(m.data));
    } catch (err) {
      console.error(`decoding ${m.headers.get("ce-id")} (attempt ${attempt} of ${decodeAttempts}): ${err.message}`);
      if (attempt >= decodeAttempts) throw err;
      m.working(); // restart the ack wait while retrying
      await sleep(Math.min(100 * 2 ** attempt, 5_000));
    }
  }
}

// Beyond JetStream's duplicate window an event may arrive twice: dedupe by stream version.
// Events are handled one at a time in the order they come, so a stream's events come in
// version order and the highest version handled marks its duplicates.
const lastVersion = new Map();
let handled = 0;
for await (const m of messages) {
  const h = m.headers;
  const streamID = h.get("ce-subject");
  const version = Number(h.get("ce-streamversion"));
  if (version <= (lastVersion.get(streamID) ?? 0)) {
    m.ack();
    continue;
  }
  let data;
  try {
    data = await decode(m);
  } catch {
    console.error(`giving up on ${h.get("ce-id")} (stream ${streamID}, version ${version}); it stays unacknowledged`);
    process.exitCode = 1;
    break;
  }
  console.log(JSON.stringify({
    id: h.get("ce-id"),
    stream: streamID,
    version,
    type: h.get("ce-type"),
    position: Number(h.get("ce-position")),
    time: h.get("ce-time"),
    data,
  }, (_, v) => (typeof v === "bigint" ? v.toString() : v)));
  lastVersion.set(streamID, version);
  await m.ackAck();
  if (count > 0 && ++handled >= count) break;
}
await nc.drain();
