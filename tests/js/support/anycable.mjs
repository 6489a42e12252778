// The official @anycable/web client, run in Node against Hearth in AnyCable's
// extended protocol: `ws` as its WebSocket, the session cookie on every
// upgrade, a log of every frame both ways, and a way to cut the socket.

import { createCable } from "@anycable/web";
import WebSocket from "ws";

/** AnyCable's extended Action Cable protocol: session ids, restore, stream offsets, history. */
export const EXTENDED_PROTOCOL = "actioncable-v1-ext-json";

/**
 * @typedef {object} Frame One frame on the cable, parsed.
 * @property {"in" | "out"} direction `in`: the server sent it.
 * @property {number} socket Which socket carried it: its index in `sockets`.
 * @property {any} data
 */

/**
 * @typedef {object} CookieCable
 * @property {import("@anycable/web").Cable} cable The package's cable.
 * @property {WebSocket[]} sockets Every socket the cable opened, in order.
 * @property {Frame[]} frames Every frame of every socket, in order.
 * @property {() => boolean} cut Drops the TCP connection of the current socket
 *   without a close handshake, as a lost network would; false if it was not open.
 * @property {(ms: number) => void} delayUplink Holds every frame the client sends from
 *   now on for `ms` before it goes out, in order, as a slow uplink would; 0 ends it.
 * @property {() => void} close Disconnects for good and drops any socket still open.
 */

/**
 * A cable of the official `@anycable/web` package whose sockets carry `cookie`.
 *
 * @anycable/web runs in Node as it is: it only touches `document` and
 * `window` behind `typeof` checks, and `createCable` takes the WebSocket class
 * (`websocketImplementation`) and the third argument of its constructor
 * (`websocketOptions`, where `ws` reads `headers`). The class below is ours
 * only to keep a hand on each socket it creates, so a test can see the
 * frames and terminate the connection; the package's transport never knows.
 * @param {string} url The server's base URL (`http://…`).
 * @param {string} cookie A session cookie from `signUp`.
 * @param {Record<string, unknown>} [options] More options for `createCable`, e.g. `reconnectStrategy`.
 * @returns {CookieCable}
 */
export function createCookieCable(url, cookie, options = {}) {
  /** @type {WebSocket[]} */
  const sockets = [];
  /** @type {Frame[]} */
  const frames = [];
  let uplinkDelayMs = 0;

  class RecordedWebSocket extends WebSocket {
    /**
     * @param {string} address
     * @param {string | string[]} protocols
     * @param {WebSocket.ClientOptions} [wsOptions]
     */
    constructor(address, protocols, wsOptions) {
      super(address, protocols, wsOptions);
      const socket = sockets.push(this) - 1;
      // Registered before the package sets `onmessage`, so a frame is logged before the client acts on it.
      this.on("message", (data) => frames.push({ direction: "in", socket, data: parse(String(data)) }));
      const send = this.send.bind(this);
      const sendNow = (/** @type {any} */ data, /** @type {any[]} */ rest) => {
        frames.push({ direction: "out", socket, data: parse(String(data)) });
        return send(data, ...rest);
      };
      this.send = (/** @type {any} */ data, /** @type {any[]} */ ...rest) => {
        if (uplinkDelayMs === 0) return sendNow(data, rest);
        // Timers of equal delay fire in the order they were set, so frames keep theirs.
        setTimeout(() => {
          if (this.readyState === WebSocket.OPEN) sendNow(data, rest);
        }, uplinkDelayMs);
      };
    }
  }

  const cable = createCable(`${url.replace(/^http/, "ws")}/cable`, {
    protocol: EXTENDED_PROTOCOL,
    websocketImplementation: RecordedWebSocket,
    websocketOptions: { headers: { Cookie: cookie } },
    logLevel: "error",
    ...options,
  });

  return {
    cable,
    sockets,
    frames,
    /** Whether the newest socket is open (the channel's state can lag it). */
    isOpen() {
      return sockets.at(-1)?.readyState === WebSocket.OPEN;
    },
    cut() {
      const socket = sockets.at(-1);
      if (socket?.readyState !== WebSocket.OPEN) return false;
      socket.terminate();
      return true;
    },
    delayUplink(ms) {
      uplinkDelayMs = ms;
    },
    close() {
      cable.disconnect();
      for (const socket of sockets) socket.terminate();
    },
  };
}

/** @param {string} text */
function parse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
