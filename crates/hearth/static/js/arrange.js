// Arranges the message list the server rendered: consecutive messages of
// one author within a few minutes share one header (grouped), and a divider
// opens each day ("Today", "Yesterday", a date), in the reader's time zone.
// Run after anything is added to or removed from the list.

/** Messages closer than this to the one before, by the same author, are grouped. */
const GROUP_WITHIN_MS = 5 * 60 * 1000;

/** @param {HTMLElement} list */
export function arrange(list) {
  for (const divider of list.querySelectorAll(".day-divider")) divider.remove();
  /** @type {HTMLElement | null} */
  let previous = null;
  for (const article of /** @type {NodeListOf<HTMLElement>} */ (list.querySelectorAll("article.message[data-seq]"))) {
    const at = sentAt(article);
    const day = dayOf(at);
    const sameDay = previous !== null && dayOf(sentAt(previous)) === day;
    // The "New" line above a message starts a fresh group, as a day does.
    const afterNew = article.previousElementSibling?.classList.contains("new-divider") ?? false;
    const grouped =
      sameDay &&
      !afterNew &&
      previous !== null &&
      previous.dataset.userId === article.dataset.userId &&
      at - sentAt(previous) < GROUP_WITHIN_MS;
    article.classList.toggle("grouped", grouped);
    if (!sameDay) outer(list, article).before(divider(at));
    previous = article;
  }
}

/** When a message was sent, from its `<time datetime>` (Unix ms). */
function sentAt(/** @type {HTMLElement} */ article) {
  return Date.parse(article.querySelector("time[datetime]")?.getAttribute("datetime") ?? "");
}

function outer(list, article) {
  return article.parentElement === list ? article : /** @type {HTMLElement} */ (article.parentElement);
}

function dayOf(ms) {
  const date = new Date(ms);
  return `${date.getFullYear()}-${date.getMonth()}-${date.getDate()}`;
}

function divider(ms) {
  const element = document.createElement("div");
  element.className = "day-divider";
  element.setAttribute("role", "separator");
  const label = document.createElement("span");
  label.textContent = dayLabel(ms);
  element.append(label);
  return element;
}

function dayLabel(ms) {
  const date = new Date(ms);
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (dayOf(ms) === dayOf(today.getTime())) return "Today";
  if (dayOf(ms) === dayOf(yesterday.getTime())) return "Yesterday";
  const options = /** @type {Intl.DateTimeFormatOptions} */ ({ weekday: "long", month: "long", day: "numeric" });
  if (date.getFullYear() !== today.getFullYear()) options.year = "numeric";
  return date.toLocaleDateString([], options);
}
