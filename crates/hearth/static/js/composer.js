// The composer: Enter sends and Shift+Enter starts a new line, a counter
// near the length limit (never a silent cut), a draft per room kept across
// room switches and reloads, and each message shown at once as pending
// until the server has stored it; a message that could not be sent stays
// on the page with Retry, so nothing typed is ever lost.

/** The counter shows from this share of the limit on. */
const COUNT_FROM = 0.9;

/**
 * @param {object} options
 * @param {HTMLFormElement} options.form
 * @param {HTMLTextAreaElement} options.input
 * @param {number} options.roomId
 * @param {import("./messages.js").MessageList} options.messages
 * @param {() => boolean} [options.editLast] edits the user's last message (↑ in an empty box); says whether it did
 */
export function startComposer({ form, input, roomId, messages, editLast }) {
  const max = Number(input.dataset.maxChars) || 4000;
  const count = document.getElementById("composer-count");
  const errorBox = document.getElementById("composer-error");
  const template = /** @type {HTMLTemplateElement | null} */ (document.getElementById("pending-message"));
  const draftKey = `hearth:draft:${roomId}`;

  const showError = (/** @type {string} */ text) => {
    if (!errorBox) return;
    errorBox.textContent = text;
    errorBox.hidden = !text;
  };
  const length = (/** @type {string} */ text) => [...text.trim()].length;
  const updateCount = () => {
    if (!count) return;
    const n = length(input.value);
    count.hidden = n < max * COUNT_FROM;
    count.classList.toggle("over", n > max);
    count.textContent = n > max ? `${n - max} characters over the limit of ${max}` : `${max - n} characters left`;
  };
  const saveDraft = () => {
    try {
      if (input.value) localStorage.setItem(draftKey, input.value);
      else localStorage.removeItem(draftKey);
    } catch {
      // Storage may be full or disabled; the draft then lives only in the box.
    }
  };

  // A draft the server sent back (a refused post) wins over the stored one.
  if (input.dataset.serverDraft !== "true") {
    try {
      input.value = localStorage.getItem(draftKey) ?? "";
    } catch {
      // As above.
    }
  }
  updateCount();

  input.addEventListener("input", () => {
    saveDraft();
    updateCount();
    showError("");
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !event.altKey) {
      event.preventDefault();
      form.requestSubmit();
    }
    const plain = !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey;
    if (event.key === "ArrowUp" && plain && input.value === "" && editLast?.()) event.preventDefault();
  });

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const content = input.value.trim();
    if (!content) return;
    const n = length(content);
    if (n > max) {
      showError(`This message is ${n - max} characters too long (the limit is ${max}). Shorten it to send it.`);
      return;
    }
    // What was sent leaves the box now; anything typed from here on is new.
    input.value = "";
    saveDraft();
    updateCount();
    showError("");
    input.focus();
    send(content, pendingElement(content), newClientId());
  });

  /** An id for a pending message; the stored one comes back with it. */
  function newClientId() {
    return crypto.randomUUID?.() ?? `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  }

  /** A pending message: the server's own markup (a template in the page) with this text. */
  function pendingElement(content) {
    const article = /** @type {HTMLElement} */ (template?.content.firstElementChild?.cloneNode(true));
    if (!article) return null;
    /** @type {HTMLElement} */ (article.querySelector(".content")).textContent = content;
    article.querySelector(".retry")?.addEventListener("click", () => send(content, article, article.dataset.clientId ?? ""));
    article.querySelector(".discard")?.addEventListener("click", () => article.remove());
    return article;
  }

  async function send(content, pending, clientId) {
    const when = pending?.querySelector("time");
    if (pending) {
      pending.dataset.clientId = clientId;
      pending.classList.remove("failed");
      pending.setAttribute("aria-busy", "true");
      if (when) when.textContent = "sending…";
      /** @type {HTMLElement} */ (pending.querySelector(".failure")).hidden = true;
      await messages.addPending(pending);
    }
    let failure = "";
    try {
      const response = await fetch(form.action, {
        method: "POST",
        headers: { Accept: "application/json" },
        body: new URLSearchParams({ content, client_id: clientId }),
      });
      if (response.redirected) {
        location.assign(response.url);
        return;
      }
      if (response.status === 201) {
        const message = await response.json();
        pending?.remove();
        messages.receive(message, { mine: true });
        return;
      }
      const body = await response.json().catch(() => ({}));
      failure = body.message || body.messages?.join(" ") || `the server answered ${response.status}`;
    } catch {
      failure = "the server is unreachable";
    }
    if (pending) {
      pending.classList.add("failed");
      pending.removeAttribute("aria-busy");
      if (when) when.textContent = "not sent";
      const note = /** @type {HTMLElement} */ (pending.querySelector(".failure"));
      note.hidden = false;
      note.firstChild && (note.firstChild.textContent = `Not sent: ${failure}. `);
    } else {
      // No template to show it in: give the text back.
      input.value = input.value ? `${content}\n${input.value}` : content;
      saveDraft();
      showError(`Not sent: ${failure}.`);
    }
  }
}
