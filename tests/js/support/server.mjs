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
 * @property {string} dataDir The data folder; it outlives {@link TestServer.kill} and goes with `stop`.
 * @property {() => string} log What the server wrote to stderr so far (the last 64 KiB, across restarts).
 * @property {() => Promise<void>} kill SIGKILLs the server — no goodbye to its clients, no clean
 *   close of the database — and resolves once it is gone.
 * @property {() => Promise<void>} restart Starts it again after a kill, on the same address and data folder.
 * @property {() => Promise<{ code: number | null, signal: string | null }>} stop
 *   Sends SIGTERM, waits for the exit (SIGKILL after 5 s), removes the data folder.
 */

/**
 * Starts `hearth` on 127.0.0.1 port 0 with a fresh data folder and resolves
 * once it logs the address it listens on.
 * The binary is `$HEARTH_BIN` (relative to the working directory) or the
 * workspace's `target/debug/hearth`.
 * @param {{ args?: string[] }} [options] `args`: more flags, e.g. `["--message-rate", "0"]`.
 * @returns {Promise<TestServer>}
 */
export async function startServer({ args = [] } = {}) {
  const bin = process.env.HEARTH_BIN ? path.resolve(process.env.HEARTH_BIN) : DEFAULT_BIN;
  const dataDir = await mkdtemp(path.join(tmpdir(), "hearth-js-"));
  let log = "";
  const appendLog = (/** @type {string} */ chunk) => {
    log = (log + chunk).slice(-LOG_LIMIT);
  };

  /** @type {Running} */
  let running;
  try {
    running = await spawnHearth(bin, ["--bind", "127.0.0.1:0", "--data-dir", dataDir, ...args], appendLog);
  } catch (error) {
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  const address = running.address;

  let stopping;
  return {
    url: `http://${address}`,
    dataDir,
    log: () => log,
    async kill() {
      await running.kill("SIGKILL");
    },
    async restart() {
      if (running.alive()) throw new Error("restart needs the server to be down: kill it first");
      appendLog(`\n--- restarting on ${address} ---\n`);
      running = await spawnHearth(bin, ["--bind", address, "--data-dir", dataDir, ...args], appendLog);
    },
    stop() {
      stopping ??= (async () => {
        const status = await running.kill("SIGTERM");
        await rm(dataDir, { recursive: true, force: true });
        return status;
      })();
      return stopping;
    },
  };
}

/**
 * @typedef {object} Running One process of the server.
 * @property {string} address What it listens on, `ip:port`.
 * @property {() => boolean} alive
 * @property {(signal: "SIGTERM" | "SIGKILL") => Promise<{ code: number | null, signal: string | null }>} kill
 *   Signals it (SIGTERM turns into SIGKILL after 5 s) and resolves with how it exited.
 */

/**
 * Spawns the binary with `args` and resolves once it logs its address.
 * @param {string} bin
 * @param {string[]} args
 * @param {(chunk: string) => void} onLog Gets everything it writes to stderr.
 * @returns {Promise<Running>}
 */
async function spawnHearth(bin, args, onLog) {
  const child = spawn(bin, [...args, "--log-format", "text"], { stdio: ["ignore", "ignore", "pipe"] });
  // The server must never outlive the test process, even when a test crashes.
  const killOnExit = () => child.kill("SIGKILL");
  process.once("exit", killOnExit);
  const exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      process.off("exit", killOnExit);
      resolve({ code, signal });
    });
  });
  const kill = async (/** @type {"SIGTERM" | "SIGKILL"} */ signal) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    const timer = signal === "SIGTERM" ? setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS) : undefined;
    const status = await exited;
    clearTimeout(timer);
    return status;
  };

  // This process's own output: the address must come from this start, not an earlier one.
  let own = "";
  try {
    const address = await new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`hearth did not log its address within ${START_TIMEOUT_MS} ms:\n${own}`)),
        START_TIMEOUT_MS,
      );
      child.once("error", (error) => {
        clearTimeout(timer);
        reject(new Error(`could not start ${bin}: ${error.message}`));
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`hearth exited before listening (code ${code}, signal ${signal}):\n${own}`));
      });
      // Read stderr for the whole run: a full pipe would block the server's logging.
      child.stderr.setEncoding("utf8");
      child.stderr.on("data", (chunk) => {
        onLog(chunk);
        own = (own + chunk).slice(-LOG_LIMIT);
        const found = LISTENING.exec(own);
        if (found) {
          clearTimeout(timer);
          resolve(found[1]);
        }
      });
    });
    return { address, alive: () => child.exitCode === null && child.signalCode === null, kill };
  } catch (error) {
    await kill("SIGKILL");
    throw error;
  }
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
 * @param {{ signal?: AbortSignal }} [options] `signal`: to give up on a request, e.g. `AbortSignal.timeout(ms)`.
 * @returns {Promise<MessagePayload>}
 */
export async function postMessage(url, cookie, roomId, content, { signal } = {}) {
  const response = await fetch(`${url}/chatrooms/${roomId}/messages`, {
    method: "POST",
    headers: { Cookie: cookie, Accept: "application/json" },
    body: new URLSearchParams({ content }),
    redirect: "manual",
    signal,
  });
  if (response.status !== 201) {
    throw new Error(`posting to room ${roomId} answered ${response.status}: ${await response.text()}`);
  }
  return response.json();
}
