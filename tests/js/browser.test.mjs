// Hearth's pages in a real browser: two people sign up through the form, chat
// live in one room, and someone without JavaScript still gets a working form.

import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

import { startServer } from "./support/server.mjs";

const TEST_TIMEOUT_MS = 30_000;
/** Any single wait in a page; keeps a failure from hanging. */
const STEP_TIMEOUT_MS = 5_000;
/** How soon a message must show on the other person's page. */
const LIVE_WITHIN_MS = 1_000;
const VIEWPORT = { width: 1000, height: 640 };
const ARTIFACTS = process.env.HEARTH_ARTIFACTS
  ? path.resolve(process.env.HEARTH_ARTIFACTS)
  : fileURLToPath(new URL("./artifacts/", import.meta.url));

/** @type {import("./support/server.mjs").TestServer} */
let server;
/** @type {import("playwright-core").Browser} */
let browser;

/**
 * @typedef {object} Person Someone signed up in their own browser context.
 * @property {string} nickname
 * @property {import("playwright-core").Page} page
 * @property {string[]} frames Every cable frame the page received, as text.
 */

/** @type {Person} */
let maya;
/** @type {Person} */
let theo;

before(async () => {
  server = await startServer();
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  await mkdir(ARTIFACTS, { recursive: true });
  [maya, theo] = await Promise.all([
    signUpInBrowser({ email: "maya@example.com", nickname: "maya", password: "correct horse 1" }),
    signUpInBrowser({ email: "theo@example.com", nickname: "theo", password: "correct horse 2" }),
  ]);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/**
 * Opens a fresh browser context, fills in the sign-up form and waits to land in a room.
 * @param {{ email: string, nickname: string, password: string }} account
 * @param {import("playwright-core").BrowserContextOptions} [options]
 * @param {string} [base] The server's URL; the suite's server by default.
 * @returns {Promise<Person>}
 */
async function signUpInBrowser(account, options = {}, base = server.url) {
  const context = await browser.newContext({ viewport: VIEWPORT, ...options });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  /** @type {string[]} */
  const frames = [];
  page.on("websocket", (socket) => socket.on("framereceived", ({ payload }) => frames.push(String(payload))));

  await page.goto(`${base}/sign_up`);
  await page.getByLabel("Email").fill(account.email);
  await page.getByLabel("Nickname").fill(account.nickname);
  await page.getByLabel("Password").fill(account.password);
  await page.getByRole("button", { name: "Sign up" }).click();
  await page.waitForURL(/\/chatrooms\/\d+$/);
  return { nickname: account.nickname, page, frames };
}

/**
 * A server of the test's own (no message limit, so a test can fill a room),
 * stopped when the test ends, and `nickname` signed up on it in a browser.
 * @param {import("node:test").TestContext} t
 * @param {string} nickname
 * @param {import("playwright-core").BrowserContextOptions} options
 */
async function ownServerWith(t, nickname, options) {
  const own = await startServer({ args: ["--message-rate", "0"] });
  t.after(() => own.stop());
  const person = await signUpInBrowser(
    { email: `${nickname}@example.com`, nickname, password: `correct horse ${nickname}` },
    options,
    own.url,
  );
  return { own, person, page: person.page, room: new URL(person.page.url()).pathname };
}

/**
 * A server of the test's own with ann and bob on desktops and carol on a
 * phone, each signed up in a browser of their own, closed when the test ends.
 * @param {import("node:test").TestContext} t
 */
async function threeOnOwnServer(t) {
  const desktop = { width: 1280, height: 800 };
  const { own, page: annPage } = await ownServerWith(t, "ann", { viewport: desktop });
  const account = (nickname) => ({ email: `${nickname}@example.com`, nickname, password: `correct horse ${nickname}` });
  const bob = await signUpInBrowser(account("bob"), { viewport: desktop }, own.url);
  const carol = await signUpInBrowser(account("carol"), { viewport: { width: 390, height: 844 } }, own.url);
  t.after(() => Promise.all([annPage, bob.page, carol.page].map((p) => p.context().close().catch(() => {}))));
  return { own, annPage, bob, carol };
}

/**
 * Resolves once `check` returns something truthy; polls, and fails after `timeoutMs`.
 * @template T
 * @param {string} what
 * @param {() => T | Promise<T>} check
 * @param {number} [timeoutMs]
 * @returns {Promise<T>}
 */
async function eventually(what, check, timeoutMs = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await check();
    if (result) return result;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * The element showing exactly `text` in the room's message list.
 * @param {import("playwright-core").Page} page
 * @param {string} text
 */
const listed = (page, text) => page.locator("#messages").getByText(text, { exact: true });

/**
 * Waits until the composer is empty and focused again: the page's answer to a sent message.
 * @param {import("playwright-core").Page} page
 */
function composerReady(page) {
  return page.waitForFunction(
    () => {
      const input = /** @type {HTMLTextAreaElement | null} */ (document.getElementById("message-content"));
      return input !== null && input.value === "" && document.activeElement === input;
    },
    null,
    { timeout: STEP_TIMEOUT_MS },
  );
}

/**
 * Types `text` into the composer, presses Enter, and waits for the page to take it.
 * @param {Person} person
 * @param {string} text
 */
async function say(person, text) {
  const input = person.page.locator("#message-content");
  await input.pressSequentially(text);
  await input.press("Enter");
  await composerReady(person.page);
}

/**
 * The room's messages as a reader sees them: who said what, top to bottom.
 * @param {import("playwright-core").Page} page
 */
function transcript(page) {
  return page.locator("#messages article.message").evaluateAll((articles) =>
    articles.map((article) => `${article.querySelector(".nickname")?.textContent}: ${article.querySelector(".content")?.textContent?.trim()}`),
  );
}

test(
  "a message sent in one browser appears in the other within a second, without a reload, and once for its sender",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    assert.equal(maya.page.url(), theo.page.url(), "both landed in the same room");
    await Promise.all(
      [maya, theo].map((p) => p.page.locator('#connection-status[data-state="online"]').waitFor()),
    );
    await theo.page.evaluate(() => {
      /** @type {any} */ (window).__marker = 1;
    });
    const text = "Morning Theo! Is the staging deploy out yet?";

    const input = maya.page.locator("#message-content");
    await input.pressSequentially(text);
    const sentAt = Date.now();
    await input.press("Enter");
    await listed(theo.page, text).waitFor({ timeout: LIVE_WITHIN_MS });
    t.diagnostic(`shown on the other page ${Date.now() - sentAt} ms after Enter`);

    assert.equal(await theo.page.evaluate(() => /** @type {any} */ (window).__marker), 1, "theo's page was not reloaded");
    assert.equal(await listed(theo.page, text).count(), 1);

    // The sender's page gets the message twice — in the POST's answer and as a
    // broadcast — so count only after both have arrived.
    await composerReady(maya.page);
    // The page takes messages in the "html" format: the rendered element
    // without the fields it does not read.
    const broadcast = () => maya.frames.map((frame) => JSON.parse(frame).message).find((m) => m?.type === "message" && m.html?.includes(text));
    await eventually("the broadcast to reach maya's page", () => broadcast() !== undefined);
    assert.equal(broadcast().content, undefined, "the page's frames carry no content field");
    assert.equal(broadcast().nickname, undefined, "nor the nickname");
    await eventually("the pending message to be replaced", async () => (await maya.page.locator("article.pending").count()) === 0);
    assert.equal(await listed(maya.page, text).count(), 1, "the message is shown once on maya's page");
  },
);

test(
  "a short conversation reads the same in both browsers",
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const conversation = /** @type {const} */ ([
      [() => theo, "Yes, it went out ten minutes ago. Smoke tests are green."],
      [() => maya, "Great, I'll let the support team know it's live."],
      [() => theo, "Thanks! Grabbing a coffee, back in five."],
    ]);
    for (const [author, text] of conversation) {
      await say(author(), text);
      const reader = author() === maya ? theo : maya;
      await listed(reader.page, text).waitFor({ timeout: LIVE_WITHIN_MS });
    }

    const [seenByMaya, seenByTheo] = await Promise.all([transcript(maya.page), transcript(theo.page)]);
    assert.deepEqual(seenByTheo, seenByMaya);
    assert.deepEqual(
      seenByMaya.slice(-3),
      conversation.map(([author, text]) => `${author().nickname}: ${text}`),
    );

    await maya.page.screenshot({ path: path.join(ARTIFACTS, "chat-a.png") });
    await theo.page.screenshot({ path: path.join(ARTIFACTS, "chat-b.png") });
  },
);

test(
  "a room created in one browser appears in the other's room list without a reload",
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    await maya.page.locator('#connection-status[data-state="online"]').waitFor();
    const created = await theo.page.request.post(`${server.url}/chatrooms`, {
      form: { name: "deploys" },
      maxRedirects: 0,
    });
    assert.equal(created.status(), 303);
    const link = maya.page.locator("#room-list").getByRole("link", { name: "# deploys" });
    await link.waitFor({ timeout: LIVE_WITHIN_MS });
    assert.equal(await link.getAttribute("href"), created.headers().location);
    assert.equal(await maya.page.locator("#room-list li").first().textContent(), "# deploys", "newest on top");
  },
);

test(
  "without JavaScript the form posts, redirects back to the room and lists the message",
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const ines = await signUpInBrowser(
      { email: "ines@example.com", nickname: "ines", password: "correct horse 3" },
      { javaScriptEnabled: false },
    );
    const { page } = ines;
    const room = new URL(page.url()).pathname;
    const text = "Posting from a browser with scripts turned off.";

    await page.locator("#message-content").fill(text);
    const answered = page.waitForResponse(
      (r) => r.request().method() === "POST" && new URL(r.url()).pathname === `${room}/messages`,
    );
    await page.getByRole("button", { name: "Send" }).click();
    const response = await answered;

    assert.equal(response.status(), 303);
    assert.equal(await response.headerValue("location"), room);
    await listed(page, text).waitFor();
    assert.equal(new URL(page.url()).pathname, room);
    assert.equal(await listed(page, text).count(), 1);
    // Nothing live happened: the page's script never ran.
    assert.equal(await page.locator("#connection-status").getAttribute("data-state"), "offline");
    await page.context().close();
  },
);

test(
  "a page that loses its server catches up after it comes back",
  { timeout: TEST_TIMEOUT_MS },
  async (t) => {
    // The fault is a SIGKILL of the server, not Playwright's `setOffline`:
    // in Chromium, going offline does not close an open WebSocket, it only
    // holds its frames and hands them over on the same socket once back
    // online, so the page never notices and nothing would be caught up. A
    // killed server drops the socket at once, as a crash does. To post while
    // the page is away, the server comes back only after the page's third
    // failed reconnect: its next try waits at least 2 s (backoff 0.5, 1, 2,
    // 4 s, half of it jitter), ample time to restart and post; the test
    // checks that the page was still away when the posts were acknowledged.
    const { page } = maya;
    await page.locator('#connection-status[data-state="online"]').waitFor();
    await page.evaluate(() => {
      /** @type {any} */ (window).__marker = 2;
    });
    const lastSeq = await page
      .locator("#messages article.message")
      .evaluateAll((articles) => Math.max(0, ...articles.map((a) => Number(/** @type {HTMLElement} */ (a).dataset.seq))));
    /** Every socket the page opens from here on: what it sent, and whether it closed. */
    /** @type {{ sent: string[], closed: boolean }[]} */
    const sockets = [];
    /** @param {import("playwright-core").WebSocket} socket */
    const track = (socket) => {
      const entry = { sent: /** @type {string[]} */ ([]), closed: false };
      sockets.push(entry);
      socket.on("framesent", ({ payload }) => entry.sent.push(String(payload)));
      socket.on("close", () => {
        entry.closed = true;
      });
    };
    page.on("websocket", track);
    t.after(() => page.off("websocket", track));

    await server.kill();
    await page.locator('#connection-status[data-state="offline"]').waitFor();
    await eventually("three failed reconnects", () => sockets.length >= 3 && sockets[2].closed, 10_000);
    await server.restart();
    const texts = ["Server's back, did you see the outage?", "It was down for a few seconds.", "All three of these should show up once."];
    for (const content of texts) {
      // As theo, over HTTP, with his browser context's session cookie.
      const response = await theo.page.request.post(`${server.url}${new URL(page.url()).pathname}/messages`, {
        headers: { Accept: "application/json" },
        form: { content },
      });
      assert.equal(response.status(), 201, await response.text());
    }
    const postedAt = Date.now();
    assert.equal(sockets.length, 3, "the page had not reconnected yet when the posts were acknowledged");
    assert.notEqual(await page.locator("#connection-status").getAttribute("data-state"), "online");

    const banner = page.locator("#offline-banner");
    assert.ok(await banner.isVisible(), "the offline banner shows");
    assert.match(await banner.innerText(), /Reconnecting in \d+ s/);
    await page.screenshot({ path: path.join(ARTIFACTS, "offline-banner.png") });
    await page.getByRole("button", { name: "Retry now" }).click();
    await page.locator('#connection-status[data-state="online"]').waitFor({ timeout: 8_000 });
    assert.ok(await banner.isHidden(), "the banner goes once back online");
    await listed(page, texts[2]).waitFor();
    t.diagnostic(`caught up ${Date.now() - postedAt} ms after the posts, on reconnect ${sockets.length}`);
    // Give a duplicate time to show up before counting.
    await new Promise((resolve) => setTimeout(resolve, 300));

    assert.equal(await page.evaluate(() => /** @type {any} */ (window).__marker), 2, "the page was not reloaded");
    for (const text of texts) assert.equal(await listed(page, text).count(), 1, `"${text}" is shown once`);
    assert.deepEqual((await transcript(page)).slice(-3), texts.map((text) => `theo: ${text}`));
    const catchUp = sockets.at(-1)?.sent.map((frame) => JSON.parse(frame)).find((frame) => frame.command === "message");
    assert.deepEqual(JSON.parse(catchUp?.data ?? "null"), { action: "catch_up", after: lastSeq }, "the page asked for what it missed");
  },
);

test(
  "in a full room only the message list scrolls, at desktop and phone sizes",
  { timeout: 60_000 },
  async (t) => {
    const own = await startServer({ args: ["--message-rate", "0"] });
    t.after(() => own.stop());
    const sizes = [
      { width: 1280, height: 800 },
      { width: 390, height: 844 },
    ];
    for (const [n, viewport] of sizes.entries()) {
      const person = await signUpInBrowser(
        { email: `pane${n}@example.com`, nickname: `pane${n}`, password: "correct horse 4" },
        { viewport },
        own.url,
      );
      const { page } = person;
      const room = new URL(page.url()).pathname;
      // Someone else in the room, over HTTP: one's own messages always scroll to them.
      const other = await browser.newContext();
      t.after(() => other.close());
      const signedUp = await other.request.post(`${own.url}/sign_up`, {
        form: { email: `other${n}@example.com`, nickname: `other${n}`, password: "correct horse 5" },
        maxRedirects: 0,
      });
      assert.equal(signedUp.status(), 303);
      const post = async (/** @type {string} */ content) => {
        const response = await other.request.post(`${own.url}${room}/messages`, {
          headers: { Accept: "application/json" },
          form: { content },
        });
        assert.equal(response.status(), 201);
      };
      for (let i = 1; i <= 80; i++) await post(`Filler message ${i} of a busy afternoon in the room.`);
      await page.reload();
      await page.locator('#connection-status[data-state="online"]').waitFor();

      const layout = () =>
        page.evaluate(() => {
          const list = /** @type {HTMLElement} */ (document.getElementById("messages"));
          const composer = /** @type {HTMLElement} */ (document.getElementById("message-content"));
          const header = /** @type {HTMLElement} */ (document.querySelector(".room-header"));
          return {
            windowScroll: window.scrollY,
            documentHeight: document.documentElement.scrollHeight,
            innerHeight: window.innerHeight,
            listScrolls: list.scrollHeight > list.clientHeight,
            fromBottom: list.scrollHeight - list.scrollTop - list.clientHeight,
            scrollTop: list.scrollTop,
            composerBottom: composer.getBoundingClientRect().bottom,
            headerTop: header.getBoundingClientRect().top,
          };
        });
      const opened = await layout();
      assert.equal(opened.windowScroll, 0, "the window does not scroll");
      assert.ok(opened.documentHeight <= opened.innerHeight, `the page fits the window: ${JSON.stringify(opened)}`);
      assert.ok(opened.listScrolls, "the message list is the scroll container");
      assert.ok(opened.fromBottom < 2, `it opens at the bottom: ${JSON.stringify(opened)}`);
      assert.ok(opened.composerBottom <= opened.innerHeight && opened.headerTop >= 0, "header and composer are on screen");
      await page.screenshot({ path: path.join(ARTIFACTS, `full-room-${viewport.width}x${viewport.height}.png`) });

      // At the bottom, a new message from elsewhere is followed.
      await post("Arrives while reading the latest");
      await listed(page, "Arrives while reading the latest").waitFor();
      await eventually("the list to follow the new message", async () => (await layout()).fromBottom < 2);

      // Scrolled up to read (not to the very top, which loads older pages),
      // a new message does not move the list; a button says it came.
      await page.locator("#messages").evaluate((list) => {
        list.scrollTop = 300;
      });
      await post("Arrives while reading older ones");
      await page.getByRole("button", { name: "1 new message ↓" }).waitFor();
      const reading = await layout();
      assert.equal(reading.scrollTop, 300, "the reader's position is kept");
      assert.equal(reading.windowScroll, 0);
      await page.getByRole("button", { name: "1 new message ↓" }).click();
      await listed(page, "Arrives while reading older ones").waitFor();
      await eventually("the list to be at the newest message", async () => (await layout()).fromBottom < 2);
      assert.equal(await page.locator("#new-messages").isHidden(), true);

      // A permalink opens on its message, in view, with a way back to the latest.
      await page.goto(`${own.url}${room}?around=20`);
      const linked = page.locator("#linked");
      await linked.waitFor();
      assert.ok(await linked.isVisible());
      const inView = await linked.evaluate((element) => {
        const box = element.getBoundingClientRect();
        const list = /** @type {HTMLElement} */ (document.getElementById("messages")).getBoundingClientRect();
        // Within a pixel: the list may round its scroll position.
        return box.top >= list.top - 1 && box.bottom <= list.bottom + 1;
      });
      assert.ok(inView, "the linked message is scrolled into view");
      await page.getByRole("button", { name: "Jump to the latest ↓" }).waitFor();
      await page.screenshot({ path: path.join(ARTIFACTS, `permalink-${viewport.width}x${viewport.height}.png`) });
      await page.context().close();
    }
  },
);

test(
  "scrolling through 1,000 messages pages them in once each, keeps the place, and holds a few hundred at most",
  { timeout: 120_000 },
  async (t) => {
    const { own, page, room } = await ownServerWith(t, "reader", { viewport: { width: 1280, height: 800 } });
    const total = 1000;
    for (let start = 1; start <= total; start += 25) {
      await Promise.all(
        Array.from({ length: Math.min(25, total - start + 1) }, (_, i) =>
          page.request.post(`${own.url}${room}/messages`, {
            headers: { Accept: "application/json" },
            form: { content: `Numbered message ${start + i}` },
          }),
        ),
      );
    }
    await page.reload();
    await page.locator('#connection-status[data-state="online"]').waitFor();

    const state = () =>
      page.evaluate(() => {
        const list = /** @type {HTMLElement} */ (document.getElementById("messages"));
        const articles = [...list.querySelectorAll("article.message")];
        const first = /** @type {HTMLElement} */ (articles[0]);
        return {
          seqs: articles.map((a) => Number(/** @type {HTMLElement} */ (a).dataset.seq)),
          firstId: first.id,
          olderLink: list.querySelector(".history-link.older") !== null,
          newerLink: list.querySelector(".history-link.newer") !== null,
        };
      });
    const top = (/** @type {string} */ id) =>
      page.evaluate((id) => document.getElementById(id)?.getBoundingClientRect().top ?? null, id);
    /** @type {Set<number>} */
    const seen = new Set();
    let mostKept = 0;
    const look = async () => {
      const now = await state();
      assert.equal(new Set(now.seqs).size, now.seqs.length, "no message is in the page twice");
      assert.deepEqual(now.seqs, [...now.seqs].sort((a, b) => a - b), "in seq order");
      now.seqs.forEach((seq) => seen.add(seq));
      mostKept = Math.max(mostKept, now.seqs.length);
      return now;
    };

    // Up to the first message.
    let now = await look();
    let pages = 0;
    while (now.olderLink) {
      const anchor = now.firstId;
      // Scrolled to the top, the first message's place on screen, measured
      // before the older page (fetched asynchronously) can arrive.
      const before = await page.locator("#messages").evaluate((list, id) => {
        list.scrollTop = 0;
        return document.getElementById(id)?.getBoundingClientRect().top ?? null;
      }, anchor);
      await eventually("an older page", async () => (await state()).firstId !== anchor, 10_000);
      const after = await top(anchor);
      // The reader's place: the message that was on top stays where it was
      // (give or take the height of the "Older messages" link).
      assert.ok(after !== null && before !== null && Math.abs(after - before) < 40, `the place is kept: ${before} → ${after}`);
      now = await look();
      pages += 1;
      assert.ok(pages < 100, "paging ends");
    }
    assert.equal(now.seqs[0], 1, "the first message was reached");
    assert.ok(mostKept <= 340, `at most a few hundred in the page (${mostKept})`);
    await page.screenshot({ path: path.join(ARTIFACTS, "history-top.png") });

    // And back down to the newest, which is live again.
    assert.ok(now.newerLink, "the newest were dropped while reading the oldest");
    while (now.newerLink) {
      const last = now.seqs.at(-1);
      await page.locator("#messages").evaluate((list) => {
        list.scrollTop = list.scrollHeight;
      });
      await eventually("a newer page", async () => (await state()).seqs.at(-1) !== last, 10_000);
      now = await look();
    }
    assert.equal(now.seqs.at(-1), total, "back at the newest");
    assert.equal(seen.size, total, "every message was seen");
    assert.ok(mostKept <= 340, `at most a few hundred in the page (${mostKept})`);
    await page.getByRole("button", { name: /new message|Jump/ }).waitFor({ state: "hidden" });

    // Live again: a new message lands at the bottom.
    await page.request.post(`${own.url}${room}/messages`, { form: { content: "Back at the live end" } });
    await listed(page, "Back at the live end").waitFor();
    await page.context().close();
  },
);

test(
  "the composer: Shift+Enter keeps a new line, nothing over the limit is cut or sent, drafts stay, and a failed send can be retried",
  { timeout: 60_000 },
  async (t) => {
    const { own, page, room } = await ownServerWith(t, "writer", { viewport: { width: 1280, height: 800 } });
    const input = page.locator("#message-content");
    await page.locator('#connection-status[data-state="online"]').waitFor();

    // Two lines, sent with Enter, shown as two lines.
    await input.pressSequentially("first line");
    await input.press("Shift+Enter");
    await input.pressSequentially("second line");
    await input.press("Enter");
    const twoLines = page.locator("#messages article.message[data-seq] .content", { hasText: "second line" });
    await twoLines.waitFor();
    assert.equal(await twoLines.innerText(), "first line\nsecond line");
    assert.equal(await input.inputValue(), "");

    // Markdown and bare links render; typed HTML shows as typed.
    await input.fill("**ship it** see https://example.com/notes <i>as typed</i>");
    await input.press("Enter");
    const rich = page.locator("#messages article.message[data-seq] .content", { hasText: "ship it" });
    await rich.waitFor();
    assert.equal(await rich.locator("strong").textContent(), "ship it");
    assert.equal(await rich.locator("a").getAttribute("href"), "https://example.com/notes");
    assert.equal(await rich.locator("a").getAttribute("rel"), "noopener noreferrer nofollow ugc");
    assert.equal(await rich.locator("i").count(), 0);
    assert.match(await rich.innerText(), /<i>as typed<\/i>/);

    // Over the limit: said, not sent, not cut.
    let posts = 0;
    const countPosts = (/** @type {import("playwright-core").Request} */ request) => {
      if (request.method() === "POST") posts += 1;
    };
    page.on("request", countPosts);
    const long = "x".repeat(4498);
    await input.fill(long);
    await page.locator("#composer-count.over").waitFor();
    assert.match(await page.locator("#composer-count").textContent() ?? "", /498 characters over the limit of 4000/);
    await input.press("Enter");
    await page.locator("#composer-error", { hasText: "498 characters too long" }).waitFor();
    assert.equal((await input.inputValue()).length, 4498, "nothing was cut");
    assert.equal(posts, 0, "nothing was sent");
    page.off("request", countPosts);
    await page.screenshot({ path: path.join(ARTIFACTS, "composer-over-limit.png") });

    // A draft survives leaving the room and a reload.
    await input.fill("half a thought");
    await page.goto(`${own.url}/chatrooms`);
    await page.goto(`${own.url}${room}`);
    assert.equal(await page.locator("#message-content").inputValue(), "half a thought");
    await page.reload();
    assert.equal(await page.locator("#message-content").inputValue(), "half a thought");
    await page.locator("#message-content").fill("");

    // Typing on while a send is in flight loses nothing; a failed send stays, with Retry.
    await page.locator('#connection-status[data-state="online"]').waitFor();
    /** @type {(() => void) | null} */
    let release = null;
    await page.route(`**${room}/messages`, async (route) => {
      if (route.request().method() !== "POST") return route.continue();
      await new Promise((resolve) => {
        release = () => resolve(undefined);
      });
      await route.abort("connectionrefused");
    });
    await page.locator("#message-content").pressSequentially("sent while offline");
    await page.locator("#message-content").press("Enter");
    await page.locator("article.pending", { hasText: "sent while offline" }).waitFor();
    await page.locator("#message-content").pressSequentially("typed meanwhile");
    await eventually("the post to be held", () => release !== null);
    /** @type {() => void} */ (/** @type {unknown} */ (release))();
    await page.locator("article.pending.failed", { hasText: "Not sent" }).waitFor();
    assert.equal(await page.locator("#message-content").inputValue(), "typed meanwhile", "what was typed meanwhile is kept");
    await page.screenshot({ path: path.join(ARTIFACTS, "composer-failed.png") });

    await page.unroute(`**${room}/messages`);
    await page.locator("article.pending.failed").getByRole("button", { name: "Retry" }).click();
    await page.locator("#messages article.message[data-seq]", { hasText: "sent while offline" }).waitFor();
    await eventually("the pending copy to go", async () => (await page.locator("article.pending").count()) === 0);
    assert.equal(await listed(page, "sent while offline").count(), 1);
    await page.context().close();
  },
);

test(
  "on a phone the room list opens from the header as a drawer, and the dark theme follows the system",
  { timeout: 60_000 },
  async (t) => {
    const { own, page } = await ownServerWith(t, "phone", { viewport: { width: 390, height: 844 }, colorScheme: "dark" });
    await page.request.post(`${own.url}/chatrooms`, { form: { name: "a room with a rather long name that will not fit" } });
    await page.reload();
    await page.locator('#connection-status[data-state="online"]').waitFor();
    const sidebar = page.locator("#sidebar");
    assert.ok(await sidebar.isHidden(), "the room list is out of the way");
    await page.locator("#rooms-toggle").click();
    assert.ok(await sidebar.isVisible(), "the drawer opens");
    await page.screenshot({ path: path.join(ARTIFACTS, "phone-drawer-dark.png") });
    const background = await page.evaluate(() => getComputedStyle(document.querySelector(".room") ?? document.body).backgroundColor);
    assert.notEqual(background, "rgb(255, 255, 255)", "the dark theme is used");
    await sidebar.getByRole("link", { name: /rather long name/ }).click();
    await page.waitForURL(/\/chatrooms\/\d+$/);
    assert.match(await page.locator(".room-header h1").innerText(), /rather long name/);
    assert.ok(await page.locator("#sidebar").isHidden(), "the drawer closes on the new room");
    await page.screenshot({ path: path.join(ARTIFACTS, "phone-room-dark.png") });
    assert.equal((await page.request.get(`${own.url}/favicon.ico`)).status(), 200, "a favicon");
    await page.context().close();
  },
);

test(
  "known XSS payloads in messages never reach the page as markup or run",
  { timeout: 60_000 },
  async (t) => {
    const { own, page, room } = await ownServerWith(t, "target", { viewport: { width: 1280, height: 800 } });
    const payloads = [
      "<script>window.__xss = 1</script>",
      "<img src=x onerror=\"window.__xss = 2\">",
      "<svg onload=window.__xss=3>",
      "[click me](javascript:window.__xss=4)",
      "[x](JaVaScRiPt:window.__xss=5)",
      "<a href=\"javascript:window.__xss=6\">link</a>",
      "<iframe src=\"javascript:window.__xss=7\"></iframe>",
      "![img](x\" onerror=\"window.__xss=8)",
      "`<script>window.__xss=9</script>`",
      "<details open ontoggle=window.__xss=10>",
      "**bold<style>body{display:none}</style>**",
      "[data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
      "<math><mtext><table><mglyph><style><img src=x onerror=window.__xss=11>",
      "&lt;script&gt;window.__xss=12&lt;/script&gt;",
    ];
    for (const content of payloads) {
      const response = await page.request.post(`${own.url}${room}/messages`, {
        headers: { Accept: "application/json" },
        form: { content },
      });
      assert.equal(response.status(), 201, content);
    }
    // Live, and again from the server's own render.
    await eventually("every payload to arrive", async () => (await page.locator("#messages article.message[data-seq]").count()) >= payloads.length);
    for (const view of ["live", "reloaded"]) {
      if (view === "reloaded") await page.reload();
      const found = await page.locator("#messages").evaluate((list) => ({
        active: list.querySelectorAll("script, style, iframe, img, svg, math, details, object, embed").length,
        handlers: [...list.querySelectorAll("*")].filter((el) => [...el.attributes].some((a) => a.name.startsWith("on"))).length,
        badLinks: [...list.querySelectorAll("a[href]")].filter((a) => !/^(https?:|mailto:|\/)/i.test(a.getAttribute("href") ?? "")).length,
        xss: /** @type {any} */ (window).__xss ?? null,
      }));
      assert.deepEqual(found, { active: 0, handlers: 0, badLinks: 0, xss: null }, view);
    }
    assert.ok(await listed(page, "<script>window.__xss = 1</script>").count() >= 1, "typed HTML shows as typed");
    await page.context().close();
  },
);

test(
  "a message edited with ↑ and then deleted changes on the other person's page at once; only its author gets Edit and Delete",
  { timeout: TEST_TIMEOUT_MS },
  async () => {
    const text = "Standup moves to 3pm today";
    await say(maya, text);
    await listed(theo.page, text).waitFor({ timeout: LIVE_WITHIN_MS });

    // ↑ in the empty composer edits maya's last message in place.
    await maya.page.locator("#message-content").press("ArrowUp");
    const editor = maya.page.locator("#messages form.edit-message textarea");
    await editor.waitFor();
    assert.equal(await editor.inputValue(), text, "the editor holds the text as typed");
    await editor.fill("Standup moves to **4pm** today");
    await editor.press("Enter");
    await maya.page.locator("#messages form.edit-message").waitFor({ state: "detached" });

    for (const page of [theo.page, maya.page]) {
      const article = page.locator("#messages article.message", { hasText: "Standup moves to" });
      await article.locator(".content strong", { hasText: "4pm" }).waitFor({ timeout: LIVE_WITHIN_MS });
      await article.locator(".edited").waitFor();
      assert.equal(await page.locator("#messages").getByText(text, { exact: true }).count(), 0, "the old text is gone");
    }
    await theo.page.screenshot({ path: path.join(ARTIFACTS, "edited-live.png") });

    // theo's action bar on maya's message has Link only; maya's has Edit and Delete too.
    const onTheo = theo.page.locator("#messages article.message", { hasText: "Standup moves to" });
    await onTheo.hover();
    await theo.page.locator("#message-actions [data-action=link]").waitFor();
    assert.equal(await theo.page.locator("#message-actions [data-action=edit]").isVisible(), false);
    assert.equal(await theo.page.locator("#message-actions [data-action=delete]").isVisible(), false);

    const onMaya = maya.page.locator("#messages article.message", { hasText: "Standup moves to" });
    await onMaya.hover();
    const deleteButton = maya.page.locator("#message-actions [data-action=delete]");
    await deleteButton.waitFor();
    await maya.page.screenshot({ path: path.join(ARTIFACTS, "message-actions.png") });
    maya.page.once("dialog", (dialog) => dialog.accept());
    await deleteButton.click();

    for (const page of [maya.page, theo.page]) {
      await page
        .locator("#messages article.message", { hasText: "Standup moves to" })
        .waitFor({ state: "detached", timeout: LIVE_WITHIN_MS });
    }
    // After a reload it stays gone, and the edited-then-deleted text is nowhere.
    await theo.page.reload();
    await composerReady(theo.page).catch(() => {});
    assert.equal(await theo.page.locator("#messages", { hasText: "Standup moves to" }).count(), 0);
  },
);

/**
 * Fills a server with rooms worth browsing, as `page`'s user: topics, a long
 * name, messages in some. Returns the id of "deploys".
 * @param {import("playwright-core").Page} page
 * @param {string} base
 */
async function roomsToBrowse(page, base) {
  const rooms = [
    ["deploys", "Release train, hotfixes and rollbacks — ask here before shipping"],
    ["design-reviews", "Critique of mockups and prototypes, Thursdays"],
    ["Straße", "Road works on the east side"],
    ["random", ""],
    ["a room with a rather long name that will not fit in one row", "And a topic that is far too long to fit on a single line of the directory, so it is cut with an ellipsis"],
    ["support", "Customer tickets that need an engineer"],
  ];
  let deploys = 0;
  for (const [name, topic] of rooms) {
    const created = await page.request.post(`${base}/chatrooms`, { form: { name, topic }, maxRedirects: 0 });
    assert.equal(created.status(), 303, name);
    const id = Number(created.headers().location.split("/").pop());
    if (name === "deploys") deploys = id;
    if (name === "deploys" || name === "support") {
      const posted = await page.request.post(`${base}/chatrooms/${id}/messages`, {
        headers: { Accept: "application/json" },
        form: { content: `Hello ${name}` },
      });
      assert.equal(posted.status(), 201);
    }
  }
  return deploys;
}

/** @param {import("playwright-core").Page} page */
const directoryNames = (page) =>
  page.locator("#directory-results .directory-name").evaluateAll((names) => names.map((n) => n.textContent?.replace(/^# /, "")));

test(
  "the directory narrows as you type without a reload, Escape clears it and Enter opens the first room",
  { timeout: 60_000 },
  async (t) => {
    const { own, page } = await ownServerWith(t, "browser", { viewport: { width: 1280, height: 800 } });
    const deploys = await roomsToBrowse(page, own.url);
    await page.goto(`${own.url}/chatrooms`);
    await page.waitForFunction(() => document.activeElement?.id === "directory-search"); // the search has the focus
    const all = await directoryNames(page);
    assert.equal(all.length, 7, `every room: ${all}`);
    await page.screenshot({ path: path.join(ARTIFACTS, "directory-1280x800-light.png") });
    await page.emulateMedia({ colorScheme: "dark" });
    await page.screenshot({ path: path.join(ARTIFACTS, "directory-1280x800-dark.png") });
    await page.emulateMedia({ colorScheme: "light" });
    await page.getByText("New room", { exact: true }).click();
    await page.getByLabel("Name", { exact: true }).fill("Deploys");
    await page.getByRole("button", { name: "Create room" }).click();
    await page.locator(".create-room[open] .errors").getByText("A room with that name already exists").waitFor();
    assert.equal(await page.getByLabel("Name", { exact: true }).inputValue(), "Deploys", "the form keeps what was typed");
    await page.screenshot({ path: path.join(ARTIFACTS, "directory-new-room-1280x800-light.png") });
    await page.goto(`${own.url}/chatrooms`);
    await page.waitForFunction(() => document.activeElement?.id === "directory-search");

    await page.evaluate(() => {
      /** @type {any} */ (window).__marker = 1;
    });
    const search = page.locator("#directory-search");
    await search.pressSequentially("STRASSE");
    await eventually("the list to narrow", async () => (await directoryNames(page)).join() === "Straße");
    assert.match(page.url(), /\?q=STRASSE$/, "the address keeps the search");
    await search.press("Escape");
    await eventually("the list to come back", async () => (await directoryNames(page)).length === 7);
    assert.equal(await search.inputValue(), "");

    await search.pressSequentially("zebra");
    await page.locator("#directory-results").getByText("No rooms match “zebra”.").waitFor();
    await search.fill("");
    await search.pressSequentially("TRAIN");
    await eventually("the topic to match", async () => (await directoryNames(page)).join() === "deploys");
    assert.equal(await page.evaluate(() => /** @type {any} */ (window).__marker), 1, "no reload");
    await page.screenshot({ path: path.join(ARTIFACTS, "directory-search-1280x800-light.png") });

    await search.press("Enter");
    await page.waitForURL(`${own.url}/chatrooms/${deploys}`);
    assert.equal(await page.locator(".room-header h1").innerText(), "# deploys");
    assert.match(await page.locator(".room-header .room-topic").innerText(), /^Release train/);
    await page.locator('#connection-status[data-state="online"]').waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, "room-topic-1280x800-light.png") });
    await page.context().close();
  },
);

test(
  "on a phone the directory opens from the drawer, searches, and switches rooms",
  { timeout: 60_000 },
  async (t) => {
    const { own, page } = await ownServerWith(t, "pocket", { viewport: { width: 390, height: 844 } });
    await roomsToBrowse(page, own.url);
    await page.locator("#rooms-toggle").click();
    await page.locator("#sidebar").getByRole("link", { name: "All rooms" }).click();
    await page.waitForURL(`${own.url}/chatrooms`);
    await page.locator("#directory-search-form.live").waitFor({ state: "attached" });
    assert.notEqual(await page.evaluate(() => document.activeElement?.id), "directory-search", "no keyboard popping up unasked");
    assert.equal(await page.evaluate(() => document.scrollingElement?.scrollWidth), 390, "nothing wider than the phone");
    await page.screenshot({ path: path.join(ARTIFACTS, "directory-390x844-light.png") });
    await page.emulateMedia({ colorScheme: "dark" });
    await page.screenshot({ path: path.join(ARTIFACTS, "directory-390x844-dark.png") });

    await page.locator("#directory-search").pressSequentially("sup");
    await eventually("the list to narrow", async () => (await directoryNames(page)).join() === "support");
    await page.locator("#directory-results").getByRole("link", { name: /support/ }).click();
    await page.waitForURL(/\/chatrooms\/\d+$/);
    assert.equal(await page.locator(".room-header h1").innerText(), "# support");
    await page.locator('#connection-status[data-state="online"]').waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, "room-topic-390x844-dark.png") });
    await page.context().close();
  },
);

test(
  "presence: two people see each other in the header and watch each other type, leave and expire",
  { timeout: 90_000 },
  async (t) => {
    const desktop = { width: 1280, height: 800 };
    const phone = { width: 390, height: 844 };
    const { own, person: ada, page } = await ownServerWith(t, "ada", { viewport: desktop, colorScheme: "light" });
    const ben = await signUpInBrowser(
      { email: "ben@example.com", nickname: "ben", password: "correct horse ben" },
      { viewport: phone, colorScheme: "dark" },
      own.url,
    );
    await say(ada, "Morning! Anyone around?");
    const count = (/** @type {import("playwright-core").Page} */ p) => p.locator("#presence .presence-count").textContent();
    for (const p of [page, ben.page]) {
      await eventually("both people to show as here", async () => (await count(p)) === "2");
      const avatars = await p.locator("#presence .avatar").evaluateAll((spans) =>
        spans.map((s) => ({ initials: s.textContent, name: s.getAttribute("title"), hue: s.dataset.hue })),
      );
      assert.deepEqual(avatars.map((a) => [a.initials, a.name]), [["AD", "ada"], ["BE", "ben"]]);
      assert.ok(avatars.every((a) => /^\d+$/.test(a.hue ?? "")), "avatars take a hue from the user id");
      assert.match((await p.locator("#presence").getAttribute("title")) ?? "", /ada, ben/);
    }
    assert.equal(await page.locator('#presence .avatar[data-hue]').first().getAttribute("data-hue"),
      await page.locator("#messages article.message .avatar").first().getAttribute("data-hue"),
      "the header's avatar matches the one on ada's message");

    // Ben types (not sending): ada sees it above the composer.
    const typingLine = page.locator("#typing");
    const heightBefore = await page.locator("#message-content").boundingBox();
    await ben.page.locator("#message-content").pressSequentially("just a sec", { delay: 20 });
    await typingLine.getByText("ben is typing…", { exact: true }).waitFor();
    assert.deepEqual(await page.locator("#message-content").boundingBox(), heightBefore, "the composer does not move");
    assert.equal(await ben.page.locator("#typing").textContent(), "", "nobody sees themselves typing");
    await page.screenshot({ path: path.join(ARTIFACTS, "presence-typing-1280x800-light.png") });
    await ben.page.screenshot({ path: path.join(ARTIFACTS, "presence-390x844-dark.png") });
    await page.emulateMedia({ colorScheme: "dark" });
    await page.screenshot({ path: path.join(ARTIFACTS, "presence-typing-1280x800-dark.png") });
    await ben.page.emulateMedia({ colorScheme: "light" });
    await ben.page.screenshot({ path: path.join(ARTIFACTS, "presence-390x844-light.png") });

    // It expires by itself some 6 s after the last typing event.
    await eventually("the typing line to clear by itself", async () => (await typingLine.textContent()) === "", 10_000);

    // Typing again, then sending: the line clears as the message arrives.
    await ben.page.locator("#message-content").pressSequentially(" — here now", { delay: 20 });
    await typingLine.getByText("ben is typing…", { exact: true }).waitFor();
    await ben.page.locator("#message-content").press("Enter");
    await listed(page, "just a sec — here now").waitFor();
    assert.equal(await typingLine.textContent(), "", "a message ends its author's typing at once");

    // Presence and typing frames never became messages, and carry no seq.
    const events = ada.frames.map((f) => JSON.parse(f).message).filter((m) => m?.type === "presence" || m?.type === "typing");
    assert.ok(events.some((m) => m.type === "presence") && events.some((m) => m.type === "typing"), "both kinds arrived");
    assert.ok(events.every((m) => !("seq" in m)), "no seq on presence or typing");
    assert.equal(await page.locator("#messages article.message").count(), 2, "two messages, nothing else");

    // Ben closes his page: ada sees him go within seconds.
    await ben.page.context().close();
    await eventually("ben to leave the header", async () => (await count(page)) === "1", 5_000);
    assert.deepEqual(await page.locator("#presence .avatar").allTextContents(), ["AD"]);

    // On a phone, a long room name still ellipsises beside the header's presence.
    await page.setViewportSize(phone);
    const long = await page.request.post(`${own.url}/chatrooms`, {
      form: { name: "a room with a rather long name that will not fit" },
      maxRedirects: 0,
    });
    await page.goto(`${own.url}${long.headers().location}`);
    await eventually("ada to show as here", async () => (await count(page)) === "1");
    const header = await page.locator(".room-header").evaluate((el) => {
      const title = /** @type {HTMLElement} */ (el.querySelector("h1"));
      return { overflows: el.scrollWidth > el.clientWidth, ellipsised: title.scrollWidth > title.clientWidth };
    });
    assert.deepEqual(header, { overflows: false, ellipsised: true });
    await page.screenshot({ path: path.join(ARTIFACTS, "presence-long-name-390x844-dark.png") });
    await page.context().close();
  },
);

test(
  "conversations: ann writes to bob from his name, bob's sidebar shows it live, carol cannot open a private room",
  { timeout: 90_000 },
  async (t) => {
    const { own, annPage, bob, carol } = await threeOnOwnServer(t);
    await bob.page.locator('#connection-status[data-state="online"]').waitFor();

    // Bob has a second tab open too.
    const bobsOtherTab = await bob.page.context().newPage();
    await bobsOtherTab.goto(bob.page.url());
    await bobsOtherTab.locator('#connection-status[data-state="online"]').waitFor();

    // From bob's name in the room's member list.
    await annPage.reload();
    await annPage.locator("#members > summary").click();
    await annPage.locator(".member-list").getByRole("link", { name: "bob" }).click();
    await annPage.waitForURL(/\/chatrooms\/\d+$/);
    assert.equal(await annPage.locator(".room-header h1").innerText(), "@ bob");
    await annPage.locator('#connection-status[data-state="online"]').waitFor();
    await say({ nickname: "ann", page: annPage, frames: [] }, "lunch at noon?");

    // The conversation appears in both of bob's tabs, live, with one unread message.
    for (const tab of [bob.page, bobsOtherTab]) {
      const item = tab.locator("#direct-list li", { hasText: "ann" });
      await item.locator(".badge", { hasText: "1" }).waitFor({ timeout: 2_000 });
      assert.match(await tab.title(), /^\(1\) /, "the tab's title counts it");
    }
    await bob.page.screenshot({ path: path.join(ARTIFACTS, "direct-sidebar-1280x800.png") });
    await bob.page.locator("#direct-list").getByRole("link", { name: /ann/ }).click();
    await bob.page.waitForURL(annPage.url());
    await listed(bob.page, "lunch at noon?").waitFor();
    // Read in one tab: the count clears in the other.
    await eventually("the other tab's count to clear", async () => (await bobsOtherTab.locator("#direct-list .badge").count()) === 0);
    assert.doesNotMatch(await bobsOtherTab.title(), /^\(/);

    // Bob has pages open: the dot of his conversation in ann's sidebar is
    // filled, and empties once he closes the last of them.
    const bobsItem = annPage.locator("#direct-list li", { hasText: "bob" });
    await eventually("bob's dot to fill", async () => (await bobsItem.getAttribute("data-online")) !== "");
    const dotColour = () => bobsItem.locator(".dot").evaluate((dot) => getComputedStyle(dot).backgroundColor);
    const filled = await dotColour();
    assert.equal(await bobsItem.locator(".presence-label").textContent(), " (online)");
    await annPage.screenshot({ path: path.join(ARTIFACTS, "direct-online-1280x800.png") });
    await bob.page.context().close();
    await eventually("bob's dot to empty", async () => (await bobsItem.getAttribute("data-online")) === "", 5_000);
    assert.notEqual(await dotColour(), filled);
    assert.equal(await bobsItem.locator(".presence-label").textContent(), "");

    // A private room: carol is neither shown it nor let in.
    await annPage.goto(`${own.url}/chatrooms`);
    await annPage.locator("summary", { hasText: "New room" }).click();
    await annPage.locator(".create-room-form").getByLabel("Name").fill("plans");
    await annPage.locator(".create-room-form").getByLabel(/Private/).check();
    await annPage.locator(".create-room-form").getByRole("button", { name: "Create room" }).click();
    await annPage.waitForURL(/\/chatrooms\/\d+$/);
    assert.equal(await annPage.locator(".room-header h1").innerText(), "🔒 plans");
    const privateUrl = annPage.url();
    await carol.page.reload();
    assert.equal(await carol.page.locator("#sidebar").getByText("plans").count(), 0, "not in carol's sidebar");
    const response = await carol.page.goto(privateUrl);
    assert.equal(response?.status(), 404);
    await carol.page.screenshot({ path: path.join(ARTIFACTS, "private-room-404-390x844.png") });
  },
);

/**
 * Stands in for the browser's notifications (which a headless browser cannot
 * show) and for a hidden tab, in every page of `context` from now on: each
 * notification is recorded in `window.__notes`; the permission is asked and
 * kept for the tab; `window.__hide(true)` hides the tab.
 * @param {import("playwright-core").BrowserContext} context
 */
async function recordNotifications(context) {
  await context.addInitScript(() => {
    const notes = [];
    Object.defineProperty(window, "__notes", { value: notes });
    class RecordedNotification {
      static get permission() {
        return sessionStorage.getItem("permission") ?? "default";
      }
      static async requestPermission() {
        sessionStorage.setItem("permission", "granted");
        return "granted";
      }
      constructor(title, options) {
        notes.push({ title, body: options?.body, tag: options?.tag });
      }
      addEventListener() {}
      close() {}
    }
    Object.defineProperty(window, "Notification", { value: RecordedNotification, configurable: true, writable: true });
    let hidden = false;
    Object.defineProperty(document, "visibilityState", { get: () => (hidden ? "hidden" : "visible"), configurable: true });
    window.__hide = (value) => {
      hidden = value;
      document.dispatchEvent(new Event("visibilitychange"));
    };
  });
}

test(
  "mentions: ann picks @bob from the composer's list, bob's sidebar counts it, he is notified while away and not once he says nothing",
  { timeout: 90_000 },
  async (t) => {
    const { own, annPage, bob, carol } = await threeOnOwnServer(t);
    await recordNotifications(bob.page.context());
    await bob.page.reload();
    await annPage.reload();

    // Notifications are offered with a button, and asked for only when pressed.
    const offer = bob.page.locator("#sidebar [data-enable-notifications]");
    await offer.waitFor();
    assert.deepEqual(await bob.page.evaluate(() => sessionStorage.getItem("permission")), null, "not asked on load");
    await offer.click();
    await offer.waitFor({ state: "hidden" });
    await bob.page.locator('#connection-status[data-state="online"]').waitFor();
    await bob.page.evaluate(() => window.__hide(true));

    // `@bo` offers bob; Enter picks him instead of sending.
    await annPage.locator('#connection-status[data-state="online"]').waitFor();
    const input = annPage.locator("#message-content");
    await input.pressSequentially("@bo");
    const option = annPage.locator("#mention-picker [role=option]", { hasText: "@bob" });
    await option.waitFor({ timeout: 2_000 });
    await annPage.screenshot({ path: path.join(ARTIFACTS, "mention-picker-1280x800.png") });
    await input.press("Enter");
    assert.equal(await input.inputValue(), "@bob ");
    await input.pressSequentially("are you in?");
    await input.press("Enter");
    await composerReady(annPage);

    // Bob, away: his sidebar counts the mention, and he is notified.
    const general = bob.page.locator("#room-list li", { hasText: "general" });
    await general.locator(".mention-badge", { hasText: "@1" }).waitFor({ timeout: 2_000 });
    const notes = await eventually("bob's notification", async () => {
      const notes = await bob.page.evaluate(() => window.__notes);
      return notes.length > 0 && notes;
    });
    assert.deepEqual(
      notes.map(({ title, body }) => ({ title, body })),
      [{ title: "ann in # general", body: "@bob are you in?" }],
    );
    // Back, at the end of the room: read, the badges go.
    await bob.page.evaluate(() => window.__hide(false));
    await eventually("bob's badges to clear", async () => (await general.locator(".badge").count()) === 0);

    // The mention of bob is marked more strongly for him than for carol.
    const mentionStyle = (page) =>
      listed(page, "@bob are you in?").locator('.mention[data-mention="bob"]').evaluate((span) => {
        const style = getComputedStyle(span);
        const row = getComputedStyle(/** @type {Element} */ (span.closest(".message")));
        return { background: style.backgroundColor, weight: style.fontWeight, row: row.boxShadow };
      });
    await listed(carol.page, "@bob are you in?").waitFor();
    const forBob = await mentionStyle(bob.page);
    const forCarol = await mentionStyle(carol.page);
    assert.notEqual(forBob.background, forCarol.background);
    assert.equal(forBob.weight, "600");
    assert.match(forBob.row, /inset/, "bob's message row is marked");
    assert.doesNotMatch(forCarol.row, /inset/);
    await bob.page.screenshot({ path: path.join(ARTIFACTS, "mention-seen-1280x800.png") });

    // ann's name on her message offers to mention her, or to write to her.
    await bob.page.locator("#messages article", { hasText: "@bob are you in?" }).locator(".nickname").click();
    await bob.page.getByRole("menuitem", { name: "Mention @ann" }).click();
    assert.equal(await bob.page.locator("#message-content").inputValue(), "@ann ");
    await bob.page.locator("#message-content").fill("");
    await bob.page.locator("#messages article", { hasText: "@bob are you in?" }).locator(".nickname").click();
    assert.equal(await bob.page.getByRole("menuitem", { name: "Message ann" }).getAttribute("href"), "/dm/ann");
    await bob.page.keyboard.press("Escape");

    // Bob wants nothing from general: the next mention notifies nobody.
    await bob.page.locator("#notify-menu > summary").click();
    await bob.page.getByLabel("Nothing").check();
    await eventually("the setting to be saved", async () => (await bob.page.locator("#notify-form").getAttribute("data-saved")) === "yes");
    await bob.page.evaluate(() => window.__hide(true));
    await say({ nickname: "ann", page: annPage, frames: [] }, "@bob once more");
    await general.locator(".mention-badge", { hasText: "@1" }).waitFor({ timeout: 2_000 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal((await bob.page.evaluate(() => window.__notes)).length, 0 + 1, "still only the first");
  },
);

test(
  "search: ann finds a message from the header by part of a word and it opens marked in its room; carol never finds a private room's",
  { timeout: 90_000 },
  async (t) => {
    const { own, page: annPage } = await ownServerWith(t, "ann", { viewport: { width: 1280, height: 800 } });
    const carol = await signUpInBrowser(
      { email: "carol@example.com", nickname: "carol", password: "correct horse carol" },
      { viewport: { width: 390, height: 844 } },
      own.url,
    );
    t.after(() => Promise.all([annPage, carol.page].map((p) => p.context().close().catch(() => {}))));
    await annPage.locator('#connection-status[data-state="online"]').waitFor();
    const ann = { nickname: "ann", page: annPage, frames: [] };
    await say(ann, "the deployment went fine");
    // Enough after it that the message is far from the end of the room.
    for (let n = 0; n < 60; n += 1) {
      const response = await annPage.request.post(`${annPage.url()}/messages`, { form: { content: `filler ${n}` }, headers: { Accept: "application/json" } });
      assert.equal(response.status(), 201);
    }
    // A private room with a word of its own.
    await annPage.goto(`${own.url}/chatrooms`);
    await annPage.locator("summary", { hasText: "New room" }).click();
    await annPage.locator(".create-room-form").getByLabel("Name").fill("vault");
    await annPage.locator(".create-room-form").getByLabel(/Private/).check();
    await annPage.locator(".create-room-form").getByRole("button", { name: "Create room" }).click();
    await annPage.waitForURL(/\/chatrooms\/\d+$/);
    await annPage.locator('#connection-status[data-state="online"]').waitFor();
    await say(ann, "the deployment key is in the vault");

    const header = annPage.locator(".navbar-search input");
    await header.fill("DEPLOY");
    await header.press("Enter");
    await annPage.waitForURL(/\/search\?q=DEPLOY/);
    const results = annPage.locator(".search-result");
    assert.equal(await results.count(), 2, "both rooms, for a member of both");
    assert.equal(await annPage.locator(".search-result mark").first().innerText(), "deploy");
    assert.equal(await results.filter({ hasText: "the vault" }).locator(".result-room").innerText(), "🔒 vault");
    await annPage.screenshot({ path: path.join(ARTIFACTS, "search-results-1280x800.png") });
    await results.filter({ hasText: "went fine" }).getByRole("link").click();
    await annPage.waitForURL(/\/chatrooms\/\d+\?around=\d+/);
    const linked = annPage.locator("#linked");
    await linked.getByText("the deployment went fine").waitFor();
    await eventually("the linked message to be in view", () =>
      linked.evaluate((element) => {
        const box = element.getBoundingClientRect();
        const list = /** @type {Element} */ (document.getElementById("messages")).getBoundingClientRect();
        // Within a pixel: the list may round its scroll position.
        return box.top >= list.top - 1 && box.bottom <= list.bottom + 1;
      }),
    );

    // Carol, in #general but not in the vault, finds only the public one.
    await carol.page.goto(`${own.url}/search?q=deploy`);
    const hers = carol.page.locator(".search-result");
    assert.equal(await hers.count(), 1);
    assert.match(await hers.innerText(), /went fine/);
    await carol.page.goto(`${own.url}/search?q=vault`);
    assert.equal(await carol.page.locator(".search-result").count(), 0);
    await carol.page.locator(".no-results").waitFor();
  },
);
