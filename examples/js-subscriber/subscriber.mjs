// A pgjet subscriber in JavaScript: plain JetStream plus a Confluent schema-registry client.
//
// It creates (or binds) a durable pull consumer with subject filters, decodes each event's
// payload (Confluent wire format) through pgjet's registry HTTP API, dedupes by
// (ce-subject, ce-streamversion), prints one JSON line per event and acknowledges it.
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

// Beyond JetStream's duplicate window an event may arrive twice: dedupe by stream version.
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
    data = await registry.decode(Buffer.from(m.data));
  } catch (err) {
    console.error(`decoding ${h.get("ce-id")}: ${err.message}`);
    m.nak(1_000);
    continue;
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
