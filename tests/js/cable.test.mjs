// Hearth's cable as a Rails app's JavaScript sees it: the official
// @rails/actioncable consumer, in Node, against a real server.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { ActionCable, createCookieConsumer, pause, subscribe } from "./support/cable.mjs";
import { postMessage, roomIdOf, signUp, startServer } from "./support/server.mjs";

const TEST_TIMEOUT_MS = 20_000;
const PAYLOAD_KEYS = ["chatroom_id", "content", "created_at", "html", "id", "nickname", "seq", "type", "user_id"];

/** @type {import("./support/server.mjs").TestServer} */
let server;
/** Session cookies of the two people chatting. */
let maya = "";
let theo = "";
/** @type {{ channel: "ChatroomChannel", id: number }} */
let general;

before(async () => {
  server = await startServer();
  maya = await signUp(server.url, { email: "maya@example.com", nickname: "maya", password: "correct horse 1" });
  theo = await signUp(server.url, { email: "theo@example.com", nickname: "theo", password: "correct horse 2" });
  general = { channel: "ChatroomChannel", id: await roomIdOf(server.url, maya) };
});

after(async () => {
  await server?.stop();
});

/**
 * A consumer for this test, disconnected when the test ends.
 * @param {import("node:test").TestContext} t
 * @param {string | null} cookie
 */
function connect(t, cookie) {
  const connection = createCookieConsumer(server.url, cookie);
  t.after(() => connection.close());
  return connection;
}

/**
 * Subscribes and waits for the package's `connected()` callback.
 * @param {ActionCable.Consumer} consumer
 * @param {Record<string, unknown>} params
 */
async function subscribed(consumer, params) {
  const subscription = subscribe(consumer, params);
  await subscription.events.until(`a confirmed subscription to ${JSON.stringify(params)}`, (events) =>
    events.some((e) => e.kind === "connected"),
  );
  return subscription;
}

/**
 * Checks every key of a message payload and the values a reader relies on.
 * @param {any} message
 * @param {{ nickname: string, content: string, chatroom_id: number }} expected
 */
function assertMessagePayload(message, expected) {
  assert.deepEqual(Object.keys(message).sort(), PAYLOAD_KEYS);
  assert.equal(message.type, "message");
  for (const key of ["id", "chatroom_id", "seq", "user_id"]) {
    assert.ok(Number.isSafeInteger(message[key]) && message[key] > 0, `${key} is a positive integer: ${message[key]}`);
  }
  assert.equal(message.chatroom_id, expected.chatroom_id);
  assert.equal(message.nickname, expected.nickname);
  assert.equal(message.content, expected.content);
  assert.equal(typeof message.created_at, "string");
  const created = Date.parse(message.created_at);
  assert.ok(Math.abs(Date.now() - created) < 60_000, `created_at ${message.created_at} is a date close to now`);
  assert.equal(typeof message.html, "string");
  assert.ok(message.html.includes(`id="message_${message.id}"`), `html names its message: ${message.html}`);
  assert.ok(message.html.includes(`data-seq="${message.seq}"`), `html carries its seq: ${message.html}`);
}

/**
 * The text of HTML that uses character references, as a browser would read it.
 * @param {string} html
 */
function decodeText(html) {
  const named = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };
  return html.replace(/&(#x[0-9a-f]+|#\d+|lt|gt|amp|quot|apos);/gi, (_, ref) => {
    if (ref[0] !== "#") return named[/** @type {keyof typeof named} */ (ref.toLowerCase())];
    return String.fromCodePoint(ref[1].toLowerCase() === "x" ? parseInt(ref.slice(2), 16) : Number(ref.slice(1)));
  });
}

test(
  "two people in a room both receive a message posted over HTTP and one spoken on the cable",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const mayaCable = connect(t, maya);
    const theoCable = connect(t, theo);
    const [mayaRoom, theoRoom] = await Promise.all([
      subscribed(mayaCable.consumer, general),
      subscribed(theoCable.consumer, general),
    ]);

    // maya's consumer was created first, so if the cookies got crossed her words would carry theo's name.
    const posted = await postMessage(server.url, theo, general.id, "Morning! Is the staging deploy done?");
    assert.equal(mayaRoom.subscription.perform("speak", { content: "  Yes, and the smoke tests are green.\n" }), true);

    for (const [who, room] of [["maya", mayaRoom], ["theo", theoRoom]]) {
      await room.events.until(`${who} to receive both messages`, () => room.events.received.length >= 2);
    }
    // Give a duplicate time to show up before counting.
    await pause(200);

    const [first, second] = mayaRoom.events.received;
    assert.equal(mayaRoom.events.received.length, 2, "maya receives each message once");
    assert.deepEqual(theoRoom.events.received, mayaRoom.events.received, "both receive the same payloads in the same order");
    assertMessagePayload(first, { nickname: "theo", content: "Morning! Is the staging deploy done?", chatroom_id: general.id });
    assertMessagePayload(second, { nickname: "maya", content: "Yes, and the smoke tests are green.", chatroom_id: general.id });
    assert.deepEqual(first, posted, "the broadcast is the payload the POST answered with");
    assert.ok(second.seq > first.seq, `seq increases: ${first.seq} then ${second.seq}`);
    assert.notEqual(second.user_id, first.user_id);
  },
);

test("subscribing to a room that does not exist is rejected", { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const cable = connect(t, maya);
  const missing = subscribe(cable.consumer, { channel: "ChatroomChannel", id: 987654 });

  await missing.events.until("the rejected callback", (events) => events.some((e) => e.kind === "rejected"));
  assert.deepEqual(missing.events.events, [{ kind: "rejected" }]);
  // The rejection ends that subscription only: the same connection still joins a real room.
  await subscribed(cable.consumer, general);
  assert.equal(cable.sockets.length, 1);
});

/**
 * Creates a private room as `cookie`'s user and returns its id.
 * @param {string} cookie
 * @param {string} name
 */
async function createPrivateRoom(cookie, name) {
  const response = await fetch(`${server.url}/chatrooms`, {
    method: "POST",
    headers: { Cookie: cookie },
    body: new URLSearchParams({ name, private: "1" }),
    redirect: "manual",
  });
  const found = /^\/chatrooms\/(\d+)$/.exec(response.headers.get("location") ?? "");
  assert.equal(response.status, 303);
  assert.ok(found, "redirected to the new room");
  return Number(found[1]);
}

test(
  "a private room rejects a non-member's subscription, confirms a member's, and ends it when they are removed",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const room = { channel: "ChatroomChannel", id: await createPrivateRoom(maya, `plans-${Date.now()}`) };
    const outsider = connect(t, theo);
    const refused = subscribe(outsider.consumer, room);
    await refused.events.until("the rejected callback", (events) => events.some((e) => e.kind === "rejected"));
    assert.deepEqual(refused.events.events, [{ kind: "rejected" }]);

    const member = connect(t, maya);
    const subscription = await subscribed(member.consumer, room);
    await postMessage(server.url, maya, room.id, "only for members");
    const received = await subscription.events.until("the member's message", (events) =>
      events.find((e) => e.kind === "received"),
    );
    assert.equal(received.data.content, "only for members");

    // Invited, then removed: the package hears the end of its subscription as a rejection.
    const invited = await fetch(`${server.url}/chatrooms/${room.id}/members`, {
      method: "POST",
      headers: { Cookie: maya },
      body: new URLSearchParams({ nickname: "theo" }),
      redirect: "manual",
    });
    assert.equal(invited.status, 303);
    const theoInRoom = await subscribed(outsider.consumer, room);
    const theoId = await userIdOf(theo);
    const removed = await fetch(`${server.url}/chatrooms/${room.id}/members/${theoId}/remove`, {
      method: "POST",
      headers: { Cookie: maya },
      redirect: "manual",
    });
    assert.equal(removed.status, 303);
    await theoInRoom.events.until("the rejected callback after removal", (events) => events.some((e) => e.kind === "rejected"));
    assert.ok(
      !outsider.consumer.subscriptions.findAll(JSON.stringify(room)).length,
      "the package dropped the subscription",
    );
  },
);

/**
 * The user id behind a session cookie, from the JSON of a message they post in #general.
 * @param {string} cookie
 */
async function userIdOf(cookie) {
  const message = await postMessage(server.url, cookie, general.id, "who am I?");
  return message.user_id;
}

test(
  "a consumer without a session cookie is told it is unauthorized and does not reconnect",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    // Make the package's monitor impatient, so a wrongful reconnect would happen within the pause below.
    const { ConnectionMonitor } = ActionCable;
    const staleThreshold = ConnectionMonitor.staleThreshold;
    ConnectionMonitor.staleThreshold = 0.3;
    t.after(() => {
      ConnectionMonitor.staleThreshold = staleThreshold;
    });

    const stranger = connect(t, null);
    const room = subscribe(stranger.consumer, general);
    const disconnected = await room.events.until("the disconnected callback", (events) =>
      events.find((e) => e.kind === "disconnected"),
    );

    assert.deepEqual(disconnected, { kind: "disconnected", willAttemptReconnect: false });
    assert.deepEqual(stranger.frames, [{ type: "disconnect", reason: "unauthorized", reconnect: false }]);
    await pause(1_500);
    assert.equal(stranger.sockets.length, 1, "no second socket was opened");
    assert.ok(!stranger.consumer.connection.monitor.isRunning(), "the connection monitor has stopped");
    assert.deepEqual(room.events.events, [disconnected], "never connected, disconnected once");
  },
);

test("markup in a message arrives escaped in html and untouched in content", { timeout: TEST_TIMEOUT_MS }, async (t) => {
  const cable = connect(t, theo);
  const room = await subscribed(cable.consumer, general);
  const content = `<script>alert("hi")</script> & <b>bold</b> isn't markup`;

  room.subscription.perform("speak", { content });
  const message = await room.events.until("the message with markup", (events) =>
    events.find((e) => e.kind === "received" && e.data.content === content),
  );

  const { html } = message.data;
  assertMessagePayload(message.data, { nickname: "theo", content, chatroom_id: general.id });
  assert.match(html, /(&#60;|&lt;)script(&#62;|&gt;)/);
  assert.doesNotMatch(html, /<script|<b>/);
  const paragraph = /<div class="content">(?:<p>)?([^<]*)</.exec(html);
  assert.ok(paragraph, `html has the content without tags inside: ${html}`);
  assert.equal(decodeText(paragraph[1]).trim(), content, "the escaped text reads back as the original");
});

/**
 * Edits or deletes a message as `fetch` from a page would; resolves with the answer's payload.
 * @param {string} cookie
 * @param {"PATCH" | "DELETE"} method
 * @param {{ chatroom_id: number, id: number }} message
 * @param {string} [content]
 */
async function change(cookie, method, message, content) {
  const response = await fetch(`${server.url}/chatrooms/${message.chatroom_id}/messages/${message.id}`, {
    method,
    headers: { Cookie: cookie, Accept: "application/json", "Content-Type": "application/json" },
    body: content === undefined ? undefined : JSON.stringify({ content }),
  });
  assert.equal(response.status, 200, `${method} answered ${response.status}`);
  return response.json();
}

test(
  "an edit and a deletion reach a subscriber live and a client cut meanwhile through catch_up",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    const carol = await signUp(server.url, { email: "carol@example.com", nickname: "carol", password: "correct horse 3" });
    const theoRoom = await subscribed(connect(t, theo).consumer, general);
    const carolCable = connect(t, carol);
    const carolRoom = await subscribed(carolCable.consumer, general);

    const typo = await postMessage(server.url, maya, general.id, "The deploy is dnoe.");
    const oops = await postMessage(server.url, maya, general.id, "Wrong room, sorry.");
    await carolRoom.events.until("carol to receive both", () => carolRoom.events.received.length >= 2);
    // carol's socket is cut; she does not hear what happens next.
    carolCable.close();

    const edited = await change(maya, "PATCH", typo, "The deploy is **done**.");
    const deleted = await change(maya, "DELETE", oops);
    assert.equal(edited.type, "message_edited");
    assert.equal(edited.seq, oops.seq + 1, "the edit takes the room's next seq");
    assert.equal(edited.message_seq, typo.seq, "and names the message's own");
    assert.match(edited.html, /<strong>done<\/strong>/);
    assert.deepEqual(
      { type: deleted.type, id: deleted.id, seq: deleted.seq, message_seq: deleted.message_seq },
      { type: "message_deleted", id: oops.id, seq: edited.seq + 1, message_seq: oops.seq },
    );

    await theoRoom.events.until("theo to see the edit and the deletion", () =>
      theoRoom.events.received.some((m) => m.type === "message_deleted"),
    );
    await pause(200);
    const live = theoRoom.events.received.filter((m) => m.seq > oops.seq);
    assert.deepEqual(live, [edited, deleted], "live, once each, in the room's order");

    // carol comes back on a new connection and catches up from the last seq she saw.
    const back = await subscribed(connect(t, carol).consumer, general);
    back.subscription.perform("catch_up", { after: oops.seq });
    const caughtUp = await back.events.until("caught_up", () =>
      back.events.received.find((m) => m.type === "caught_up"),
    );
    const replayed = back.events.received.filter((m) => m.type !== "caught_up");
    assert.deepEqual(replayed, [edited, deleted], "the same payloads, in order, without gaps");
    assert.deepEqual(caughtUp, { type: "caught_up", last_seq: deleted.seq, more: false });
  },
);
