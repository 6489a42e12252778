// The room's Action Cable connection, spoken directly (no bundle, no build
// step): subscribe, hand each broadcast on, ask for what was missed after
// every (re)subscription, show the connection's state, and reconnect with
// backoff when the socket drops or goes quiet.

const PROTOCOL = "actioncable-v1-json";
const STALE_AFTER_MS = 8000; // the server pings every 3 s: two missed pings
const MAX_BACKOFF_MS = 30000;

/**
 * Connects to the room and keeps connected.
 * @param {object} options
 * @param {number} options.roomId
 * @param {(message: object) => void} options.onMessage each message payload, live or caught up
 * @param {(state: string, text: string, retryAt?: number) => void} options.onState
 *   the connection's state; while offline, when the next try is due (ms since the epoch)
 * @param {() => number | null} options.resumeFrom the seq to catch up after, or null not to
 * @param {{ channel: string, onMessage: (message: object) => void }[]} [options.also]
 *   more channels to follow on the same socket, e.g. the live room list
 * @param {boolean} [options.presence] also receive the room's presence and typing frames
 * @param {(event: { type?: string }) => void} [options.onEvent] every other payload of the
 *   room (presence, typing): never a message, and without a seq
 * @param {() => void} [options.onSubscribed] after each (re)subscription to the room
 */
export function connectRoom({ roomId, onMessage, onState, resumeFrom, also = [], presence = false, onEvent, onSubscribed }) {
  // The page renders the server's HTML: it takes messages without the
  // fields it does not read (format "html": a short message's payload is a fifth smaller).
  const room = { channel: "ChatroomChannel", id: roomId, format: "html" };
  const identifier = JSON.stringify(presence ? { ...room, presence: true } : room);
  const others = new Map(also.map(({ channel, onMessage }) => [JSON.stringify({ channel }), onMessage]));
  let socket = null;
  let attempts = 0;
  let lastFrameAt = 0;
  let stopped = false;
  let reconnectTimer = null;

  function connect() {
    clearTimeout(reconnectTimer);
    if (stopped) return;
    onState("connecting", attempts ? "Reconnecting…" : "Connecting…");
    const url = new URL("/cable", location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url, [PROTOCOL]);
    socket = ws;
    lastFrameAt = Date.now();
    ws.addEventListener("message", (event) => {
      if (ws !== socket) return;
      lastFrameAt = Date.now();
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      handle(ws, frame);
    });
    ws.addEventListener("close", () => {
      if (ws !== socket) return;
      socket = null;
      scheduleReconnect();
    });
  }

  function handle(ws, frame) {
    switch (frame.type) {
      case "welcome":
        for (const id of [identifier, ...others.keys()]) ws.send(JSON.stringify({ command: "subscribe", identifier: id }));
        return;
      case "ping":
        return;
      case "confirm_subscription":
        if (frame.identifier === identifier) {
          attempts = 0;
          onState("online", "Live");
          catchUp(ws);
          onSubscribed?.();
        }
        return;
      case "reject_subscription":
        if (frame.identifier !== identifier) return;
        // Refused at once, or ended later: removed from a private room,
        // left it, or it was archived. Either way nothing more will come.
        stopped = true;
        onState("offline", "You no longer have access to this room. Reload to see where you are.");
        ws.close();
        return;
      case "disconnect":
        if (!frame.reconnect) {
          stopped = true;
          onState("offline", frame.reason === "unauthorized" ? "Signed out — reload to sign in" : "Disconnected");
        }
        ws.close();
        return;
    }
    if (frame.message && others.has(frame.identifier)) return others.get(frame.identifier)?.(frame.message);
    if (frame.identifier !== identifier || !frame.message) return;
    const kind = frame.message.type;
    if (kind === "caught_up") {
      if (frame.message.more) catchUp(ws);
    } else if (kind === "presence" || kind === "typing") onEvent?.(frame.message);
    else onMessage(frame.message);
  }

  function catchUp(ws = socket) {
    const after = resumeFrom();
    if (!ws || after === null) return;
    const data = JSON.stringify({ action: "catch_up", after });
    ws.send(JSON.stringify({ command: "message", identifier, data }));
  }

  function scheduleReconnect() {
    if (stopped) return;
    attempts += 1;
    const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(attempts - 1, 10));
    const delay = base / 2 + Math.random() * (base / 2);
    onState("offline", "Offline", Date.now() + delay);
    reconnectTimer = setTimeout(connect, delay);
  }

  // A socket that has gone quiet (laptop sleep, dead network) never fires
  // "close" on its own: treat two missed pings as a drop.
  setInterval(() => {
    if (socket && socket.readyState === WebSocket.OPEN && Date.now() - lastFrameAt > STALE_AFTER_MS) {
      socket.close();
    }
  }, 1000);
  window.addEventListener("online", () => {
    if (!socket) connect();
  });

  connect();
  return {
    /** Asks again for whatever came after `resumeFrom()`, e.g. once the list is back at the live end. */
    catchUp: () => catchUp(),
    /**
     * Runs a room action (e.g. `typing`) if the socket is open; dropped otherwise.
     * @param {string} action
     */
    perform: (action) => {
      if (socket?.readyState !== WebSocket.OPEN) return;
      socket.send(JSON.stringify({ command: "message", identifier, data: JSON.stringify({ action }) }));
    },
    /** Tries to reconnect now instead of at the next scheduled try. */
    retryNow: () => {
      if (!socket && !stopped) connect();
    },
  };
}
