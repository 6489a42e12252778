// `@` completion in the composer: typing `@` and the start of a nickname
// offers the people whose nickname starts so (from `/users?prefix=`), and
// `@here` and `@channel`; ↑ and ↓ move, Enter or Tab picks, Esc closes. A
// pick replaces what was typed after the `@` with the whole nickname and a
// space. The list is an ARIA listbox tied to the textarea, so a screen
// reader follows the choice.

const WAIT_MS = 120;
const SHOWN = 8;
const ROOM_WIDE = [
  { nickname: "here", note: "everyone present" },
  { nickname: "channel", note: "every member" },
];

/**
 * The `@` before the caret and what follows it, if the caret is in a mention.
 * @param {HTMLTextAreaElement} input
 * @returns {{ start: number, prefix: string } | null}
 */
export function mentionAtCaret(input) {
  const before = input.value.slice(0, input.selectionStart ?? 0);
  const found = /(^|[^A-Za-z0-9_.@-])@([A-Za-z0-9_-]{0,32})$/.exec(before);
  if (!found) return null;
  return { start: before.length - found[2].length - 1, prefix: found[2] };
}

/**
 * @param {HTMLTextAreaElement} input the composer's textarea
 */
export function startMentionPicker(input) {
  const list = document.createElement("ul");
  list.id = "mention-picker";
  list.className = "mention-picker";
  list.setAttribute("role", "listbox");
  list.setAttribute("aria-label", "People to mention");
  list.hidden = true;
  input.form?.before(list);
  input.setAttribute("aria-controls", list.id);
  input.setAttribute("aria-autocomplete", "list");

  /** @type {{ nickname: string, note?: string }[]} */
  let options = [];
  let chosen = 0;
  let timer = 0;
  let asked = 0;

  const close = () => {
    list.hidden = true;
    options = [];
    input.removeAttribute("aria-activedescendant");
    input.setAttribute("aria-expanded", "false");
  };
  close();

  const show = () => {
    if (options.length === 0) {
      close();
      return;
    }
    chosen = Math.min(chosen, options.length - 1);
    list.replaceChildren(
      ...options.map((option, index) => {
        const item = document.createElement("li");
        item.id = `mention-option-${index}`;
        item.setAttribute("role", "option");
        item.setAttribute("aria-selected", String(index === chosen));
        const name = document.createElement("strong");
        name.textContent = `@${option.nickname}`;
        item.append(name);
        if (option.note) {
          const note = document.createElement("span");
          note.textContent = ` ${option.note}`;
          item.append(note);
        }
        // Pressing the pointer would move the focus out of the textarea first.
        item.addEventListener("mousedown", (event) => {
          event.preventDefault();
          pick(index);
        });
        return item;
      }),
    );
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
    input.setAttribute("aria-activedescendant", `mention-option-${chosen}`);
  };

  const pick = (/** @type {number} */ index) => {
    const at = mentionAtCaret(input);
    const option = options[index];
    if (!at || !option) return close();
    const caret = input.selectionStart ?? input.value.length;
    const text = `@${option.nickname} `;
    input.setRangeText(text, at.start, caret, "end");
    close();
    input.dispatchEvent(new Event("input", { bubbles: true }));
  };

  const update = () => {
    clearTimeout(timer);
    const at = mentionAtCaret(input);
    if (!at) return close();
    timer = setTimeout(async () => {
      const ask = ++asked;
      const prefix = at.prefix.toLowerCase();
      const wide = ROOM_WIDE.filter((option) => option.nickname.startsWith(prefix));
      /** @type {{ nickname: string }[]} */
      let people = [];
      if (prefix) {
        // The room's members first.
        const room = document.getElementById("messages")?.dataset.chatroomId;
        const members = room ? `&room=${encodeURIComponent(room)}` : "";
        const response = await fetch(`/users?prefix=${encodeURIComponent(prefix)}${members}`, { headers: { Accept: "application/json" } }).catch(() => null);
        if (response?.ok) people = await response.json();
      }
      // A later keystroke has asked again, or the mention was left.
      if (ask !== asked || !mentionAtCaret(input)) return;
      options = [...people.map((person) => ({ nickname: person.nickname })), ...wide].slice(0, SHOWN);
      chosen = 0;
      show();
    }, WAIT_MS);
  };

  input.addEventListener("input", update);
  input.addEventListener("click", update);
  input.addEventListener("blur", close);
  // In the capture phase, before the composer's Enter-to-send.
  input.addEventListener(
    "keydown",
    (event) => {
      if (list.hidden || options.length === 0) return;
      const move = { ArrowDown: 1, ArrowUp: -1 }[event.key];
      if (move) {
        chosen = (chosen + move + options.length) % options.length;
        show();
      } else if ((event.key === "Enter" && !event.shiftKey) || event.key === "Tab") {
        pick(chosen);
      } else if (event.key === "Escape") {
        close();
      } else {
        return;
      }
      event.preventDefault();
      event.stopImmediatePropagation();
    },
    { capture: true },
  );
}
