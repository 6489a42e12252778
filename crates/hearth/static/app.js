// Hearth's page script: a small Action Cable client for the open room.
// It speaks the protocol directly (no bundle, no build step): subscribe to the
// room, append each broadcast once, post without reloading, show the
// connection's state, and reconnect with backoff when the socket drops.

const PROTOCOL = "actioncable-v1-json";
const STALE_AFTER_MS = 8000; // the server pings every 3 s: two missed pings
const MAX_BACKOFF_MS = 30000;

const list = document.getElementById("messages");
if (list) startRoom(list);
localizeTimes(document);

function startRoom(list) {
  const roomId = Number(list.dataset.chatroomId);
  const identifier = JSON.stringify({ channel: "ChatroomChannel", id: roomId });
  const status = document.getElementById("connection-status");
  const form = document.getElementById("new-message");
  const input = document.getElementById("message-content");
  const errorBox = document.getElementById("composer-error");

  let socket = null;
  let attempts = 0;
  // The newest room sequence shown: after every (re)subscription the page
  // asks for whatever came after it, so nothing sent while away is lost.
  let lastSeq = Math.max(0, ...[...list.querySelectorAll("[data-seq]")].map((el) => Number(el.dataset.seq)));
  let lastFrameAt = 0;
  let stopped = false;
  let reconnectTimer = null;

  // A permalink (`?around=`) opens on its message; any other page at its end.
  const linked = document.getElementById("linked");
  if (linked) linked.scrollIntoView({ block: "center" });
  else scrollToBottom();

  function setState(state, text) {
    if (!status) return;
    status.dataset.state = state;
    status.textContent = text;
  }

  function connect() {
    clearTimeout(reconnectTimer);
    if (stopped) return;
    setState("connecting", attempts ? "Reconnecting…" : "Connecting…");
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
        ws.send(JSON.stringify({ command: "subscribe", identifier }));
        return;
      case "ping":
        return;
      case "confirm_subscription":
        if (frame.identifier === identifier) {
          attempts = 0;
          setState("online", "Live");
          catchUp(ws);
        }
        return;
      case "reject_subscription":
        stopped = true;
        setState("offline", "This room is not available");
        ws.close();
        return;
      case "disconnect":
        if (!frame.reconnect) {
          stopped = true;
          setState("offline", frame.reason === "unauthorized" ? "Signed out — reload to sign in" : "Disconnected");
        }
        ws.close();
        return;
    }
    if (frame.identifier !== identifier || !frame.message) return;
    if (frame.message.type === "message") append(frame.message);
    else if (frame.message.type === "caught_up" && frame.message.more) catchUp(ws);
  }

  function catchUp(ws) {
    const data = JSON.stringify({ action: "catch_up", after: lastSeq });
    ws.send(JSON.stringify({ command: "message", identifier, data }));
  }

  function scheduleReconnect() {
    if (stopped) return;
    attempts += 1;
    const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(attempts - 1, 10));
    const delay = base / 2 + Math.random() * (base / 2);
    setState("offline", `Offline — retrying in ${Math.ceil(delay / 1000)} s`);
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

  // Messages are placed by their room sequence and never twice: the sender's
  // own message arrives both in the POST's answer and as a broadcast.
  function append(message) {
    lastSeq = Math.max(lastSeq, message.seq);
    if (document.getElementById(`message_${message.id}`)) return;
    list.querySelector(".empty-room")?.remove();
    const stick = list.scrollHeight - list.scrollTop - list.clientHeight < 80 || message.user_id === undefined;
    const template = document.createElement("template");
    template.innerHTML = message.html.trim();
    const element = template.content.firstElementChild;
    if (!element) return;
    let after = list.lastElementChild;
    while (after && Number(after.dataset.seq) > message.seq) after = after.previousElementSibling;
    if (after) after.after(element);
    else list.prepend(element);
    localizeTimes(element);
    if (stick || isMine(message)) scrollToBottom();
  }

  function isMine(message) {
    const me = document.body.dataset.userId;
    return me !== undefined && Number(me) === message.user_id;
  }

  function scrollToBottom() {
    list.scrollTop = list.scrollHeight;
  }

  function showError(text) {
    if (!errorBox) return;
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  function interceptPosts() {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const content = input.value.trim();
      if (!content) return;
      const button = form.querySelector("button");
      if (button) button.disabled = true;
      try {
        const response = await fetch(form.action, {
          method: "POST",
          headers: { Accept: "application/json" },
          body: new URLSearchParams({ content }),
        });
        if (response.redirected) {
          location.assign(response.url);
          return;
        }
        if (response.status === 201) {
          append(await response.json());
          input.value = "";
          showError("");
        } else {
          const body = await response.json().catch(() => ({}));
          showError(body.message || `Could not send (HTTP ${response.status})`);
        }
      } catch {
        showError("Could not send: the server is unreachable. Your message is still in the box.");
      } finally {
        if (button) button.disabled = false;
        input.focus();
      }
    });
  }

  // A page of older history (`?before=`, `?after=` with newer messages
  // beyond it) is not the live end of the room: it stays as it is, and
  // posting goes back to the room through the plain form.
  if (list.dataset.moreAfter === "true") {
    setState("history", "Reading history");
    return;
  }
  if (form && input) interceptPosts();
  connect();
}

// Times are rendered in UTC by the server; show them in the reader's zone.
function localizeTimes(root) {
  for (const time of root.querySelectorAll("time[datetime]")) {
    const date = new Date(time.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) continue;
    time.textContent = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    time.title = date.toLocaleString();
  }
}
