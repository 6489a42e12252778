// Hearth's cable as an AnyCable app's JavaScript sees it: the official
// @anycable/web client in the extended protocol (`actioncable-v1-ext-json`),
// in Node, against a real server that loses sockets and gets SIGKILLed.

import assert from "node:assert/strict";
import path from "node:path";
import { test } from "node:test";

import Database from "better-sqlite3";

import { createCookieCable } from "./support/anycable.mjs";
import { postMessage, roomIdOf, signUp, startServer } from "./support/server.mjs";

/** The flags that let a test sign people up and post as fast as it needs. */
const UNTHROTTLED = ["--message-rate", "0", "--sign-up-rate-per-ip", "0"];
/** The offsets' history, as the server names it; it does not change across restarts. */
const EPOCH = "hearth";
/** Any single wait; keeps a failure from hanging. */
const STEP_TIMEOUT_MS = 10_000;
/** Long enough for a duplicate to show up after the last message. */
const SETTLE_MS = 500;

/**
 * @typedef {object} Receipt One call of the channel's `message` listener.
 * @property {import("./support/server.mjs").MessagePayload} message
 * @property {{ stream: string, epoch: string, offset: number } | undefined} meta
 */

/**
 * Reconnects within a second: the package's default waits 1.5–9 s after the
 * first drop, which would spend this file's time budget on waiting.
 * @param {number} attempts Failed attempts since the last connection.
 */
const quickReconnect = (attempts) => Math.min(1_000, 100 * 2 ** attempts) * (0.5 + Math.random() / 2);

/**
 * Resolves after `ms` milliseconds.
 * @param {number} ms
 */
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/**
 * Resolves once `check` returns something truthy; polls, and fails after `timeoutMs`.
 * @template T
 * @param {string} what
 * @param {() => T} check
 * @param {number} [timeoutMs]
 * @returns {Promise<T>}
 */
async function eventually(what, check, timeoutMs = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = check();
    if (result) return result;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await pause(10);
  }
}

/**
 * A server for one test, and cables to it; when the test ends the cables
 * close first, so none of them sees the server go and reconnects.
 * @param {import("node:test").TestContext} t
 */
async function serverFor(t) {
  const server = await startServer({ args: UNTHROTTLED });
  /** @type {import("./support/anycable.mjs").CookieCable[]} */
  const cables = [];
  t.after(async () => {
    for (const cable of cables) cable.close();
    await server.stop();
  });
  /**
   * @param {string} cookie
   * @param {Record<string, unknown>} [options] More `createCable` options.
   */
  const connect = (cookie, options = {}) => {
    const cable = createCookieCable(server.url, cookie, { reconnectStrategy: quickReconnect, ...options });
    cables.push(cable);
    return cable;
  };
  return { server, connect };
}

/**
 * Subscribes to a room the way an AnyCable app does, and keeps every message
 * the channel hands over — duplicates included — with its stream position.
 * @param {import("@anycable/web").Cable} cable
 * @param {number} roomId
 */
function follow(cable, roomId) {
  const channel = cable.subscribeTo("ChatroomChannel", { id: roomId });
  /** @type {Receipt[]} */
  const receipts = [];
  channel.on("message", (message, meta) => {
    receipts.push({ message: /** @type {any} */ (message), meta: /** @type {any} */ (meta) });
  });
  return { channel, receipts };
}

/**
 * Every message of a room, oldest first, read from the server's SQLite file
 * (WAL mode, so reading beside the running server is safe).
 * @param {string} dataDir
 * @param {number} roomId
 * @returns {{ id: number, seq: number, content: string, nickname: string }[]}
 */
function storedMessages(dataDir, roomId) {
  const db = new Database(path.join(dataDir, "hearth.db"), { readonly: true, fileMustExist: true });
  try {
    return /** @type {any[]} */ (
      db
        .prepare(
          `SELECT m.id, m.seq, m.content, u.nickname
           FROM messages m JOIN users u ON u.id = m.user_id
           WHERE m.chatroom_id = ? ORDER BY m.seq`,
        )
        .all(roomId)
    );
  } finally {
    db.close();
  }
}

/**
 * What one socket carried, in a line a frame, short enough to read: runs of
 * messages become their offset range.
 * @param {import("./support/anycable.mjs").Frame[]} frames
 * @param {number} socket
 */
function describeSocket(frames, socket) {
  /** @type {string[]} */
  const lines = [];
  /** @type {[number, number] | null} */
  let run = null;
  const endRun = () => {
    if (run) lines.push(`  in  messages at offsets ${run[0]}..${run[1]}`);
    run = null;
  };
  for (const { direction, data } of frames.filter((f) => f.socket === socket)) {
    if (direction === "in" && data?.message?.type === "message") {
      if (run && data.offset === run[1] + 1) run[1] = data.offset;
      else {
        endRun();
        run = [data.offset, data.offset];
      }
      continue;
    }
    if (direction === "in" && data?.type === "ping") continue;
    endRun();
    lines.push(`  ${direction.padEnd(3)} ${JSON.stringify(data)}`);
  }
  endRun();
  return `socket ${socket}:\n${lines.join("\n")}`;
}

/**
 * The figures of a run: what the client went through, read from its frames.
 * @param {import("./support/anycable.mjs").Frame[]} frames
 */
function cableFigures(frames) {
  const incoming = frames.filter((f) => f.direction === "in").map((f) => f.data);
  const outgoing = frames.filter((f) => f.direction === "out").map((f) => f.data);
  const welcomes = incoming.filter((d) => d?.type === "welcome");
  return {
    welcomes: welcomes.length,
    restored: welcomes.filter((d) => d.restored === true).length,
    subscribes: outgoing.filter((d) => d?.command === "subscribe").length,
    subscribesWithPositions: outgoing.filter(
      (d) => d?.command === "subscribe" && Object.keys(d.history?.streams ?? {}).length > 0,
    ).length,
    historyCommands: outgoing.filter((d) => d?.command === "history").length,
    confirmedHistories: incoming.filter((d) => d?.type === "confirm_history").length,
    rejectedHistories: incoming.filter((d) => d?.type === "reject_history").length,
  };
}

/**
 * Posts `count` messages over HTTP from a few concurrent workers at about
 * `perSecond` in all, each post retried until the server acknowledges it —
 * through kills and restarts — or `deadline` passes.
 * @param {{ url: string, cookies: string[], roomId: number, count: number, perSecond: number, deadline: number }} plan
 */
function publish({ url, cookies, roomId, count, perSecond, deadline }) {
  /** @type {Map<number, import("./support/server.mjs").MessagePayload>} */
  const acknowledged = new Map();
  let next = 0;
  let retries = 0;
  const startedAt = Date.now();

  const worker = async (/** @type {string} */ cookie) => {
    for (let i = next++; i < count; i = next++) {
      await pause(startedAt + (i * 1000) / perSecond - Date.now());
      const content = `message ${i + 1} of ${count}`;
      for (;;) {
        try {
          const message = await postMessage(url, cookie, roomId, content, { signal: AbortSignal.timeout(2_000) });
          acknowledged.set(message.id, message);
          break;
        } catch (error) {
          // A post the server stored but could not answer comes back as a
          // second message with the same text: the transcript must show both.
          if (Date.now() > deadline) throw new Error(`gave up posting "${content}": ${error}`);
          retries += 1;
          await pause(25);
        }
      }
    }
  };
  const done = Promise.all(cookies.map(worker));
  return { acknowledged, done, retries: () => retries };
}

/**
 * `count` distinct integers from [`low`, `high`), ascending.
 * @param {number} count
 * @param {number} low
 * @param {number} high
 */
function randomPoints(count, low, high) {
  const points = new Set();
  while (points.size < count) points.add(low + Math.floor(Math.random() * (high - low)));
  return [...points].sort((a, b) => a - b);
}

test("loss under faults with @anycable/web", { timeout: 60_000 }, async (t) => {
  const MESSAGES = 2_000;
  const CUTS = 10;
  const PUBLISHERS = 4;
  const { server, connect } = await serverFor(t);
  const reader = await signUp(server.url, { email: "rae@example.com", nickname: "rae", password: "correct horse 1" });
  const writers = [];
  for (let i = 1; i <= PUBLISHERS; i++) {
    writers.push(await signUp(server.url, { email: `w${i}@example.com`, nickname: `w${i}`, password: "correct horse 2" }));
  }
  const roomId = await roomIdOf(server.url, reader);
  const stream = `chatrooms:${roomId}`;

  const subscriber = connect(reader);
  const { channel, receipts } = follow(subscriber.cable, roomId);
  await channel.ensureSubscribed();

  const startedAt = Date.now();
  const publisher = publish({
    url: server.url,
    cookies: writers,
    roomId,
    count: MESSAGES,
    perSecond: 125,
    deadline: startedAt + 40_000,
  });
  let publishing = true;
  const stopped = () => {
    publishing = false;
  };
  publisher.done.then(stopped, stopped);

  // Faults at random points of the run, counted in acknowledged messages: ten
  // socket cuts anywhere, a SIGKILL around the first third and another around
  // the second. Each waits until the subscriber is back, so none lands on another.
  const faults = [
    ...randomPoints(CUTS, MESSAGES * 0.05, MESSAGES * 0.95).map((at) => ({ at, kind: "cut" })),
    { at: randomPoints(1, MESSAGES * 0.3, MESSAGES * 0.45)[0], kind: "kill" },
    { at: randomPoints(1, MESSAGES * 0.6, MESSAGES * 0.75)[0], kind: "kill" },
  ].sort((a, b) => a.at - b.at);
  let cuts = 0;
  let kills = 0;
  for (const fault of faults) {
    await eventually(`${fault.at} acknowledged messages`, () => publisher.acknowledged.size >= fault.at || !publishing, 30_000);
    // The channel can still say "connected" just after a kill closed its
    // socket: wait for an open socket too, or the cut finds none.
    await eventually("the subscriber to be connected", () => channel.state === "connected" && subscriber.isOpen());
    if (fault.kind === "cut") {
      if (subscriber.cut()) cuts += 1;
    } else {
      await server.kill();
      kills += 1;
      // Down long enough for posts to fail and the client to retry in vain.
      await pause(300);
      await server.restart();
    }
  }
  await publisher.done;
  const publishedIn = Date.now() - startedAt;

  const stored = storedMessages(server.dataDir, roomId);
  const lastSeq = stored.at(-1)?.seq ?? 0;
  await eventually(`the subscriber to reach seq ${lastSeq}`, () => receipts.some((r) => r.message.seq === lastSeq)).catch(
    () => {}, // the comparison below says what is missing
  );
  await pause(SETTLE_MS);

  const figures = cableFigures(subscriber.frames);
  const receivedIds = receipts.map((r) => r.message.id);
  const seen = new Set();
  const duplicates = receivedIds.filter((id) => seen.has(id) || !seen.add(id));
  const storedIds = stored.map((m) => m.id);
  const missing = stored.filter((m) => !seen.has(m.id));
  t.diagnostic(
    `${stored.length} messages stored (${publisher.acknowledged.size} acknowledged, ${publisher.retries()} posts retried) ` +
      `in ${publishedIn} ms; ${cuts} cuts, ${kills} kills; ` +
      `${subscriber.sockets.length} sockets, ${figures.welcomes - 1} reconnections, ${figures.restored} restored sessions, ` +
      `${figures.subscribes} subscribes (${figures.subscribesWithPositions} with stream positions), ` +
      `${figures.historyCommands} history commands, ${figures.confirmedHistories} confirm_history, ` +
      `${figures.rejectedHistories} reject_history; ${receipts.length} receipts, ${duplicates.length} duplicates, ` +
      `${missing.length} missing`,
  );

  assert.equal(cuts, CUTS, "every cut found an open socket");
  assert.deepEqual(
    stored.map((m) => m.seq),
    stored.map((_, i) => i + 1),
    "the room's seqs run 1, 2, 3 … without gaps",
  );
  const storedSet = new Set(storedIds);
  for (const id of publisher.acknowledged.keys()) assert.ok(storedSet.has(id), `acknowledged message ${id} is stored`);

  // Each run of lost messages, with what the socket that carried the next
  // message said and heard, frame by frame: the evidence for a report.
  const gaps = missing.reduce((runs, { seq }) => {
    const last = runs.at(-1);
    if (last && last[1] === seq - 1) last[1] = seq;
    else runs.push([seq, seq]);
    return runs;
  }, /** @type {[number, number][]} */ ([]));
  const evidence = gaps.slice(0, 3).map(([from, to]) => {
    const next = subscriber.frames.find((f) => f.direction === "in" && f.data?.message?.seq === to + 1);
    const where = next ? describeSocket(subscriber.frames, next.socket) : "nothing after it arrived";
    return `seqs ${from}..${to} never arrived; ${where}`;
  });
  assert.deepEqual(
    gaps,
    [],
    `the subscriber missed ${missing.length} stored messages in ${gaps.length} runs\n${evidence.join("\n")}`,
  );
  assert.deepEqual(duplicates, [], "the channel hands over each message once");
  assert.deepEqual(receivedIds, storedIds, "the subscriber's transcript is the room's, in order");
  for (const { message, meta } of receipts) {
    const row = stored[message.seq - 1];
    assert.equal(message.type, "message");
    assert.deepEqual([message.content, message.nickname], [row.content, row.nickname]);
    assert.deepEqual(meta, { stream, epoch: EPOCH, offset: message.seq }, `message ${message.seq}'s position`);
  }
  assert.ok(figures.restored >= 1, "at least one cut was answered by a restored session");
  assert.ok(figures.subscribesWithPositions >= kills, "after each kill the client resubscribed with its position");
});

/**
 * A server for one test; rae follows #general in the extended protocol and
 * reconnects after a fixed 500 ms, so what wes does meanwhile lands while
 * she is away.
 * @param {import("node:test").TestContext} t
 */
async function readerWhoWillBeCut(t) {
  const { server, connect } = await serverFor(t);
  const reader = await signUp(server.url, { email: "rae@example.com", nickname: "rae", password: "correct horse 1" });
  const writer = await signUp(server.url, { email: "wes@example.com", nickname: "wes", password: "correct horse 2" });
  const roomId = await roomIdOf(server.url, reader);
  const subscriber = connect(reader, { reconnectStrategy: () => 500 });
  const { channel, receipts } = follow(subscriber.cable, roomId);
  await channel.ensureSubscribed();
  return { server, writer, roomId, stream: `chatrooms:${roomId}`, subscriber, channel, receipts };
}

test(
  "a cut socket comes back as a restored session and gets what was posted while away, once",
  { timeout: 20_000 },
  async (t) => {
    const { server, writer, roomId, stream, subscriber, channel, receipts } = await readerWhoWillBeCut(t);
    /** @type {{ reconnect: boolean, restored: boolean }[]} */
    const connects = [];
    subscriber.cable.on("connect", (event) => connects.push(event));
    const before = await postMessage(server.url, writer, roomId, "Before the tunnel.");
    await eventually("the first message", () => receipts.length === 1);
    const [first] = subscriber.frames.filter((f) => f.direction === "in" && f.data.type === "welcome");
    assert.match(first.data.sid, /^\S+$/, "the welcome names the session");

    assert.ok(subscriber.cut(), "the socket was open");
    const away = [];
    for (const content of ["In the tunnel, 1.", "In the tunnel, 2.", "In the tunnel, 3."]) {
      away.push(await postMessage(server.url, writer, roomId, content));
    }
    assert.equal(subscriber.sockets.length, 1, "the posts landed before the client reconnected");

    const welcome = await eventually("the second welcome", () =>
      subscriber.frames.find((f) => f.socket === 1 && f.direction === "in" && f.data.type === "welcome"),
    );
    await eventually("the three messages from while away", () => receipts.length >= 4);
    await pause(SETTLE_MS);

    assert.equal(new URL(subscriber.sockets[1].url).searchParams.get("sid"), first.data.sid, "the client asked for its session");
    assert.deepEqual(welcome.data, {
      type: "welcome",
      sid: welcome.data.sid,
      restored: true,
      restored_ids: [channel.identifier],
    });
    assert.notEqual(welcome.data.sid, first.data.sid, "the restored session has a new id");
    assert.deepEqual(connects.at(-1), { reconnect: true, restored: true });

    const sent = subscriber.frames.filter((f) => f.socket === 1 && f.direction === "out").map((f) => f.data);
    assert.ok(!sent.some((d) => d.command === "subscribe"), `no resubscribe after a restore: ${JSON.stringify(sent)}`);
    const history = sent.find((d) => d.command === "history");
    assert.deepEqual(history?.history.streams, { [stream]: { epoch: EPOCH, offset: before.seq } });

    assert.deepEqual(
      receipts.map((r) => r.message),
      [before, ...away],
      "each message once, in order, as the POST answered it",
    );
    assert.deepEqual(
      receipts.map((r) => r.meta),
      [before, ...away].map((m) => ({ stream, epoch: EPOCH, offset: m.seq })),
    );
    assert.ok(
      subscriber.frames.some((f) => f.socket === 1 && f.data.type === "confirm_history"),
      "the replay ended with confirm_history",
    );
  },
);

test(
  "an edit and a deletion made while a socket was cut arrive through the restored session's history, once",
  { timeout: 20_000 },
  async (t) => {
    const { server, writer, roomId, stream, subscriber, receipts } = await readerWhoWillBeCut(t);
    const typo = await postMessage(server.url, writer, roomId, "Lunch at nonn?");
    const extra = await postMessage(server.url, writer, roomId, "Ignore this.");
    await eventually("both messages", () => receipts.length === 2);

    assert.ok(subscriber.cut(), "the socket was open");
    const change = async (/** @type {string} */ method, /** @type {{ id: number }} */ message, body) => {
      const response = await fetch(`${server.url}/chatrooms/${roomId}/messages/${message.id}`, {
        method,
        headers: { Cookie: writer, Accept: "application/json", "Content-Type": "application/json" },
        body: body && JSON.stringify(body),
      });
      assert.equal(response.status, 200);
      return response.json();
    };
    const edited = await change("PATCH", typo, { content: "Lunch at noon?" });
    const deleted = await change("DELETE", extra);
    assert.equal(subscriber.sockets.length, 1, "the changes landed before the client reconnected");

    await eventually("the edit and the deletion", () => receipts.length >= 4);
    await pause(SETTLE_MS);
    assert.deepEqual(
      receipts.map((r) => r.message),
      [typo, extra, edited, deleted],
      "each once, in the room's order",
    );
    assert.deepEqual(
      receipts.slice(2).map((r) => r.meta),
      [edited, deleted].map((m) => ({ stream, epoch: EPOCH, offset: m.seq })),
      "their offsets are their places in the room's sequence",
    );
    assert.equal(edited.message_seq, typo.seq);
    assert.equal(deleted.type, "message_deleted");
  },
);

test(
  "a restored client whose history request is slow to arrive still gets what it missed, before what follows",
  { timeout: 20_000 },
  async (t) => {
    // The same restore as above, with one message posted live while the
    // client's `history` command is still on its way (a slow uplink).
    const { server, connect } = await serverFor(t);
    const reader = await signUp(server.url, { email: "rae@example.com", nickname: "rae", password: "correct horse 1" });
    const writer = await signUp(server.url, { email: "wes@example.com", nickname: "wes", password: "correct horse 2" });
    const roomId = await roomIdOf(server.url, reader);

    const subscriber = connect(reader, { reconnectStrategy: () => 500 });
    const { channel, receipts } = follow(subscriber.cable, roomId);
    await channel.ensureSubscribed();
    const before = await postMessage(server.url, writer, roomId, "Before the tunnel.");
    await eventually("the first message", () => receipts.length === 1);

    assert.ok(subscriber.cut(), "the socket was open");
    const away = [];
    for (const content of ["In the tunnel, 1.", "In the tunnel, 2.", "In the tunnel, 3."]) {
      away.push(await postMessage(server.url, writer, roomId, content));
    }
    subscriber.delayUplink(300);
    await eventually("the restored welcome", () =>
      subscriber.frames.find((f) => f.socket === 1 && f.direction === "in" && f.data.restored === true),
    );
    const live = await postMessage(server.url, writer, roomId, "Out of the tunnel.");
    await eventually("the live message", () => receipts.some((r) => r.message.id === live.id));
    await pause(SETTLE_MS);

    assert.deepEqual(
      receipts.map((r) => r.message.seq),
      [before, ...away, live].map((m) => m.seq),
      `each message once, in order\n${describeSocket(subscriber.frames, 1)}`,
    );
  },
);
