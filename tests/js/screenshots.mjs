// The README's screenshots: a real server, a team's morning in #general
// (grouped messages, Markdown, code, links, an edit, mentions), three people
// present and one typing, unread news elsewhere (a mention in #releases, a
// direct message), taken in Chromium on a desktop and a phone, light and dark.
//
//   HEARTH_BIN=target/debug/hearth node tests/js/screenshots.mjs [out dir]
//
// The default out dir is ../../docs. Run it after changing how the room
// page looks, and look at the pictures before committing them.

import { mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

import { postMessage, roomIdOf, signUp, startServer } from "./support/server.mjs";

const OUT = path.resolve(process.argv[2] ?? fileURLToPath(new URL("../../docs/", import.meta.url)));
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

/** Who says what, in order; `edit` replaces the text after it was sent. */
const CONVERSATION = [
  ["maya", "Morning all! Release train leaves at **11:00** today 🚂"],
  ["maya", "Checklist is in the usual place: https://example.com/wiki/release"],
  ["theo", "Morning! Two things still open on my side:\n\n- the migration for `message_events`\n- a flaky browser test on phones"],
  ["theo", "The migration is done, just waiting for review."],
  ["ines", "I can review it after standup."],
  ["maya", "Thanks Ines 🙏"],
  ["raj", "Flaky test is mine, looking now. It only fails at 390 px wide, so probably the drawer."],
  ["raj", "Found it:\n\n```js\nawait page.locator(\"#rooms-toggle\").click();\n// the drawer animates; wait for it before clicking a room\nawait page.locator(\".sidebar\").waitFor();\n```"],
  ["theo", "> It only fails at 390 px wide\n\nClassic. Nice catch."],
  ["ines", "Review done @theo, left two small comments. Otherwise ✅"],
  ["theo", "Fixed both, merging. @maya all yours!"],
  ["maya", "Great, then we're on track for 11:00. I'll post in #releases when it's out.", "Great, then we're on track for **11:00**. I'll post in #releases when it's out."],
];

/** Session cookies by nickname. @type {Record<string, string>} */
const cookies = {};
const server = await startServer({ args: ["--message-rate", "0"] });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run"],
});
try {
  await mkdir(OUT, { recursive: true });
  for (const nickname of ["maya", "theo", "ines", "raj"]) {
    cookies[nickname] = await signUp(server.url, {
      email: `${nickname}@example.com`,
      nickname,
      password: `correct horse ${nickname}`,
    });
  }
  const room = await roomIdOf(server.url, cookies.maya);
  /** Room ids by name. @type {Record<string, number>} */
  const created = {};
  for (const [name, topic] of [
    ["releases", "What shipped and when"],
    ["design-reviews", "Mockups and prototypes, Thursdays"],
    ["random", ""],
  ]) {
    const response = await fetch(`${server.url}/chatrooms`, {
      method: "POST",
      headers: { Cookie: cookies.theo },
      body: new URLSearchParams({ name, topic }),
      redirect: "manual",
    });
    created[name] = Number(/\/chatrooms\/(\d+)/.exec(response.headers.get("location") ?? "")?.[1]);
  }
  // News for maya elsewhere: a mention in #releases, a direct message.
  const releases = created.releases;
  await fetch(`${server.url}/chatrooms/${releases}/join`, { method: "POST", headers: { Cookie: cookies.maya }, redirect: "manual" });
  if (releases) await postMessage(server.url, cookies.theo, releases, "v2.3 is tagged, @maya the notes are yours");
  const direct = await fetch(`${server.url}/dm/maya`, { headers: { Cookie: cookies.ines }, redirect: "manual" })
    .then((response) => Number(/\/chatrooms\/(\d+)/.exec(response.headers.get("location") ?? "")?.[1]));
  if (direct) await postMessage(server.url, cookies.ines, direct, "Lunch after the release?");
  for (const [nickname, content, edited] of CONVERSATION) {
    const message = await postMessage(server.url, cookies[nickname], room, content);
    if (edited) {
      await fetch(`${server.url}/chatrooms/${room}/messages/${message.id}`, {
        method: "PATCH",
        headers: { Cookie: cookies[nickname], Accept: "application/json", "Content-Type": "application/json" },
        body: JSON.stringify({ content: edited }),
      });
    }
  }

  // theo and ines have the room open too, and ines is typing.
  const others = [];
  for (const nickname of ["theo", "ines"]) {
    const page = await open(nickname, DESKTOP, "light");
    others.push(page);
  }
  const typing = setInterval(() => {
    others[1].locator("#message-content").press("a").catch(() => {});
  }, 1000);

  for (const scheme of /** @type {const} */ (["light", "dark"])) {
    for (const [size, viewport] of /** @type {const} */ ([["desktop", DESKTOP], ["phone", PHONE]])) {
      const page = await open("maya", viewport, scheme);
      await page.waitForTimeout(2500);
      const name = `screenshot-${size}${scheme === "dark" ? "-dark" : ""}.png`;
      await page.screenshot({ path: path.join(OUT, name) });
      console.log(`wrote ${path.join(OUT, name)}`);
      await page.context().close();
    }
  }
  clearInterval(typing);
} finally {
  await browser.close();
  await server.stop();
}

/**
 * `nickname`'s page on the room, signed in by cookie.
 * @param {string} nickname
 * @param {{ width: number, height: number }} viewport
 * @param {"light" | "dark"} colorScheme
 */
async function open(nickname, viewport, colorScheme) {
  const context = await browser.newContext({ viewport, colorScheme, deviceScaleFactor: 1 });
  const [name, value] = cookies[nickname].split("=");
  await context.addCookies([{ name, value, url: server.url }]);
  const page = await context.newPage();
  await page.goto(`${server.url}/`);
  await page.locator("#connection-status[data-state=online]").waitFor();
  return page;
}
