// Vonage's Node SDK against a real OpenDispatch server: the Messages API v1, as a user writes it.
//
//   node send_v1.mjs failover --api-host http://127.0.0.1:8080 --app shop.json \
//       --whatsapp-to 447700900001 --sms-to 447700900009
//   node send_v1.mjs kinds --api-host http://127.0.0.1:8080 --app shop.json --to 447700900009
//   node send_v1.mjs invalid --api-host http://127.0.0.1:8080 --app shop.json --to not-a-number
//
// `failover` listens for status webhooks on 127.0.0.1 (a free port, given to the server as each
// message's webhook_url) and checks each one as a Vonage user would: the SDK's verifySignature
// with the application's signature secret, then the body's SHA-256 against the token's
// payload_hash. It sends a WhatsApp message with a failover to SMS with the application's key
// and secret (Basic), and waits until the SMS ends. `kinds` sends one message of each kind the
// SDK's classes build, with the application's JWT, and notes which are refused. `invalid` sends
// one invalid message with the JWT and catches the SDK's error. Each prints one JSON report on stdout and
// judges nothing: the test that runs it (tests/acceptance/test_v1_sdks.py) does.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { parseArgs } from "node:util";

import { verifySignature } from "@vonage/jwt";
import {
  MMSImage,
  MessengerText,
  SMS,
  ViberText,
  WhatsAppImage,
  WhatsAppTemplate,
  WhatsAppText,
} from "@vonage/messages";
import { Vonage } from "@vonage/server-sdk";

const {
  positionals: [scenario],
  values: args,
} = parseArgs({
  allowPositionals: true,
  options: {
    "api-host": { type: "string" },
    app: { type: "string" },
    "whatsapp-to": { type: "string" },
    "sms-to": { type: "string" },
    to: { type: "string" },
    "timeout-ms": { type: "string", default: "30000" },
  },
});
const app = JSON.parse(readFileSync(args.app, "utf8")); // `opendispatch apps create --json`
const FROM = "447700900000";

// -- the receiver ------------------------------------------------------------------------------

const webhooks = [];
let arrived = () => {};

function claimsOf(token) {
  try {
    return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8"));
  } catch {
    return null;
  }
}

const receiver = createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    const raw = Buffer.concat(chunks);
    const authorization = request.headers.authorization ?? "";
    const token = authorization.startsWith("Bearer ") ? authorization.slice(7) : "";
    const claims = token ? claimsOf(token) : null;
    const verified = token !== "" && verifySignature(token, app.signature_secret);
    const bodyHash = createHash("sha256").update(raw).digest("hex");
    let body = null;
    try {
      body = JSON.parse(raw.toString("utf8"));
    } catch {
      body = raw.toString("utf8");
    }
    webhooks.push({
      path: request.url,
      verified,
      payload_hash_matches: claims !== null && claims.payload_hash === bodyHash,
      claims,
      body,
    });
    // A webhook that fails the check is refused, as a careful receiver would.
    response.writeHead(verified ? 200 : 401).end();
    arrived();
  });
});
await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
const webhookUrl = `http://127.0.0.1:${receiver.address().port}/status`;

function smsEnded() {
  return webhooks.some(
    (w) =>
      w.body?.channel === "sms" && ["delivered", "rejected", "undeliverable"].includes(w.body?.status),
  );
}

async function waitFor(condition, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) {
    await new Promise((resolve) => {
      arrived = resolve;
      setTimeout(resolve, Math.max(0, deadline - Date.now()));
    });
  }
  return condition();
}

// -- the SDK -----------------------------------------------------------------------------------

async function sendWithFailover(report) {
  const vonage = new Vonage(
    { apiKey: app.api_key, apiSecret: app.api_secret },
    { apiHost: args["api-host"] },
  );
  // The SDK has no failover argument: its type MessageWithFailover is a message with a
  // `failover` array of complete messages, which it snake-cases and sends as it is.
  report.sent = await vonage.messages.send({
    ...new WhatsAppText({
      to: args["whatsapp-to"],
      from: FROM,
      text: "Your code is 64873",
      clientRef: "node-sdk",
      webhookUrl,
    }),
    failover: [
      new SMS({ to: args["sms-to"], from: FROM, text: "Your code is 64873", webhookUrl }),
    ],
  });
  report.sms_ended = await waitFor(smsEnded, Number(args["timeout-ms"]));
}

function signedClient() {
  return new Vonage(
    { applicationId: app.application_id, privateKey: app.private_key },
    { apiHost: args["api-host"] },
  );
}

async function errorReport(error) {
  // VetchError: the SDK reads no field of the error body; a user reads the response.
  const text = error.response ? await error.response.text() : "";
  let body = text;
  try {
    body = JSON.parse(text);
  } catch {}
  return {
    name: error.constructor.name,
    message: error.message,
    status: error.response?.status ?? null,
    content_type: error.response?.headers.get("content-type") ?? null,
    body,
  };
}

async function sendEveryKind(report) {
  const vonage = signedClient();
  const to = args.to;
  const image = { url: "https://example.com/a.jpg", caption: "Hi" };
  const kinds = {
    sms: new SMS({
      to, from: FROM, text: "Hi", ttl: 600, trustedRecipient: true,
      sms: { encodingType: "unicode", contentId: "c1", entityId: "e1" },
    }),
    "mms image": new MMSImage({ to: "14155550109", from: "14155550100", image }),
    "whatsapp text": new WhatsAppText({ to, from: FROM, text: "Hi" }),
    "whatsapp image": new WhatsAppImage({ to, from: FROM, image }),
    "whatsapp template": new WhatsAppTemplate({
      to, from: FROM,
      template: { name: "ns:code", parameters: ["64873"] },
      whatsapp: { policy: "deterministic", locale: "en_GB" },
    }),
    "viber text": new ViberText({
      to, from: "Shop", text: "Hi", viberService: { category: "transaction", ttl: 600 },
    }),
    "messenger text": new MessengerText({
      to: "1234567", from: "7654321", text: "Hi", messenger: { category: "response" },
    }),
  };
  report.accepted = {};
  report.refused = {};
  for (const [kind, message] of Object.entries(kinds)) {
    try {
      report.accepted[kind] = (await vonage.messages.send(message)).messageUUID;
    } catch (error) {
      report.refused[kind] = await errorReport(error);
    }
  }
}

async function sendInvalid(report) {
  const vonage = signedClient();
  try {
    report.sent = await vonage.messages.send(
      new WhatsAppText({ to: args.to, from: FROM, text: "never sent" }),
    );
  } catch (error) {
    report.error = await errorReport(error);
  }
}

const report = { scenario, webhook_url: webhookUrl };
try {
  await { failover: sendWithFailover, kinds: sendEveryKind, invalid: sendInvalid }[scenario](report);
} catch (error) {
  report.failure = `${error?.constructor?.name}: ${error?.message}\n${error?.stack ?? ""}`;
} finally {
  report.webhooks = webhooks;
  receiver.closeAllConnections();
  receiver.close();
  // The SDK's fetch keeps its connection alive for a few seconds: exit once the report is out.
  process.stdout.write(`${JSON.stringify(report)}\n`, () => process.exit(0));
}
