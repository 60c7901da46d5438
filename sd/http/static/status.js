// The status pages' script: keeps an open page fresh, filters and pages its tables,
// shows ages. It never turns text into markup: the server renders and escapes every
// page; this swaps in a newer copy of <main> (parsed by DOMParser, which runs no
// scripts) and writes ages, counts and its own messages with textContent.
"use strict";

const POLL_MS = 3000;
const filterBox = document.getElementById("filter");
const refreshNote = document.getElementById("refresh");
const pages = new Map(); // section id -> page shown, kept across refreshes
const texts = new WeakMap(); // row -> its text, lowercased, for the filter

function age(seconds) {
  if (seconds < 90) return `${seconds} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 129600) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

function showAges() {
  const now = Date.now();
  for (const t of document.querySelectorAll("main time[datetime]")) {
    t.textContent = age(Math.max(0, Math.round((now - Date.parse(t.dateTime)) / 1000)));
  }
}

function rowText(row) {
  let text = texts.get(row);
  if (text === undefined) {
    text = row.textContent.toLowerCase();
    texts.set(row, text);
  }
  return text;
}

// Show one page of the rows that match the filter; touch only rows that change.
function showSection(section, words) {
  const size = Number(section.dataset.pageRows);
  const rows = Array.from(section.querySelectorAll("tbody tr"));
  const matches = words.length ? rows.filter((row) => words.every((w) => rowText(row).includes(w))) : rows;
  const last = Math.max(0, Math.ceil(matches.length / size) - 1);
  const page = Math.min(pages.get(section.id) || 0, last);
  pages.set(section.id, page);
  const visible = new Set(matches.slice(page * size, (page + 1) * size));
  for (const row of rows) {
    const hide = !visible.has(row);
    if (row.hidden !== hide) row.hidden = hide;
  }
  section.querySelector(".count").textContent = words.length ? `${matches.length} of ${rows.length}` : `${rows.length}`;
  const pager = section.querySelector(".pager");
  if (pager) {
    const first = matches.length ? page * size + 1 : 0;
    pager.querySelector(".range").textContent = `${first}–${page * size + visible.size} of ${matches.length}`;
    pager.querySelector("[data-step='-1']").disabled = page === 0;
    pager.querySelector("[data-step='1']").disabled = page === last;
  }
}

function filterWords() {
  return filterBox ? filterBox.value.toLowerCase().split(/\s+/).filter(Boolean) : [];
}

function showAll() {
  const words = filterWords();
  for (const section of document.querySelectorAll("main section[data-filterable]")) showSection(section, words);
}

function note(text, ok) {
  refreshNote.textContent = text;
  refreshNote.className = ok ? "refresh ok" : "refresh failed";
}

// Ask for the page again with the version shown (304 while nothing changed). A page
// that is slow to fetch and swap in (thousands of rows) is asked for less often, and a
// hidden tab not at all.
async function refresh() {
  if (document.hidden) return POLL_MS;
  const started = performance.now();
  const main = document.querySelector("main");
  try {
    const resp = await fetch(location.pathname, {
      cache: "no-store",
      headers: { Accept: "text/html", "If-None-Match": `"${main.dataset.version}"` },
    });
    if (resp.status === 200) {
      const fresh = new DOMParser().parseFromString(await resp.text(), "text/html").querySelector("main");
      if (fresh === null) throw new Error("no page in the answer");
      main.replaceWith(document.adoptNode(fresh));
      showAll();
      showAges();
    } else if (resp.status !== 304) {
      throw new Error(`HTTP ${resp.status}`);
    }
    note(`live: checked ${new Date().toLocaleTimeString()}`, true);
  } catch (err) {
    note(`cannot reach the server (${err.message}): showing what it said last`, false);
  }
  return Math.max(POLL_MS, 10 * (performance.now() - started));
}

async function poll() {
  setTimeout(poll, await refresh());
}

if (filterBox) {
  filterBox.addEventListener("input", () => {
    pages.clear();
    showAll();
  });
}
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-step]");
  if (button === null) return;
  const section = button.closest("section");
  pages.set(section.id, (pages.get(section.id) || 0) + Number(button.dataset.step));
  showSection(section, filterWords());
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refresh();
});
showAll();
showAges();
note("live", true);
setInterval(showAges, 1000);
setTimeout(poll, POLL_MS);
