// The room directory's search-as-you-type. A pause in typing asks the
// server for the matching rooms as an HTML fragment (`GET /chatrooms?q=…`
// with the `Hearth-Fragment: directory` header) and puts it in place of the
// results: the server renders every row, this only swaps them in. Enter
// opens the first room found, Escape clears the search, ↓ and ↑ walk the
// results. Without JavaScript the search box is a plain GET form.

/** How long typing must pause before the search is sent. */
const DEBOUNCE_MS = 150;
/** Desktops get the search box focused on load; phones keep their keyboard down. */
const FOCUS_ON_LOAD = "(min-width: 641px) and (pointer: fine)";

export function startDirectory() {
  const form = /** @type {HTMLFormElement | null} */ (document.getElementById("directory-search-form"));
  const input = /** @type {HTMLInputElement | null} */ (document.getElementById("directory-search"));
  const results = document.getElementById("directory-results");
  const status = document.getElementById("directory-status");
  if (!form || !input || !results) return;
  form.classList.add("live");

  /** The search whose results are shown. */
  let shown = input.value.trim();
  let timer = 0;
  /** @type {AbortController | null} the search on its way, if any */
  let pending = null;

  /**
   * Shows the rooms matching `text`; settles once they are shown, or the search failed or was overtaken.
   * @param {string} text
   * @returns {Promise<void>}
   */
  const search = (text) => {
    clearTimeout(timer);
    timer = 0;
    pending?.abort();
    const controller = new AbortController();
    pending = controller;
    const url = new URL(form.action);
    if (text) url.searchParams.set("q", text);
    results.setAttribute("aria-busy", "true");
    return fetch(url, {
      headers: { "Hearth-Fragment": "directory", Accept: "text/html" },
      signal: controller.signal,
    })
      .then(async (response) => {
        // Signed out meanwhile (sent on to the sign-in page): go there with the search.
        if (response.redirected) return location.assign(url);
        if (!response.ok && response.status !== 422) throw new Error(`status ${response.status}`);
        const html = await response.text();
        if (controller.signal.aborted) return;
        results.innerHTML = html;
        results.scrollTop = 0;
        shown = text;
        history.replaceState(history.state, "", url.pathname + url.search);
        announce();
      })
      .catch((error) => {
        if (error.name !== "AbortError" && status) status.textContent = "The search did not work; try again.";
      })
      .finally(() => {
        if (pending !== controller) return;
        pending = null;
        results.removeAttribute("aria-busy");
      });
  };

  const announce = () => {
    if (!status) return;
    const count = results.querySelectorAll(".directory li").length;
    const empty = results.querySelector(".directory-empty, .errors");
    status.textContent = empty?.textContent?.trim() ?? `${count} ${count === 1 ? "room" : "rooms"}`;
  };

  const rooms = () => /** @type {HTMLAnchorElement[]} */ ([...results.querySelectorAll("a.directory-room")]);

  input.addEventListener("input", () => {
    clearTimeout(timer);
    const text = input.value.trim();
    if (text === shown && !pending) return;
    timer = setTimeout(() => search(text), DEBOUNCE_MS);
  });
  input.addEventListener("keydown", async (event) => {
    if (event.isComposing) return;
    if (event.key === "Enter") {
      event.preventDefault();
      const text = input.value.trim();
      if (text !== shown || timer || pending) await search(text);
      // Only a room of this very search: never one of the results it replaced.
      const first = shown === text ? rooms()[0] : undefined;
      if (first) location.assign(first.href);
    } else if (event.key === "Escape") {
      if (!input.value) return input.blur();
      event.preventDefault();
      input.value = "";
      search("");
    } else if (event.key === "ArrowDown") {
      const first = rooms()[0];
      if (!first) return;
      event.preventDefault();
      first.focus();
    }
  });
  // The Search button (hidden once this runs) and any other submit: search now.
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    search(input.value.trim());
  });
  results.addEventListener("keydown", (event) => {
    const list = rooms();
    const at = list.indexOf(/** @type {HTMLAnchorElement} */ (document.activeElement));
    if (at < 0) return;
    if (event.key === "ArrowDown" && at + 1 < list.length) list[at + 1].focus();
    else if (event.key === "ArrowUp") (at > 0 ? list[at - 1] : input).focus();
    else if (event.key === "Escape") input.focus();
    else return;
    event.preventDefault();
  });

  const creating = document.querySelector(".create-room[open]");
  if (!creating && matchMedia(FOCUS_ON_LOAD).matches) {
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }
}
