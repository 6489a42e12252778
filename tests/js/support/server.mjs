// A real Hearth server for the JavaScript tests: spawned on a free port with a
// fresh data folder, plus the few HTTP helpers every test story starts with.

import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

/** The binary `cargo build -p hearth` leaves in the workspace's target folder. */
const DEFAULT_BIN = fileURLToPath(new URL("../../../target/debug/hearth", import.meta.url));
const LISTENING = /listening addr=(\d+\.\d+\.\d+\.\d+:\d+)/;
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;
/** Enough of the server's log to explain a failed start. */
const LOG_LIMIT = 64 * 1024;

/**
 * @typedef {object} TestServer
 * @property {string} url Base URL, e.g. `http://127.0.0.1:41234`, without a trailing slash.
 * @property {() => string} log What the server wrote to stderr so far (the last 64 KiB).
 * @property {() => Promise<{ code: number | null, signal: string | null }>} stop
 *   Sends SIGTERM, waits for the exit (SIGKILL after 5 s), removes the data folder.
 */

/**
 * Starts `hearth` on 127.0.0.1 port 0 with a fresh data folder and resolves
 * once it logs the address it listens on.
 * The binary is `$HEARTH_BIN` (relative to the working directory) or the
 * workspace's `target/debug/hearth`.
 * @returns {Promise<TestServer>}
 */
export async function startServer() {
  const bin = process.env.HEARTH_BIN ? path.resolve(process.env.HEARTH_BIN) : DEFAULT_BIN;
  const dataDir = await mkdtemp(path.join(tmpdir(), "hearth-js-"));
  const child = spawn(bin, ["--bind", "127.0.0.1:0", "--data-dir", dataDir, "--log-format", "text"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  // The server must never outlive the test process, even when a test crashes.
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);

  let log = "";
  const exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });

  /** @type {string} */
  let address;
  try {
    address = await new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`hearth did not log its address within ${START_TIMEOUT_MS} ms:\n${log}`)),
        START_TIMEOUT_MS,
      );
      child.once("error", (error) => {
        clearTimeout(timer);
        reject(new Error(`could not start ${bin}: ${error.message}`));
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`hearth exited before listening (code ${code}, signal ${signal}):\n${log}`));
      });
      // Read stderr for the whole run: a full pipe would block the server's logging.
      child.stderr.setEncoding("utf8");
      child.stderr.on("data", (chunk) => {
        log = (log + chunk).slice(-LOG_LIMIT);
        const found = LISTENING.exec(log);
        if (found) {
          clearTimeout(timer);
          resolve(found[1]);
        }
      });
    });
  } catch (error) {
    child.kill("SIGKILL");
    await exited;
    process.off("exit", killOnExit);
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }

  let stopping;
  return {
    url: `http://${address}`,
    log: () => log,
    stop() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
        const status = await exited;
        clearTimeout(timer);
        process.off("exit", killOnExit);
        await rm(dataDir, { recursive: true, force: true });
        return status;
      })();
      return stopping;
    },
  };
}

/**
 * Signs up through `POST /sign_up` and returns the session cookie as a
 * `Cookie` header value, e.g. `hearth_session=abc`.
 * @param {string} url The server's base URL.
 * @param {{ email: string, nickname: string, password: string }} account
 * @returns {Promise<string>}
 */
export async function signUp(url, account) {
  const response = await fetch(`${url}/sign_up`, {
    method: "POST",
    body: new URLSearchParams(account),
    redirect: "manual",
  });
  const cookie = response.headers
    .getSetCookie()
    .map((header) => header.split(";")[0])
    .find((pair) => pair.startsWith("hearth_session="));
  if (response.status !== 303 || !cookie) {
    throw new Error(`sign up as ${account.email} answered ${response.status}: ${await response.text()}`);
  }
  return cookie;
}

/**
 * The id of the room `GET /` sends a signed-in user to (the "general" room).
 * @param {string} url The server's base URL.
 * @param {string} cookie A session cookie from {@link signUp}.
 * @returns {Promise<number>}
 */
export async function roomIdOf(url, cookie) {
  const response = await fetch(`${url}/`, { headers: { Cookie: cookie }, redirect: "manual" });
  const location = response.headers.get("location") ?? "";
  const found = /^\/chatrooms\/(\d+)$/.exec(location);
  if (response.status !== 303 || !found) {
    throw new Error(`GET / answered ${response.status} with Location ${JSON.stringify(location)}`);
  }
  return Number(found[1]);
}

/**
 * @typedef {object} MessagePayload The JSON of a message, as posted and as broadcast.
 * @property {"message"} type
 * @property {number} id
 * @property {number} chatroom_id
 * @property {number} seq
 * @property {number} user_id
 * @property {string} nickname
 * @property {string} content
 * @property {string} created_at RFC 3339.
 * @property {string} html The rendered `<article class="message">`.
 */

/**
 * Posts a message as `fetch` from a page would, asking for JSON; resolves
 * with the 201's body.
 * @param {string} url The server's base URL.
 * @param {string} cookie A session cookie from {@link signUp}.
 * @param {number} roomId
 * @param {string} content
 * @returns {Promise<MessagePayload>}
 */
export async function postMessage(url, cookie, roomId, content) {
  const response = await fetch(`${url}/chatrooms/${roomId}/messages`, {
    method: "POST",
    headers: { Cookie: cookie, Accept: "application/json" },
    body: new URLSearchParams({ content }),
    redirect: "manual",
  });
  if (response.status !== 201) {
    throw new Error(`posting to room ${roomId} answered ${response.status}: ${await response.text()}`);
  }
  return response.json();
}
