// The official @rails/actioncable client, run in Node against Hearth: the few
// browser globals it touches, a per-consumer cookie, and a recorder that lets
// a test wait for what a subscription was told.

import * as ActionCable from "@rails/actioncable";
import WebSocket from "ws";

// The package reaches for a browser page in two places: the connection
// monitor listens for `visibilitychange` on the global object, and on that
// event reads `document.visibilityState`. A plain EventTarget stands in.
const page = new EventTarget();
globalThis.addEventListener ??= page.addEventListener.bind(page);
globalThis.removeEventListener ??= page.removeEventListener.bind(page);
globalThis.document ??= {
  visibilityState: "visible",
  addEventListener: page.addEventListener.bind(page),
  removeEventListener: page.removeEventListener.bind(page),
};

export { ActionCable };

/** How long any wait for the cable may take before the test fails. */
export const CABLE_TIMEOUT_MS = 5_000;

/**
 * @typedef {object} CookieConsumer
 * @property {ActionCable.Consumer} consumer The package's consumer.
 * @property {WebSocket[]} sockets Every socket the consumer opened, in order.
 * @property {unknown[]} frames Every frame the server sent, parsed, in order.
 * @property {() => void} close Disconnects for good and drops any socket still open.
 */

/**
 * An Action Cable consumer whose sockets carry `cookie` (or no cookie).
 *
 * The package reads `ActionCable.adapters.WebSocket` each time its connection
 * opens a socket — on connect and on every reconnect — and that adapter is
 * one global. So each consumer gets its own `ws` subclass holding its cookie,
 * and its connection installs that class right before each open; `open` runs
 * synchronously, so another consumer can never slip in between.
 * @param {string} url The server's base URL (`http://…`).
 * @param {string | null} cookie A session cookie from `signUp`, or null for none.
 * @returns {CookieConsumer}
 */
export function createCookieConsumer(url, cookie) {
  /** @type {WebSocket[]} */
  const sockets = [];
  /** @type {unknown[]} */
  const frames = [];

  class CookieWebSocket extends WebSocket {
    /**
     * @param {string} address
     * @param {string[]} protocols
     */
    constructor(address, protocols) {
      super(address, protocols, cookie ? { headers: { Cookie: cookie } } : {});
      sockets.push(this);
      this.on("message", (data) => {
        const text = String(data);
        try {
          frames.push(JSON.parse(text));
        } catch {
          frames.push(text);
        }
      });
    }
  }

  const cableUrl = `${url.replace(/^http/, "ws")}/cable`;
  const consumer = ActionCable.createConsumer(cableUrl);
  const open = consumer.connection.open;
  // `reopen` looks `this.open` up when its timer fires, so this covers reconnects too.
  consumer.connection.open = () => {
    ActionCable.adapters.WebSocket = CookieWebSocket;
    return open();
  };
  const close = () => {
    consumer.disconnect();
    // The package leaves a socket that is still connecting alone; end it so
    // no handle keeps the test process alive.
    for (const socket of sockets) socket.terminate();
  };
  return { consumer, sockets, frames, close };
}

/**
 * @typedef {{ kind: "connected", reconnected: boolean }
 *   | { kind: "disconnected", willAttemptReconnect: boolean }
 *   | { kind: "rejected" }
 *   | { kind: "received", data: any }} CableEvent
 */

/**
 * Everything a subscription's callbacks were told, and a way to wait for it.
 */
export class Recorder {
  /** @type {CableEvent[]} */
  events = [];
  /** @type {Set<() => void>} */
  #watchers = new Set();

  /** @param {CableEvent} event */
  record(event) {
    this.events.push(event);
    for (const watch of this.#watchers) watch();
  }

  /**
   * The payloads of every `received` call so far.
   * @returns {any[]}
   */
  get received() {
    return this.events.filter((e) => e.kind === "received").map((e) => /** @type {any} */ (e).data);
  }

  /**
   * Resolves once `condition` holds for the events recorded so far; fails
   * after `timeoutMs` naming `what` and listing what did arrive.
   * @template T
   * @param {string} what
   * @param {(events: CableEvent[]) => T | undefined | false} condition
   * @param {number} [timeoutMs]
   * @returns {Promise<T>}
   */
  until(what, condition, timeoutMs = CABLE_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const result = condition(this.events);
        if (!result) return;
        finish();
        resolve(result);
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got ${JSON.stringify(this.events)}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.#watchers.delete(check);
      };
      this.#watchers.add(check);
      check();
    });
  }
}

/**
 * Subscribes through the package's own `subscriptions.create` and records
 * every callback.
 * @param {ActionCable.Consumer} consumer
 * @param {Record<string, unknown>} params E.g. `{ channel: "ChatroomChannel", id: 1 }`.
 * @returns {{ subscription: ActionCable.Subscription, events: Recorder }}
 */
export function subscribe(consumer, params) {
  const events = new Recorder();
  const subscription = consumer.subscriptions.create(params, {
    connected({ reconnected } = { reconnected: false }) {
      events.record({ kind: "connected", reconnected });
    },
    disconnected({ willAttemptReconnect } = { willAttemptReconnect: false }) {
      events.record({ kind: "disconnected", willAttemptReconnect });
    },
    rejected() {
      events.record({ kind: "rejected" });
    },
    received(data) {
      events.record({ kind: "received", data });
    },
  });
  return { subscription, events };
}

/**
 * Resolves after `ms` milliseconds: for checking that something does *not* happen.
 * @param {number} ms
 */
export const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
